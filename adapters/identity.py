"""An agency's own keys: one signing key (ES256) and one encryption key (ECDH-ES+A256KW), and
the encryption keys it rotated away from while the gateway may still seal to them.

The private halves stay with the agency's adapter; the gateway is given only
:meth:`AgencyIdentity.public_jwks`. :meth:`save` writes the private JWKS with mode 0600 and
refuses to overwrite, :meth:`load` reads it back. Key ids are RFC 7638 thumbprints.

A rotation of the encryption key (:func:`adapters.kit.rotate_encryption_key`) makes a new key
current and keeps the one it replaces as *previous*, in the same ``private-jwks.json``
(``previous_encryption_keys``; the ``keys`` member holds the current keys alone, as before): the
gateway seals to the new key once the operator registers it, but messages it sealed to the
previous one before then are still delivered through its overlap. :meth:`decrypt` opens a
compact JWE with the key its header's ``kid`` names, current or previous, and refuses
(:class:`UnknownEncryptionKey`) one naming any other key or none: no key is tried blindly.
:func:`adapters.kit.finish_encryption_key_rotation` drops the previous keys.

:meth:`AgencyIdentity.idempotency_secret` is a 256-bit secret derived (HKDF-SHA256) from the
private signing key, for Idempotency-Keys that must be stable for a record yet say nothing of
it (:func:`keys.keyed_digest`): the same for as long as the signing key is, which outlasts the
24 hours the gateway remembers a key; a rotated signing key gives new keys.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwe
from joserfc.jwk import ECKey

from adapters.compact import jwe_registry, signing_kid
from keys import derive_secret

__all__ = ["PRIVATE_JWKS_FILE", "AgencyIdentity", "UnknownEncryptionKey"]

PRIVATE_JWKS_FILE = "private-jwks.json"
_IDEMPOTENCY_PURPOSE = "mappa-adapter/idempotency-key/v1"
_ENC_ALG = "ECDH-ES+A256KW"
_OPEN = jwe_registry([_ENC_ALG, "A256GCM"])


class UnknownEncryptionKey(ValueError):
    """A JWE sealed to an encryption key this agency does not hold (or naming none)."""

    def __init__(self, kid: str) -> None:
        shown = repr(kid[:64]) if kid else "none"
        super().__init__(f"sealed to an encryption key this agency does not hold (kid {shown})")
        self.kid = kid


def _with_metadata(key: ECKey, use: str, alg: str) -> ECKey:
    data = key.as_dict(private=True)
    data.update({"kid": key.thumbprint(), "use": use, "alg": alg})
    return ECKey.import_key(data)


def _new_encryption_key() -> ECKey:
    return _with_metadata(ECKey.generate_key("P-256", private=True), "enc", _ENC_ALG)


@dataclass(frozen=True)
class AgencyIdentity:
    agency_id: str
    signing_key: ECKey
    #: The current encryption key: the one the gateway is given, and seals to.
    encryption_key: ECKey
    #: Encryption keys rotated away from, newest first: still opened with (the gateway may
    #: have sealed to them before the rotation) until the rotation is finished.
    previous_encryption_keys: tuple[ECKey, ...] = ()

    @classmethod
    def generate(cls, agency_id: str) -> AgencyIdentity:
        signing = _with_metadata(ECKey.generate_key("P-256", private=True), "sig", "ES256")
        return cls(agency_id, signing, _new_encryption_key())

    def idempotency_secret(self) -> bytes:
        """The agency's secret for keyed Idempotency-Keys (never sent anywhere)."""
        d = str(self.signing_key.as_dict(private=True)["d"])
        material = base64.urlsafe_b64decode(d + "=" * (-len(d) % 4))
        return derive_secret(material, f"{_IDEMPOTENCY_PURPOSE}/{self.agency_id}")

    def decryption_key(self, kid: str) -> ECKey:
        """The encryption key, current or previous, whose kid is ``kid``."""
        for key in (self.encryption_key, *self.previous_encryption_keys):
            if kid and key.kid == kid:
                return key
        raise UnknownEncryptionKey(kid)

    def decrypt(self, compact: str) -> bytes:
        """The plaintext of a compact JWE to this agency, opened with the key its protected
        header's ``kid`` names (:class:`UnknownEncryptionKey` for a kid not held, or none;
        :class:`adapters.compact.MalformedSignature` for a header that is not a JSON object)."""
        key = self.decryption_key(signing_kid(compact))
        return jwe.decrypt_compact(compact, key, registry=_OPEN).plaintext or b""

    def with_new_encryption_key(self) -> AgencyIdentity:
        """A new current encryption key; the current one becomes the newest previous one."""
        previous = (self.encryption_key, *self.previous_encryption_keys)
        return dataclasses.replace(
            self, encryption_key=_new_encryption_key(), previous_encryption_keys=previous
        )

    def without_previous_keys(self) -> AgencyIdentity:
        return dataclasses.replace(self, previous_encryption_keys=())

    def public_jwks(self, *, with_previous: bool = False) -> dict[str, Any]:
        """The public halves of the current keys (what the operator registers); with
        ``with_previous``, the previous encryption keys after them (for a ``jwks_uri``, which
        must still list them during a rotation)."""
        previous = self.previous_encryption_keys if with_previous else ()
        return {
            "keys": [
                self.signing_key.as_dict(private=False),
                self.encryption_key.as_dict(private=False),
                *(key.as_dict(private=False) for key in previous),
            ]
        }

    def _document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "agency_id": self.agency_id,
            "keys": [
                self.signing_key.as_dict(private=True),
                self.encryption_key.as_dict(private=True),
            ],
        }
        if self.previous_encryption_keys:
            document["previous_encryption_keys"] = [
                key.as_dict(private=True) for key in self.previous_encryption_keys
            ]
        return document

    def save(self, directory: str | os.PathLike[str]) -> Path:
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / PRIVATE_JWKS_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self._document(), handle, indent=2)
        return path

    def replace(self, directory: str | os.PathLike[str]) -> Path:
        """Write these keys over the agency's ``private-jwks.json`` (a rotation): a new file
        (0600), flushed to disk, then renamed over the old one, so a crash leaves one or the
        other whole, never half of each."""
        folder = Path(directory)
        path = folder / PRIVATE_JWKS_FILE
        if not path.exists():
            raise FileNotFoundError(f"no {PRIVATE_JWKS_FILE} in {folder} to replace")
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".private-jwks-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp: mode 0600
                json.dump(self._document(), handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> AgencyIdentity:
        document = json.loads((Path(directory) / PRIVATE_JWKS_FILE).read_text(encoding="utf-8"))
        keys = {item["use"]: ECKey.import_key(item) for item in document["keys"]}
        previous = tuple(
            ECKey.import_key(item) for item in document.get("previous_encryption_keys", [])
        )
        return cls(str(document["agency_id"]), keys["sig"], keys["enc"], previous)
