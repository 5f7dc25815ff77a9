"""The JOSE layer's intended behaviour: JWTs and sign-then-encrypt bodies between two parties."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from keys import (
    FileKeyRepository,
    JoseRejected,
    Purpose,
    public_key_from_jwk,
    seal_for,
    sign_jwt,
    unseal_from,
    verify_jws,
    verify_jwt,
)
from tests.keys.keys_support import T0, Party


def _header(token: str) -> dict[str, object]:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def test_seal_for_ec_recipient_unseals_with_payload_and_evidence(
    police: Party, gateway: Party
) -> None:
    """A body sealed by police to the gateway's EC key opens, naming both kids."""
    body = {"nominal": "N-77", "category": 2, "level": 2}
    token = seal_for(body, police.signing, gateway.ec_public())
    assert _header(token) == {
        "alg": "ECDH-ES+A256KW",
        "enc": "A256GCM",
        "cty": "JWT",
        "kid": gateway.ec_public()["kid"],
        "epk": _header(token)["epk"],
    }
    opened = unseal_from(token, gateway.decryption, police.signing.jwks())
    assert opened.json() == body
    assert opened.sender_kid == police.signing.current().kid
    assert opened.recipient_kid == gateway.ec_public()["kid"]
    header, payload, kid = verify_jws(opened.jws, police.signing.jwks(), typ=None)
    assert payload == opened.payload and kid == opened.sender_kid and header["alg"] == "ES256"


def test_seal_for_rsa_recipient_uses_rsa_oaep_256(police: Party, gateway: Party) -> None:
    """An RSA recipient key gets RSA-OAEP-256 with A256GCM, and opens."""
    token = seal_for(b"\x00binary\xff", police.signing, gateway.rsa_public())
    assert _header(token)["alg"] == "RSA-OAEP-256"
    assert (
        unseal_from(token, gateway.decryption, police.signing.jwks()).payload == b"\x00binary\xff"
    )


def test_unseal_without_kid_tries_the_usable_keys(police: Party, gateway: Party) -> None:
    """A JWE without kid (some libraries omit it) is opened by a key of the matching alg."""
    jwk = {k: v for k, v in gateway.ec_public().items() if k != "kid"}
    token = seal_for(b"no kid", police.signing, jwk)
    assert _header(token)["kid"] == gateway.ec_public()["kid"]  # the kid is the thumbprint
    opened = unseal_from(token, gateway.decryption, police.signing.jwks())
    assert opened.payload == b"no kid"


def test_inner_typ_is_checked_when_asked(police: Party, gateway: Party) -> None:
    """seal_for(typ=...) sets the inner typ; unseal_from(typ=...) requires it."""
    token = seal_for(b"x", police.signing, gateway.ec_public(), typ="mappa-record+jws")
    assert (
        unseal_from(
            token, gateway.decryption, police.signing.jwks(), typ="application/mappa-record+jws"
        ).payload
        == b"x"
    )
    with pytest.raises(JoseRejected, match="typ"):
        unseal_from(token, gateway.decryption, police.signing.jwks(), typ="mappa-minutes+jws")


def test_payload_cap_applies_to_seal_and_unseal(police: Party, gateway: Party) -> None:
    """Payloads over the configured cap are refused on both sides."""
    from keys import Limits

    small = Limits(max_payload_bytes=1024)
    with pytest.raises(JoseRejected, match="payload over"):
        seal_for(b"x" * 1025, police.signing, gateway.ec_public(), limits=small)
    token = seal_for(b"x" * 4000, police.signing, gateway.ec_public())
    with pytest.raises(JoseRejected, match="over"):
        unseal_from(token, gateway.decryption, police.signing.jwks(), limits=small)


