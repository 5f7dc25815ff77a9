"""An agency's own keys: one signing key (ES256) and one encryption key (ECDH-ES+A256KW).

The private halves stay with the agency's adapter; the gateway is given only
:meth:`AgencyIdentity.public_jwks`. :meth:`save` writes the private JWKS with mode 0600 and
refuses to overwrite, :meth:`load` reads it back. Key ids are RFC 7638 thumbprints.

:meth:`AgencyIdentity.idempotency_secret` is a 256-bit secret derived (HKDF-SHA256) from the
private signing key, for Idempotency-Keys that must be stable for a record yet say nothing of
it (:func:`keys.keyed_digest`): the same for as long as the signing key is, which outlasts the
24 hours the gateway remembers a key; a rotated signing key gives new keys.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey

from keys import derive_secret

__all__ = ["PRIVATE_JWKS_FILE", "AgencyIdentity"]

PRIVATE_JWKS_FILE = "private-jwks.json"
_IDEMPOTENCY_PURPOSE = "mappa-adapter/idempotency-key/v1"


def _with_metadata(key: ECKey, use: str, alg: str) -> ECKey:
    data = key.as_dict(private=True)
    data.update({"kid": key.thumbprint(), "use": use, "alg": alg})
    return ECKey.import_key(data)


@dataclass(frozen=True)
class AgencyIdentity:
    agency_id: str
    signing_key: ECKey
    encryption_key: ECKey

    @classmethod
    def generate(cls, agency_id: str) -> AgencyIdentity:
        signing = _with_metadata(ECKey.generate_key("P-256", private=True), "sig", "ES256")
        encryption = _with_metadata(
            ECKey.generate_key("P-256", private=True), "enc", "ECDH-ES+A256KW"
        )
        return cls(agency_id, signing, encryption)

    def idempotency_secret(self) -> bytes:
        """The agency's secret for keyed Idempotency-Keys (never sent anywhere)."""
        d = str(self.signing_key.as_dict(private=True)["d"])
        material = base64.urlsafe_b64decode(d + "=" * (-len(d) % 4))
        return derive_secret(material, f"{_IDEMPOTENCY_PURPOSE}/{self.agency_id}")

    def public_jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                self.signing_key.as_dict(private=False),
                self.encryption_key.as_dict(private=False),
            ]
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / PRIVATE_JWKS_FILE
        document = {
            "agency_id": self.agency_id,
            "keys": [
                self.signing_key.as_dict(private=True),
                self.encryption_key.as_dict(private=True),
            ],
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> AgencyIdentity:
        document = json.loads((Path(directory) / PRIVATE_JWKS_FILE).read_text(encoding="utf-8"))
        keys = {item["use"]: ECKey.import_key(item) for item in document["keys"]}
        return cls(str(document["agency_id"]), keys["sig"], keys["enc"])
