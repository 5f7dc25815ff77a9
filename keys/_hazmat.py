"""The only module that imports ``cryptography.hazmat`` (a ruff banned-api rule keeps it so).

Everything here is a small, fixed recipe: fixed curves, fixed key sizes, AES-256-GCM with a
random 96-bit nonce. Nothing returns raw private key bytes except :func:`private_jwk`, which the
key repository seals with the envelope before it touches a disk.
"""

from __future__ import annotations

import os
from typing import Literal

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import ECKey, OKPKey, RSAKey

from .errors import EnvelopeRejected, KeyInvalid

__all__ = [
    "AES_KEY_BYTES",
    "NONCE_BYTES",
    "TAG_BYTES",
    "Aead",
    "KeyKind",
    "ed25519_public_raw",
    "ed25519_sign",
    "ed25519_verify",
    "generate_jose_key",
    "p256_point_is_valid",
    "random_bytes",
]

AES_KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
RSA_BITS = 3072

KeyKind = Literal["EC-P256", "OKP-Ed25519", "RSA-3072"]
JoseKey = ECKey | OKPKey | RSAKey


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the operating system's CSPRNG."""
    return os.urandom(n)


class Aead:
    """AES-256-GCM under one key, parsed once. Thread-safe: no state between calls."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != AES_KEY_BYTES:
            raise KeyInvalid(f"AES-256-GCM key must be {AES_KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Aead(<redacted>)"

    def encrypt(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Return ciphertext || 16-byte tag."""
        return self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, nonce: bytes, ciphertext_and_tag: bytes, aad: bytes) -> bytes:
        """Open ciphertext || tag; any mismatch raises :class:`EnvelopeRejected`."""
        if len(nonce) != NONCE_BYTES or len(ciphertext_and_tag) < TAG_BYTES:
            raise EnvelopeRejected("aes-gcm: bad nonce or short ciphertext")
        try:
            return self._aead.decrypt(nonce, ciphertext_and_tag, aad)
        except InvalidTag as exc:
            raise EnvelopeRejected("aes-gcm: authentication failed") from exc


def generate_jose_key(kind: KeyKind, parameters: dict[str, str]) -> JoseKey:
    """Generate a fresh private key of a fixed kind, as a joserfc key carrying ``parameters``."""
    if kind == "EC-P256":
        native_ec = ec.generate_private_key(ec.SECP256R1())
        return ECKey(native_ec, native_ec, parameters)  # type: ignore[arg-type]
    if kind == "OKP-Ed25519":
        native_ed = Ed25519PrivateKey.generate()
        return OKPKey(native_ed, native_ed, parameters)  # type: ignore[arg-type]
    if kind == "RSA-3072":
        native_rsa = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        return RSAKey(native_rsa, native_rsa, parameters)  # type: ignore[arg-type]
    raise KeyInvalid(f"unknown key kind {kind!r}")


def p256_point_is_valid(x: bytes, y: bytes) -> bool:
    """True when (x, y) is a point on P-256 (32-byte big-endian coordinates)."""
    if len(x) != 32 or len(y) != 32:
        return False
    try:
        ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    except ValueError:
        return False
    return True


def ed25519_sign(private: object, message: bytes) -> bytes:
    """Raw Ed25519 signature (64 bytes) over ``message`` by an Ed25519 private key object."""
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyInvalid("not an Ed25519 private key")
    return private.sign(message)


def ed25519_public_raw(private: object) -> bytes:
    """The 32-byte raw public key of an Ed25519 private key object."""
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyInvalid("not an Ed25519 private key")
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_verify(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """True only for a valid Ed25519 signature; malformed keys or signatures give False."""
    if len(public_raw) != 32 or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
