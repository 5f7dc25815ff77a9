"""Secrets derived from key material, and keyed digests under them.

:func:`derive_secret` is HKDF-SHA256 (RFC 5869) with a fixed salt and the purpose as ``info``:
one key's material gives independent secrets for independent purposes, and none of them tells
anything about the key or about another purpose's secret. :func:`keyed_digest` is HMAC-SHA256
under such a secret: stable for the same input, and not computable (nor brute-forced from a
small input space such as PNC ids) without the secret.
"""

from __future__ import annotations

import hashlib
import hmac

from ._hazmat import hkdf_sha256
from .errors import KeyInvalid

__all__ = ["SECRET_BYTES", "derive_secret", "keyed_digest"]

SECRET_BYTES = 32
_SALT = b"mappa-gateway/kdf/v1"


def derive_secret(material: bytes, purpose: str) -> bytes:
    """A 256-bit secret for ``purpose`` from at least 256 bits of secret ``material``."""
    if len(material) < SECRET_BYTES:
        raise KeyInvalid(f"key material must be at least {SECRET_BYTES} bytes")
    if not purpose or "\x00" in purpose:
        raise ValueError("a derived secret's purpose is a non-empty code")
    return hkdf_sha256(material, salt=_SALT, info=purpose.encode("utf-8"))


def keyed_digest(secret: bytes, *parts: str) -> str:
    """Hex HMAC-SHA256 under ``secret`` over ``parts`` (NUL-separated, so they cannot run
    together)."""
    if len(secret) < SECRET_BYTES:
        raise KeyInvalid(f"a keyed digest's secret must be at least {SECRET_BYTES} bytes")
    message = b"\x00".join(part.encode("utf-8") for part in parts)
    return hmac.new(secret, message, hashlib.sha256).hexdigest()
