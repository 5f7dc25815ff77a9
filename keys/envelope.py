"""Envelope encryption for data at rest: case records and private keys.

Each call to :meth:`Envelope.seal` draws a fresh 256-bit data key, encrypts the plaintext under
it with AES-256-GCM bound to the caller's associated data (AAD), and stores the data key wrapped
by a key-encryption key (:class:`keys.kek.KekSource`). Opening needs the same AAD (for example
the record's table, id and version), so a blob moved to another row does not open.

Blob format, version 1 (all lengths big-endian)::

    offset       size  field
    0            1     version, 0x01
    1            1     n, length of kek_id (1..255)
    2            n     kek_id, ASCII: which KEK wrapped the data key
    2+n          2     m, length of the wrapped data key (1..65535)
    4+n          m     wrapped data key, opaque to the envelope (LocalKek: 60 bytes)
    4+n+m        12    nonce for the data encryption
    16+n+m       rest  AES-256-GCM(data key, nonce, plaintext, aad=DATA_AAD) = ciphertext || tag(16)

    DATA_AAD = b"mappa-envelope/v1" || 0x00 || caller aad
    the data key is wrapped with aad = b"mappa-envelope-dek/v1"

With a :class:`keys.kek.LocalKek` the overhead is 92 bytes plus the kek_id (about 110 bytes).
The data ciphertext does not depend on the KEK, so :func:`rewrap` moves a blob to a new KEK by
rewriting only the header: the plaintext is never decrypted.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._hazmat import AES_KEY_BYTES, NONCE_BYTES, TAG_BYTES, Aead, random_bytes
from .errors import EnvelopeRejected, KekUnavailable
from .kek import KekSource

__all__ = ["VERSION", "Envelope", "blob_body", "blob_kek_id", "rewrap"]

VERSION = 1
_DATA_AAD_PREFIX = b"mappa-envelope/v1\x00"
_DEK_AAD = b"mappa-envelope-dek/v1"


class _Parsed:
    __slots__ = ("body_offset", "kek_id", "wrapped")

    def __init__(self, kek_id: str, wrapped: bytes, body_offset: int) -> None:
        self.kek_id = kek_id
        self.wrapped = wrapped
        self.body_offset = body_offset


def _parse(blob: bytes) -> _Parsed:
    size = len(blob)
    if size < 4 or blob[0] != VERSION:
        raise EnvelopeRejected("envelope: unknown version or truncated header")
    n = blob[1]
    if n == 0 or size < 4 + n:
        raise EnvelopeRejected("envelope: bad kek_id length")
    try:
        kek_id = blob[2 : 2 + n].decode("ascii")
    except UnicodeDecodeError as exc:
        raise EnvelopeRejected("envelope: kek_id is not ASCII") from exc
    m = int.from_bytes(blob[2 + n : 4 + n], "big")
    body = 4 + n + m
    if m == 0 or size < body + NONCE_BYTES + TAG_BYTES:
        raise EnvelopeRejected("envelope: truncated")
    return _Parsed(kek_id, blob[4 + n : body], body)


def _header(kek_id: str, wrapped: bytes) -> bytes:
    encoded = kek_id.encode("ascii")
    if not 0 < len(encoded) < 256 or not 0 < len(wrapped) < 65536:
        raise KekUnavailable("envelope: kek_id or wrapped key length out of range")
    return bytes((VERSION, len(encoded))) + encoded + len(wrapped).to_bytes(2, "big") + wrapped


def blob_kek_id(blob: bytes) -> str:
    """The id of the KEK that wrapped this blob's data key (to plan a rewrap)."""
    return _parse(blob).kek_id


def blob_body(blob: bytes) -> bytes:
    """The part of a blob that :func:`rewrap` never changes: the nonce, the data ciphertext and
    its tag, which bind the caller's associated data (the header only carries the wrapped data
    key)."""
    return blob[_parse(blob).body_offset :]


class Envelope:
    """Seals with ``kek``; opens blobs wrapped by ``kek`` or any of ``previous``.

    Build it once (at start-up) and share it: KEKs are parsed when loaded, never per call.
    """

    __slots__ = ("_current", "_keks")

    def __init__(self, kek: KekSource, *, previous: Iterable[KekSource] = ()) -> None:
        self._current = kek
        self._keks: dict[str, KekSource] = {k.kek_id: k for k in previous}
        self._keks[kek.kek_id] = kek

    def __repr__(self) -> str:
        return f"Envelope(kek_id={self._current.kek_id!r}, known={sorted(self._keks)!r})"

    @property
    def kek_id(self) -> str:
        """The id of the KEK new blobs are sealed under."""
        return self._current.kek_id

    @property
    def kek(self) -> KekSource:
        """The KEK new blobs are sealed under."""
        return self._current

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt ``plaintext`` under a fresh data key, bound to ``aad``."""
        data_key = random_bytes(AES_KEY_BYTES)
        nonce = random_bytes(NONCE_BYTES)
        body = Aead(data_key).encrypt(nonce, plaintext, _DATA_AAD_PREFIX + aad)
        header = _header(self._current.kek_id, self._current.wrap(data_key, _DEK_AAD))
        return header + nonce + body

    def unseal(self, blob: bytes, aad: bytes) -> bytes:
        """Open a blob; tampering, a wrong ``aad`` or an unknown format raise EnvelopeRejected."""
        parsed = _parse(blob)
        kek = self._keks.get(parsed.kek_id)
        if kek is None:
            raise KekUnavailable(f"envelope: kek {parsed.kek_id!r} is not configured")
        data_key = kek.unwrap(parsed.wrapped, _DEK_AAD)
        start = parsed.body_offset
        return Aead(data_key).decrypt(
            blob[start : start + NONCE_BYTES], blob[start + NONCE_BYTES :], _DATA_AAD_PREFIX + aad
        )

    def rewrap(self, blob: bytes, new_kek: KekSource | None = None) -> bytes:
        """Move a blob under ``new_kek`` (default: the current KEK); unchanged if already there."""
        target = new_kek or self._current
        parsed = _parse(blob)
        if parsed.kek_id == target.kek_id:
            return blob
        old = self._keks.get(parsed.kek_id)
        if old is None:
            raise KekUnavailable(f"envelope: kek {parsed.kek_id!r} is not configured")
        return rewrap(blob, old, target)


def rewrap(blob: bytes, old_kek: KekSource, new_kek: KekSource) -> bytes:
    """Rewrap the data key from ``old_kek`` to ``new_kek``; the data ciphertext is kept as is.

    The data key is checked to open under ``old_kek`` (a wrong KEK or a tampered header raise),
    but the record itself is not decrypted, so the caller's AAD is not needed.
    """
    parsed = _parse(blob)
    if parsed.kek_id != old_kek.kek_id:
        raise KekUnavailable(
            f"envelope: blob is under kek {parsed.kek_id!r}, not {old_kek.kek_id!r}"
        )
    data_key = old_kek.unwrap(parsed.wrapped, _DEK_AAD)
    if len(data_key) != AES_KEY_BYTES:
        raise EnvelopeRejected("envelope: unwrapped data key has the wrong length")
    return _header(new_kek.kek_id, new_kek.wrap(data_key, _DEK_AAD)) + blob[parsed.body_offset :]