def test_sign_jwt_then_verify_jwt_round_trip(gateway: Party) -> None:
    """A token signed by the ring verifies with the ring's public keys and gives the claims."""
    ring = gateway.repository.ring(Purpose.TOKEN_SIGNING)
    exp = int(T0.timestamp()) + 300
    token = sign_jwt({"sub": "police-01", "exp": exp}, ring, typ="at+jwt")
    verified = verify_jwt(token, ring.public_keys(), typ="at+jwt", now=T0)
    assert verified.claims == {"sub": "police-01", "exp": exp}
    assert verified.kid == ring.current().kid
    assert verified.header["typ"] == "at+jwt"


def test_verify_jwt_accepts_a_resolver(gateway: Party) -> None:
    """The caller may pass a kid -> PublicKey function instead of a mapping."""
    ring = gateway.repository.ring(Purpose.TOKEN_SIGNING)
    token = sign_jwt({"exp": int(T0.timestamp()) + 60}, ring, typ="JWT")
    seen: list[str] = []

    def resolve(kid: str) -> object:
        seen.append(kid)
        return ring.public_keys().get(kid)

    verify_jwt(token, resolve, typ="JWT", now=T0)  # type: ignore[arg-type]
    assert seen == [ring.current().kid]


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": 0}, "expired"),  # long expired
        ({"exp": "T0"}, "exp"),  # exp exactly now
        ({"exp": "+300", "nbf": "+61"}, "nbf"),  # not before, beyond the 60 s leeway
        ({"exp": "+300", "iat": "+61"}, "iat"),  # issued in the future
        ({"sub": "x"}, "exp"),  # exp required by default
        ({"exp": True}, "NumericDate"),  # a bool is not a date
        ({"exp": "+300", "nbf": "soon"}, "NumericDate"),  # strings are not dates
    ],
)
def test_verify_jwt_refuses_bad_time_claims(
    gateway: Party, claims: dict[str, object], reason: str
) -> None:
    """Expiry, not-before and issued-at are judged at the injected now."""
    ring = gateway.repository.ring(Purpose.TOKEN_SIGNING)
    base = int(T0.timestamp())
    resolved: dict[str, object] = {}
    for name, value in claims.items():
        if value == "T0":
            resolved[name] = base
        elif isinstance(value, str) and value.startswith("+"):
            resolved[name] = base + int(value[1:])
        else:
            resolved[name] = value
    token = sign_jwt(resolved, ring)
    with pytest.raises(JoseRejected, match=reason):
        verify_jwt(token, ring.public_keys(), typ="JWT", now=T0)


def test_verify_jwt_tolerates_small_clock_skew(gateway: Party) -> None:
    """nbf and iat up to 60 s ahead are accepted (clock skew between agencies)."""
    ring = gateway.repository.ring(Purpose.TOKEN_SIGNING)
    base = int(T0.timestamp())
    token = sign_jwt({"exp": base + 300, "nbf": base + 59, "iat": base + 59}, ring)
    verify_jwt(token, ring.public_keys(), typ="JWT", now=T0)


def test_public_key_from_jwk_is_cached(gateway: Party) -> None:
    """The same JWK parses once: the same object comes back."""
    jwk = gateway.ec_public()
    assert public_key_from_jwk(jwk, use="enc") is public_key_from_jwk(dict(jwk), use="enc")


def test_rotation_keeps_old_bodies_openable_during_overlap(repository: FileKeyRepository) -> None:
    """A body sealed to the previous encryption key still opens until the key retires."""
    me = Party(repository)
    old_jwk = me.ec_public()
    token = seal_for(b"in flight", me.signing, old_jwk, now=T0)
    repository.rotate(Purpose.PAYLOAD_ENCRYPTION, timedelta(hours=1), now=T0)
    ring = repository.ring(Purpose.PAYLOAD_ENCRYPTION)
    assert ring.current("ECDH-ES+A256KW", now=T0).kid != old_jwk["kid"]
    later = T0 + timedelta(minutes=59)
    assert unseal_from(token, ring, me.signing.jwks(), now=later).payload == b"in flight"
    with pytest.raises(JoseRejected, match="key_retired"):
        unseal_from(token, ring, me.signing.jwks(), now=T0 + timedelta(hours=1))
