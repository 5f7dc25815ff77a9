"""Blind indexes: keyed hashes of identifiers, so the store can find a PNC id without holding it.

:meth:`BlindIndex.index` is HMAC-SHA256 under a 256-bit secret over a domain tag, the kind of
identifier and its normalised value (whitespace collapsed, upper case): equal identifiers give
equal indexes, and a copy of the database without the secret cannot be searched or brute-forced
offline. The secret lives beside the key rings, envelope-sealed (:mod:`keys.envelope`) under the
KEK with associated data that names its purpose::

    <keys dir>/blind-index.json   mode 0600: {"format": "mappa-blind-index/v1", "sealed": b64}

:func:`load_blind_index` creates it on first use. Creation is atomic (the file is linked into
place, never overwritten), so of two replicas racing to create it one wins and both use its
secret. Losing the file makes existing indexes unsearchable: back it up with the key directory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from pathlib import Path

from ._hazmat import random_bytes
from .envelope import Envelope
from .errors import KeyInvalid, KeyStoreError
from .kek import KekSource

__all__ = ["BLIND_INDEX_FILE", "BlindIndex", "load_blind_index"]

BLIND_INDEX_FILE = "blind-index.json"
_FORMAT = "mappa-blind-index/v1"
_AAD = b"mappa-blind-index/v1\x00secret"
_TAG = b"mappa-blind-index/v1\x00"
_SECRET_BYTES = 32


class BlindIndex:
    """Computes blind indexes with one secret (parsed once, shared by every request)."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) != _SECRET_BYTES:
            raise KeyInvalid(f"blind-index secret must be {_SECRET_BYTES} bytes")
        self._secret = secret

    def __repr__(self) -> str:
        return "BlindIndex(<secret>)"

    def index(self, kind: str, value: str) -> str:
        """The hex index of identifier ``value`` of ``kind`` (e.g. ``"pnc"``, ``"crn"``)."""
        if not kind or "\x00" in kind:
            raise ValueError("blind-index kind must be a non-empty code")
        normalised = " ".join(value.split()).upper()
        message = _TAG + kind.encode("ascii") + b"\x00" + normalised.encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def _open(path: Path, envelope: Envelope) -> BlindIndex:
    try:
        document = json.loads(path.read_bytes())
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise KeyInvalid("blind-index file has an unknown format")
        blob = base64.b64decode(str(document["sealed"]), validate=True)
    except (OSError, ValueError, KeyError, binascii.Error) as exc:
        raise KeyStoreError(f"cannot read the blind-index secret: {type(exc).__name__}") from exc
    return BlindIndex(envelope.unseal(blob, _AAD))


def _create(path: Path, envelope: Envelope) -> None:
    document = {
        "format": _FORMAT,
        "sealed": base64.b64encode(envelope.seal(random_bytes(_SECRET_BYTES), _AAD)).decode(),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(document)}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(json.dumps(document).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # fails if another process created it first: theirs wins
        except FileExistsError:
            pass
    except OSError as exc:
        raise KeyStoreError(f"cannot write the blind-index secret: {type(exc).__name__}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def load_blind_index(
    directory: str | os.PathLike[str], kek: KekSource | Envelope, *, create: bool = True
) -> BlindIndex:
    """The blind-index secret of the key directory, created (once, atomically) if missing."""
    envelope = kek if isinstance(kek, Envelope) else Envelope(kek)
    path = Path(directory) / BLIND_INDEX_FILE
    if not path.exists():
        if not create:
            raise KeyStoreError("no blind-index secret in the key directory")
        _create(path, envelope)
    return _open(path, envelope)
