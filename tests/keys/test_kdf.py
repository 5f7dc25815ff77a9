"""Derived secrets (HKDF-SHA256) and keyed digests (HMAC-SHA256) in keys/kdf.py."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from keys import KeyInvalid, derive_secret, keyed_digest

MATERIAL = bytes(range(32))


def test_derive_secret_matches_rfc5869_hkdf_sha256() -> None:
    """Extract with the fixed salt, expand with the purpose: checked against a plain HMAC
    computation of RFC 5869."""
    salt, info = b"mappa-gateway/kdf/v1", b"adapter/idempotency-key/v1"
    prk = hmac.new(salt, MATERIAL, hashlib.sha256).digest()
    okm = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()
    assert derive_secret(MATERIAL, "adapter/idempotency-key/v1") == okm


def test_purposes_give_independent_stable_secrets() -> None:
    """The same material and purpose give the same secret; another purpose another secret."""
    first = derive_secret(MATERIAL, "a")
    assert first == derive_secret(MATERIAL, "a") and len(first) == 32
    assert first != derive_secret(MATERIAL, "b")
    assert first != derive_secret(bytes(32), "a")


@pytest.mark.parametrize(
    ("material", "purpose", "error"),
    [
        (b"short", "a", KeyInvalid),  # under 256 bits of material
        (MATERIAL, "", ValueError),  # no purpose
        (MATERIAL, "a\x00b", ValueError),  # a purpose that could run into another
    ],
)
def test_derive_secret_refuses_weak_inputs(
    material: bytes, purpose: str, error: type[Exception]
) -> None:
    """Too little material, or a purpose that is not a code, is refused."""
    with pytest.raises(error):
        derive_secret(material, purpose)


def test_keyed_digest_is_hmac_sha256_over_separated_parts() -> None:
    """Stable, keyed, and parts cannot run together ("ab","c" differs from "a","bc")."""
    secret = derive_secret(MATERIAL, "digest")
    expected = hmac.new(secret, b"ab\x00c", hashlib.sha256).hexdigest()
    assert keyed_digest(secret, "ab", "c") == expected
    assert keyed_digest(secret, "ab", "c") != keyed_digest(secret, "a", "bc")
    assert keyed_digest(secret, "x") != keyed_digest(derive_secret(MATERIAL, "other"), "x")
    with pytest.raises(KeyInvalid):
        keyed_digest(b"short", "x")
