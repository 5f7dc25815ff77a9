"""Key-encryption keys (KEKs): what wraps the per-record data keys of :mod:`keys.envelope`.

A KEK is anything that satisfies :class:`KekSource`: it has a stable ``kek_id`` (stored in each
blob so that rotation and rewrapping know which KEK opened it) and wraps or unwraps a 32-byte
data key, binding associated data. Development uses :class:`LocalKek`, a 32-byte AES-256-GCM key
read from a file (:func:`kek_from_file`) or an environment variable (:func:`kek_from_env`), both
holding the key in base64. Production options (an HSM over PKCS#11, Vault transit) implement the
same protocol; nothing else in ``keys/`` changes.

A KEK is parsed once, when it is loaded; wrapping never re-reads or re-parses it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from ._hazmat import AES_KEY_BYTES, NONCE_BYTES, Aead, random_bytes
from .errors import EnvelopeRejected, KekUnavailable

__all__ = [
    "KekSource",
    "LocalKek",
    "generate_kek_file",
    "kek_from_env",
    "kek_from_file",
]

_KEK_ID_MAX = 255


@runtime_checkable
class KekSource(Protocol):
    """Wraps and unwraps data keys. Implementations must be safe to share between threads."""

    @property
    def kek_id(self) -> str:
        """Stable, non-secret identifier of this KEK (ASCII, 1 to 255 bytes)."""
        ...

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        """Encrypt ``data_key`` bound to ``aad``; the result is opaque and at most 65535 bytes."""
        ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """Reverse :meth:`wrap`; raise a :class:`keys.errors.KeysError` on any mismatch."""
        ...


class LocalKek:
    """A KEK held in process memory: AES-256-GCM with a random nonce per wrap.

    Wrapped form: nonce (12 bytes) || ciphertext (32 bytes) || tag (16 bytes), 60 bytes in all.
    """

    __slots__ = ("_aead", "_kek_id")

    def __init__(self, key: bytes, kek_id: str | None = None) -> None:
        if len(key) != AES_KEY_BYTES:
            raise KekUnavailable(f"KEK must be {AES_KEY_BYTES} bytes, got {len(key)}")
        self._aead = Aead(key)
        self._kek_id = kek_id if kek_id is not None else _fingerprint(key)
        _check_kek_id(self._kek_id)

    def __repr__(self) -> str:
        return f"LocalKek(kek_id={self._kek_id!r})"

    @property
    def kek_id(self) -> str:
        return self._kek_id

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        nonce = random_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        if len(wrapped) != NONCE_BYTES + AES_KEY_BYTES + 16:
            raise EnvelopeRejected(f"wrapped data key has {len(wrapped)} bytes, expected 60")
        return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)


def _fingerprint(key: bytes) -> str:
    digest = hashlib.sha256(b"mappa-kek-id/v1\x00" + key).digest()[:9]
    return "local:" + base64.urlsafe_b64encode(digest).decode("ascii")


def _check_kek_id(kek_id: str) -> None:
    if not kek_id or not kek_id.isascii() or len(kek_id) > _KEK_ID_MAX or not kek_id.isprintable():
        raise KekUnavailable("kek_id must be 1 to 255 printable ASCII characters")


def _decode_key(text: str, where: str) -> bytes:
    cleaned = text.strip()
    try:
        key = base64.b64decode(
            cleaned.replace("-", "+").replace("_", "/") + "=" * (-len(cleaned) % 4),
            validate=True,
        )
    except (binascii.Error, ValueError) as exc:
        raise KekUnavailable(f"{where}: not base64") from exc
    if len(key) != AES_KEY_BYTES:
        raise KekUnavailable(f"{where}: decodes to {len(key)} bytes, expected {AES_KEY_BYTES}")
    return key


def kek_from_file(
    path: str | os.PathLike[str], *, kek_id: str | None = None, check_permissions: bool = True
) -> LocalKek:
    """Load a base64 32-byte KEK from ``path``.

    Refuses a file that group or others may read or write (``chmod 600`` it), unless
    ``check_permissions`` is False.
    """
    file = Path(path)
    try:
        info = file.stat()
        text = file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KekUnavailable(f"KEK file unreadable: {type(exc).__name__}") from exc
    if check_permissions and stat.S_IMODE(info.st_mode) & 0o077:
        raise KekUnavailable(
            f"KEK file mode {stat.S_IMODE(info.st_mode):o} lets group or others in; chmod 600"
        )
    return LocalKek(_decode_key(text, "KEK file"), kek_id)


def kek_from_env(
    name: str = "MAPPA_KEK", *, environ: Mapping[str, str] | None = None, kek_id: str | None = None
) -> LocalKek:
    """Load a base64 32-byte KEK from an environment variable (development)."""
    env = os.environ if environ is None else environ
    value = env.get(name)
    if not value:
        raise KekUnavailable(f"environment variable {name} is not set")
    return LocalKek(_decode_key(value, f"environment variable {name}"), kek_id)


def generate_kek_file(path: str | os.PathLike[str]) -> LocalKek:
    """Write a fresh random KEK to ``path`` (mode 0600, refusing to overwrite) and return it."""
    key = random_bytes(AES_KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise KekUnavailable(f"cannot create KEK file: {type(exc).__name__}") from exc
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(base64.b64encode(key).decode("ascii") + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return LocalKek(key)
