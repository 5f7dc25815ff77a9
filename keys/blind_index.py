"""Blind indexes: keyed hashes of identifiers, so the store can find a PNC id without holding it.

:meth:`BlindIndex.index` is HMAC-SHA256 under a 256-bit secret over a domain tag, the kind of
identifier and its normalised value (whitespace collapsed, upper case): equal identifiers give
equal indexes, and a copy of the database without the secret cannot be searched or brute-forced
offline. The secret lives beside the key rings, envelope-sealed (:mod:`keys.envelope`) under the
KEK with associated data that names its purpose::

    <keys dir>/blind-index.json   mode 0600: {"format": "mappa-blind-index/v1", "sealed": b64}

The secret is made only where keys are made: :func:`init_blind_index` (called by
:func:`keys.generate_development_keys`, ``keys init-dev`` and ``keys init-blind-index``), or
:func:`load_blind_index` with ``create=True`` (the development profile). Otherwise a missing file
is an error, never a new secret: a new secret would silently stop every stored index from
matching (lookups miss, a known subject is registered twice). Creation is atomic (the file is
linked into place, never overwritten), so of two replicas racing to create it one wins and both
use its secret. Losing the file makes existing indexes unsearchable: back it up with the key
directory. ``keys rewrap`` moves it to a new KEK with the private keys
(:func:`rewrap_blind_index`).
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
from .envelope import Envelope, blob_kek_id
from .errors import KeyInvalid, KeyStoreError
from .kek import KekSource

__all__ = [
    "BLIND_INDEX_FILE",
    "MISSING_BLIND_INDEX",
    "BlindIndex",
    "encode_document",
    "init_blind_index",
    "load_blind_index",
    "rewrap_blind_index",
]

BLIND_INDEX_FILE = "blind-index.json"
_FORMAT = "mappa-blind-index/v1"
_AAD = b"mappa-blind-index/v1\x00secret"
_TAG = b"mappa-blind-index/v1\x00"
_SECRET_BYTES = 32

#: Why a key directory without its blind-index secret is refused (operators read this).
MISSING_BLIND_INDEX = (
    "no blind-index secret (blind-index.json) in the key directory: restore it from the key "
    "directory's backup; only a new installation makes one (keys init-blind-index)"
)


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


def _blob(document: object) -> bytes:
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise KeyInvalid("blind-index file has an unknown format")
    return base64.b64decode(str(document["sealed"]), validate=True)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"cannot read the blind-index secret: {type(exc).__name__}") from exc


def _secret(raw: bytes, envelope: Envelope) -> bytes:
    try:
        blob = _blob(json.loads(raw))
    except (ValueError, KeyError, binascii.Error) as exc:
        raise KeyStoreError(f"cannot read the blind-index secret: {type(exc).__name__}") from exc
    return envelope.unseal(blob, _AAD)


def _open(path: Path, envelope: Envelope) -> BlindIndex:
    return BlindIndex(_secret(_read(path), envelope))


def _create(path: Path, envelope: Envelope) -> bool:
    document = {
        "format": _FORMAT,
        "sealed": base64.b64encode(envelope.seal(random_bytes(_SECRET_BYTES), _AAD)).decode(),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(document)}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(encode_document(document))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # fails if another process created it first: theirs wins
        except FileExistsError:
            return False
        return True
    except OSError as exc:
        raise KeyStoreError(f"cannot write the blind-index secret: {type(exc).__name__}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _envelope_of(kek: KekSource | Envelope) -> Envelope:
    return kek if isinstance(kek, Envelope) else Envelope(kek)


def init_blind_index(directory: str | os.PathLike[str], kek: KekSource | Envelope) -> bool:
    """Create the key directory's blind-index secret if it has none; True if this call made it.

    An existing secret is never replaced, and must open under ``kek``. Only where keys are made
    (development, a new installation): a new secret beside stored indexes makes them unfindable.
    """
    envelope = _envelope_of(kek)
    path = Path(directory) / BLIND_INDEX_FILE
    created = not os.path.lexists(path) and _create(path, envelope)
    _open(path, envelope)
    return created


def load_blind_index(
    directory: str | os.PathLike[str], kek: KekSource | Envelope, *, create: bool = False
) -> BlindIndex:
    """The blind-index secret of the key directory.

    Missing, it is an error (:data:`MISSING_BLIND_INDEX`) unless ``create`` (the development
    profile only), which creates it once, atomically.
    """
    envelope = _envelope_of(kek)
    path = Path(directory) / BLIND_INDEX_FILE
    if not os.path.lexists(path):
        if not create:
            raise KeyStoreError(MISSING_BLIND_INDEX)
        _create(path, envelope)
    return _open(path, envelope)


def rewrap_blind_index(
    raw: bytes, envelope: Envelope, new_kek: KekSource
) -> tuple[BlindIndex, dict[str, str] | None]:
    """Open the blind-index file ``raw`` and move its secret under ``new_kek``.

    Returns the index it holds and the new document (None if already under ``new_kek``), proven
    to open under ``new_kek`` to the same secret. Nothing is written here.
    """
    try:
        blob = _blob(json.loads(raw))
    except (ValueError, KeyError, binascii.Error) as exc:
        raise KeyStoreError(f"cannot read the blind-index secret: {type(exc).__name__}") from exc
    target = Envelope(new_kek)
    if blob_kek_id(blob) == new_kek.kek_id:
        return BlindIndex(target.unseal(blob, _AAD)), None
    secret = envelope.unseal(blob, _AAD)
    moved = envelope.rewrap(blob, new_kek)
    if not hmac.compare_digest(secret, target.unseal(moved, _AAD)):  # pragma: no cover
        raise KeyStoreError("blind-index secret differs under the new KEK")
    return BlindIndex(secret), {"format": _FORMAT, "sealed": base64.b64encode(moved).decode()}


def encode_document(document: dict[str, str]) -> bytes:
    """The bytes of a blind-index file holding ``document``."""
    return json.dumps(document).encode() + b"\n"
