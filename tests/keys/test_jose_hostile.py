"""THREATS.md "Encryption" and "Access tokens": hostile JWE and JWS, each refused as JoseRejected.

Cases that should be refused by the header pre-parse also prove that no key was touched: the
joserfc decrypt/verify entry points are replaced by a tripwire.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws

import keys.jose
from keys import JoseRejected, Limits, Purpose, seal_for, sign_jwt, unseal_from, verify_jwt
from tests.keys.keys_support import T0, Party


def b64(data: bytes | str | dict[str, Any]) -> str:
    if isinstance(data, dict):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if any decryption or signature verification is attempted."""

    def boom(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("expensive work reached")

    monkeypatch.setattr(keys.jose.jwe, "decrypt_compact", boom)
    monkeypatch.setattr(keys.jose.jws, "deserialize_compact", boom)
    yield


def fake_jwe(header: dict[str, Any]) -> str:
    """A JWE with the given protected header and random, well-formed other segments."""
    return ".".join(
        [
            b64(header),
            b64(os.urandom(40)),
            b64(os.urandom(12)),
            b64(os.urandom(64)),
            b64(os.urandom(16)),
        ]
    )


def valid_epk() -> dict[str, str]:
    key = jc_jwk.JWK.generate(kty="EC", crv="P-256")
    public = key.export_public(as_dict=True)
    return {"kty": "EC", "crv": "P-256", "x": public["x"], "y": public["y"]}


def off_curve_epk() -> dict[str, str]:
    epk = valid_epk()
    y = int.from_bytes(unb64(epk["y"]), "big")
    epk["y"] = b64(((y + 1) % (2**256)).to_bytes(32, "big"))
    return epk


def jwe_base(**extra: Any) -> dict[str, Any]:
    return {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", "epk": valid_epk(), **extra}


# -- JWE headers refused before any key is touched -----------------------------------------

HOSTILE_JWE_HEADERS: list[tuple[dict[str, Any], str]] = [
    (jwe_base(zip="DEF"), "zip"),  # compressed plaintext (CRIME-style oracles, zip bombs)
    ({"alg": "RSA1_5", "enc": "A256GCM", "cty": "JWT"}, "PKCS#1 v1.5"),  # Bleichenbacher
    ({"alg": "rsa1_5", "enc": "A256GCM", "cty": "JWT"}, "PKCS#1 v1.5"),  # ... in lower case
    ({"alg": "PBES2-HS256+A128KW", "enc": "A256GCM", "p2c": 10**9, "p2s": "AA"}, "password"),
    ({"alg": "PBES2-HS512+A256KW", "enc": "A256GCM"}, "password"),  # iteration-count DoS
    ({"alg": "dir", "enc": "A256GCM", "cty": "JWT"}, "direct"),  # shared key
    ({"alg": "DIR", "enc": "A256GCM", "cty": "JWT"}, "direct"),
    ({"alg": "none", "enc": "A256GCM"}, "unsecured"),
    ({"alg": "nOnE", "enc": "A256GCM"}, "unsecured"),
    ({"alg": "A256KW", "enc": "A256GCM"}, "allow-list"),  # symmetric key wrap
    ({"alg": "ECDH-ES", "enc": "A256GCM", "epk": valid_epk()}, "allow-list"),  # direct agreement
    ({"alg": "ECDH-ES+A128KW", "enc": "A256GCM", "epk": valid_epk()}, "allow-list"),
    ({"alg": "RSA-OAEP", "enc": "A256GCM", "cty": "JWT"}, "allow-list"),  # SHA-1 OAEP
    ({"alg": "rsa-oaep-256", "enc": "A256GCM", "cty": "JWT"}, "allow-list"),  # wrong casing
    ({"alg": "RSA-OAEP-256", "enc": "A128CBC-HS256", "cty": "JWT"}, "enc"),  # CBC content
    ({"alg": "RSA-OAEP-256", "enc": "A128GCM", "cty": "JWT"}, "enc"),  # short content key
    ({"alg": "RSA-OAEP-256", "cty": "JWT"}, "enc"),  # enc missing
    ({"enc": "A256GCM", "cty": "JWT"}, "alg missing"),
    ({"alg": ["RSA-OAEP-256"], "enc": "A256GCM"}, "alg missing"),  # alg not a string
    (jwe_base(jku="https://attacker.example/jwks"), "jku"),  # key URL: never fetched
    (jwe_base(x5u="https://attacker.example/cert"), "x5u"),
    (jwe_base(x5c=["MIIB"]), "x5c"),
    (jwe_base(jwk=valid_epk()), "embedded jwk"),
    (jwe_base(crit=["exp"]), "crit"),  # unknown critical extension
    (jwe_base(crit=[]), "crit"),
    (jwe_base(p2c=1), "not allowed"),  # unknown member
    (jwe_base(kid=7), "kid"),  # kid of the wrong type
    (jwe_base(kid="k" * 300), "kid"),  # absurd kid
    (jwe_base(epk=off_curve_epk()), "not a point on P-256"),  # invalid-curve attack
    (jwe_base(epk={**valid_epk(), "crv": "P-384"}), "P-256"),  # other curve
    (jwe_base(epk={**valid_epk(), "kty": "OKP", "crv": "X25519"}), "P-256"),
    (jwe_base(epk={**valid_epk(), "d": "AAAA"}), "members"),  # private member in epk
    (jwe_base(epk={"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}), "P-256"),  # short
    (jwe_base(epk="not-an-object"), "epk"),
    ({"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT"}, "epk missing"),
    ({"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT", "epk": valid_epk()}, "epk"),
    ({"alg": "RSA-OAEP-256", "enc": "A256GCM"}, "cty"),  # not a nested JWT
    ({"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "json"}, "cty"),
]


@pytest.mark.parametrize(("header", "reason"), HOSTILE_JWE_HEADERS)
def test_hostile_jwe_header_is_refused_before_any_key_is_touched(
    gateway: Party, police: Party, tripwire: None, header: dict[str, Any], reason: str
) -> None:
    """Each header outside the allow-lists is refused by the pre-parse, with a precise reason."""
    with pytest.raises(JoseRejected, match=reason) as caught:
        unseal_from(fake_jwe(header), gateway.decryption, police.signing.jwks())
    assert caught.value.code == "jose_rejected"
    assert caught.value.public_message == "The request could not be processed."


def test_duplicate_header_member_is_refused(gateway: Party, police: Party, tripwire: None) -> None:
    """{"alg": "RSA-OAEP-256", "alg": "dir"}: parsers disagree on which wins, so refuse."""
    raw = b'{"alg":"RSA-OAEP-256","enc":"A256GCM","cty":"JWT","alg":"dir"}'
    token = fake_jwe({}).split(".", 1)[1]
    with pytest.raises(JoseRejected, match="duplicate"):
        unseal_from(b64(raw) + "." + token, gateway.decryption, police.signing.jwks())


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("a.b.c.d", "segments"),  # four segments
        ("a.b.c.d.e.f", "segments"),  # six
        ("", "segments"),
        ("é.b.c.d.e", "ASCII"),
        (b64(jwe_base()) + "=.AA.AA.AA.AA", "base64url"),  # padding is not base64url
        (b64(jwe_base()) + ".A+/A.AA.AA.AA", "base64url"),  # standard alphabet
        (b64(jwe_base()) + ".AAB.AA.AA.AA", "non-canonical"),  # trailing bits set
        (b64("[1,2]") + ".AA.AA.AA.AA", "JSON object"),
        (b64(b"\xff\xfe") + ".AA.AA.AA.AA", "JSON object"),  # not UTF-8
        (b64('{"alg":NaN}') + ".AA.AA.AA.AA", "JSON object"),
    ],
)
def test_malformed_jwe_is_refused(
    gateway: Party, police: Party, tripwire: None, token: str, reason: str
) -> None:
    """Structure, alphabet and JSON are checked strictly before anything else."""
    with pytest.raises(JoseRejected, match=reason):
        unseal_from(token, gateway.decryption, police.signing.jwks())


def test_oversized_token_and_header_are_refused_early(
    gateway: Party, police: Party, tripwire: None
) -> None:
    """A token over the cap, or a header over 4 KiB, is refused on length alone."""
    small = Limits(max_payload_bytes=1024)
    huge = fake_jwe(jwe_base()) + "A" * (small.max_token_bytes + 1)
    with pytest.raises(JoseRejected, match="over the cap"):
        unseal_from(huge, gateway.decryption, police.signing.jwks(), limits=small)
    fat_header = {**jwe_base(), "apu": "A" * 250, "apv": "A" * 250}
    for index in range(20):
        fat_header[f"x{index}"] = "y" * 200
    with pytest.raises(JoseRejected, match="header over"):
        unseal_from(fake_jwe(fat_header), gateway.decryption, police.signing.jwks())


def test_wrong_iv_tag_or_key_length_is_refused(
    gateway: Party, police: Party, tripwire: None
) -> None:
    """A256GCM needs a 96-bit IV and 128-bit tag; A256KW wraps to 40 bytes."""
    good = fake_jwe(jwe_base()).split(".")
    for index, length in ((2, 16), (4, 12), (1, 24)):
        parts = list(good)
        parts[index] = b64(os.urandom(length))
        with pytest.raises(JoseRejected, match=r"bits|bytes"):
            unseal_from(".".join(parts), gateway.decryption, police.signing.jwks())


# -- JWEs that decrypt but must still be refused -------------------------------------------


def jc_key(jwk: dict[str, Any]) -> jc_jwk.JWK:
    return jc_jwk.JWK(**jwk)


def encrypt_to(recipient_jwk: dict[str, Any], plaintext: bytes, header: dict[str, Any]) -> str:
    """Encrypt with jwcrypto (an independent implementation) to our public key."""
    token = jc_jwe.JWE(plaintext, protected=json.dumps(header))
    token.add_recipient(jc_key(recipient_jwk))
    return str(token.serialize(compact=True))


def test_valid_jwe_around_unsigned_jws_is_refused(gateway: Party, police: Party) -> None:
    """An inner JWS with alg none (unsigned) is refused even though decryption succeeded."""
    inner = b64({"alg": "none"}) + "." + b64(b'{"nominal":"N-1"}') + "."
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT"}
    token = encrypt_to(gateway.ec_public(), inner.encode(), header)
    with pytest.raises(JoseRejected, match="unsecured"):
        unseal_from(token, gateway.decryption, police.signing.jwks())


def test_valid_jwe_around_plain_json_is_refused(gateway: Party, police: Party) -> None:
    """A JWE whose plaintext is bare JSON (no signature at all) is refused."""
    header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT"}
    token = encrypt_to(gateway.rsa_public(), b'{"nominal":"N-1"}', header)
    with pytest.raises(JoseRejected, match="segments"):
        unseal_from(token, gateway.decryption, police.signing.jwks())


def test_body_signed_by_another_agency_is_refused(
    gateway: Party, police: Party, housing: Party
) -> None:
    """Housing signs a body and claims to be police: police's key set does not verify it."""
    token = seal_for(b'{"claim":"I am police"}', housing.signing, gateway.ec_public())
    with pytest.raises(JoseRejected, match="unknown"):
        unseal_from(token, gateway.decryption, police.signing.jwks())


def test_body_signed_by_another_agency_without_kid_is_refused(
    gateway: Party, police: Party
) -> None:
    """Without a kid every pinned sender key is tried; an outsider's signature fails them all."""
    outsider = jc_jwk.JWK.generate(kty="EC", crv="P-256")
    signed = jc_jws.JWS(b"forged")
    signed.add_signature(outsider, None, json.dumps({"alg": "ES256"}))
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT"}
    token = encrypt_to(gateway.ec_public(), signed.serialize(compact=True).encode(), header)
    with pytest.raises(JoseRejected, match="bad_signature"):
        unseal_from(token, gateway.decryption, police.signing.jwks())


def test_inner_jws_with_embedded_jwk_is_refused(gateway: Party, police: Party) -> None:
    """An attacker embeds their own key in the inner JWS header: never trusted."""
    attacker = jc_jwk.JWK.generate(kty="EC", crv="P-256")
    protected = {"alg": "ES256", "jwk": attacker.export_public(as_dict=True)}
    signed = jc_jws.JWS(b"forged")
    signed.add_signature(attacker, None, json.dumps(protected))
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT"}
    token = encrypt_to(gateway.ec_public(), signed.serialize(compact=True).encode(), header)
    with pytest.raises(JoseRejected, match="embedded jwk"):
        unseal_from(token, gateway.decryption, police.signing.jwks())


def test_jwe_to_unknown_recipient_kid_is_refused(gateway: Party, police: Party) -> None:
    """A kid the decryption ring does not hold is refused without trying other keys."""
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", "kid": "not-ours"}
    token = encrypt_to(gateway.ec_public(), b"x.y.z", header)
    with pytest.raises(JoseRejected, match="key_unknown"):
        unseal_from(token, gateway.decryption, police.signing.jwks())


def test_jwe_alg_not_pinned_to_the_named_key_is_refused(gateway: Party, police: Party) -> None:
    """RSA-OAEP-256 naming the EC key's kid: the key is pinned to ECDH-ES+A256KW."""
    header = {
        "alg": "RSA-OAEP-256",
        "enc": "A256GCM",
        "cty": "JWT",
        "kid": gateway.ec_public()["kid"],
    }
    token = encrypt_to(gateway.rsa_public(), b"x.y.z", header)
    with pytest.raises(JoseRejected, match="no usable"):
        unseal_from(token, gateway.decryption, police.signing.jwks())


def test_jwe_for_another_recipient_is_refused(
    gateway: Party, police: Party, housing: Party
) -> None:
    """A body sealed to housing's key cannot be opened with the gateway's ring."""
    token = seal_for(b"for housing", police.signing, housing.ec_public())
    with pytest.raises(JoseRejected, match="key_unknown"):
        unseal_from(token, gateway.decryption, police.signing.jwks())
    stripped = {k: v for k, v in housing.ec_public().items() if k != "kid"}
    stripped["kid"] = gateway.ec_public()["kid"]
    with pytest.raises(JoseRejected, match="decode"):
        unseal_from(
            seal_for(b"for housing", police.signing, stripped),
            gateway.decryption,
            police.signing.jwks(),
        )


SEGMENTS = ["header", "encrypted key", "iv", "ciphertext", "tag"]


@pytest.mark.parametrize("recipient", ["ec", "rsa"])
@pytest.mark.parametrize("segment", range(5), ids=SEGMENTS)
def test_bit_flip_in_any_jwe_segment_gives_one_generic_error(
    gateway: Party, police: Party, recipient: str, segment: int
) -> None:
    """Flipping bits across a segment's bytes always raises JoseRejected, never anything else."""
    jwk = gateway.ec_public() if recipient == "ec" else gateway.rsa_public()
    token = seal_for(b'{"minutes":"level 2 meeting"}', police.signing, jwk)
    parts = token.split(".")
    raw = unb64(parts[segment])
    positions = sorted({0, len(raw) // 2, len(raw) - 1, *range(0, len(raw), max(1, len(raw) // 6))})
    for position in positions:
        for bit in (0, 7):
            flipped = bytearray(raw)
            flipped[position] ^= 1 << bit
            tampered = list(parts)
            tampered[segment] = b64(bytes(flipped))
            with pytest.raises(JoseRejected) as caught:
                unseal_from(".".join(tampered), gateway.decryption, police.signing.jwks())
            assert caught.value.public_message == "The request could not be processed."
    assert unseal_from(token, gateway.decryption, police.signing.jwks()).payload


# -- JWS / JWT -------------------------------------------------------------------------------


def _token_ring(gateway: Party) -> Any:
    return gateway.repository.ring(Purpose.TOKEN_SIGNING)


def _claims() -> dict[str, Any]:
    return {"sub": "police-01", "exp": int(T0.timestamp()) + 300}


def _signed_with(header: dict[str, Any], claims: dict[str, Any], key: jc_jwk.JWK) -> str:
    token = jc_jws.JWS(json.dumps(claims).encode())
    token.add_signature(key, None, json.dumps(header))
    return str(token.serialize(compact=True))


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_jwt_with_alg_none_in_any_casing_is_refused(
    gateway: Party, tripwire: None, alg: str
) -> None:
    """Unsecured JWTs are refused, whatever the casing, with or without a signature segment."""
    ring = _token_ring(gateway)
    for signature in ("", "AAAA"):
        token = f"{b64({'alg': alg, 'typ': 'at+jwt'})}.{b64(_claims())}.{signature}"
        with pytest.raises(JoseRejected, match="unsecured"):
            verify_jwt(token, ring.public_keys(), typ="at+jwt", now=T0)


def test_hs256_keyed_with_the_public_key_is_refused(gateway: Party, tripwire: None) -> None:
    """Algorithm confusion: an HMAC over the token keyed by our public key's bytes."""
    ring = _token_ring(gateway)
    public = json.dumps(ring.current().public.jwk).encode()
    header = {"alg": "HS256", "kid": ring.current().kid, "typ": "at+jwt"}
    signing_input = f"{b64(header)}.{b64(_claims())}"
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(JoseRejected, match="symmetric"):
        verify_jwt(f"{signing_input}.{b64(mac)}", ring.public_keys(), typ="at+jwt", now=T0)


@pytest.mark.parametrize("alg", ["ES384", "ES512", "RS256", "PS256", "ES256K", "Ed448"])
def test_jws_alg_outside_the_allow_list_is_refused(
    gateway: Party, tripwire: None, alg: str
) -> None:
    """Only ES256 and EdDSA are accepted."""
    ring = _token_ring(gateway)
    token = f"{b64({'alg': alg, 'kid': ring.current().kid})}.{b64(_claims())}.AAAA"
    with pytest.raises(JoseRejected, match="allow-list"):
        verify_jwt(token, ring.public_keys(), typ=None, now=T0)


def test_eddsa_header_on_an_es256_key_is_refused(gateway: Party, tripwire: None) -> None:
    """The alg is pinned per key: an ES256 key never verifies an EdDSA token."""
    ring = _token_ring(gateway)
    token = f"{b64({'alg': 'EdDSA', 'kid': ring.current().kid})}.{b64(_claims())}.AAAA"
    with pytest.raises(JoseRejected, match="not pinned"):
        verify_jwt(token, ring.public_keys(), algs=("ES256", "EdDSA"), typ=None, now=T0)


@pytest.mark.parametrize(
    "member",
    [
        {"jku": "https://attacker.example/jwks.json"},
        {"x5u": "https://attacker.example/cert.pem"},
        {"x5c": ["MIIBIjANBgkq"]},
        {"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}},
        {"crit": ["http://example.invalid/unknown"]},
        {"b64": False, "crit": ["b64"]},
        {"zip": "DEF"},
    ],
)
def test_jws_header_key_sources_and_crit_are_refused(
    gateway: Party, tripwire: None, member: dict[str, Any]
) -> None:
    """jku, x5u, x5c and an embedded jwk are never followed; unknown crit is refused."""
    ring = _token_ring(gateway)
    header = {"alg": "ES256", "kid": ring.current().kid, **member}
    with pytest.raises(JoseRejected, match="refused"):
        verify_jwt(f"{b64(header)}.{b64(_claims())}.AAAA", ring.public_keys(), typ=None, now=T0)


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../etc/passwd",
        "/dev/zero",
        "' OR '1'='1' --",
        "$(touch /tmp/pwned)",
        "`reboot`",
        "kid\x00.json",
    ],
)
def test_hostile_kid_is_refused_touching_no_file(
    gateway: Party, tripwire: None, monkeypatch: pytest.MonkeyPatch, kid: str
) -> None:
    """kids that look like paths, SQL or shell are plain dictionary misses: no file is opened."""
    ring = _token_ring(gateway)
    keys_by_kid = ring.public_keys()
    token = f"{b64({'alg': 'ES256', 'kid': kid})}.{b64(_claims())}.AAAA"

    def no_files(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a file was opened")

    monkeypatch.setattr(builtins, "open", no_files)
    monkeypatch.setattr(os, "open", no_files)
    with pytest.raises(JoseRejected, match="unknown"):
        verify_jwt(token, keys_by_kid, typ=None, now=T0)


def test_null_and_truncated_signatures_are_refused(gateway: Party) -> None:
    """An empty signature, a truncated one and one of zeros all fail verification."""
    ring = _token_ring(gateway)
    token = sign_jwt(_claims(), ring, typ="at+jwt")
    head, body, signature = token.split(".")
    for forged in ("", signature[:43], b64(bytes(64)), b64(unb64(signature)[:-1])):
        with pytest.raises(JoseRejected):
            verify_jwt(f"{head}.{body}.{forged}", ring.public_keys(), typ="at+jwt", now=T0)


def test_signature_by_unknown_key_with_known_kid_is_refused(gateway: Party) -> None:
    """A forger copies our kid into a header signed with their own key."""
    ring = _token_ring(gateway)
    forger = jc_jwk.JWK.generate(kty="EC", crv="P-256")
    token = _signed_with({"alg": "ES256", "kid": ring.current().kid}, _claims(), forger)
    with pytest.raises(JoseRejected, match="bad_signature"):
        verify_jwt(token, ring.public_keys(), typ=None, now=T0)


@pytest.mark.parametrize(
    "wrong_typ",
    [
        "dpop+jwt",  # a DPoP proof presented as an access token
        "client-authentication+jwt",  # a client assertion
        None,  # no typ at all
    ],
)
def test_wrong_typ_is_refused(gateway: Party, wrong_typ: str | None) -> None:
    """A token of another kind, signed by the same key, is not an access token."""
    ring = _token_ring(gateway)
    if wrong_typ is None:
        token = _signed_with(
            {"alg": "ES256", "kid": ring.current().kid},
            _claims(),
            jc_key(ring.current().jose_key.as_dict(private=True)),
        )
    else:
        token = sign_jwt(_claims(), ring, typ=wrong_typ)
    with pytest.raises(JoseRejected, match="typ"):
        verify_jwt(token, ring.public_keys(), typ="at+jwt", now=T0)


def test_jwe_presented_as_jwt_is_refused(gateway: Party, police: Party) -> None:
    """A compact JWE where a JWS is expected fails on structure."""
    token = seal_for(b"x", police.signing, gateway.ec_public())
    with pytest.raises(JoseRejected, match="segments"):
        verify_jwt(token, _token_ring(gateway).public_keys(), typ=None, now=T0)


def test_duplicate_claims_are_refused(gateway: Party) -> None:
    """{"exp": far future, "exp": past}: refuse rather than guess which one counts."""
    ring = _token_ring(gateway)
    key = jc_key(ring.current().jose_key.as_dict(private=True))
    payload = b'{"exp":9999999999,"exp":1}'
    signed = jc_jws.JWS(payload)
    signed.add_signature(key, None, json.dumps({"alg": "ES256", "kid": ring.current().kid}))
    with pytest.raises(JoseRejected, match="duplicate"):
        verify_jwt(signed.serialize(compact=True), ring.public_keys(), typ=None, now=T0)


@pytest.mark.parametrize(
    "number",
    [
        "1" + "0" * 400,  # an integer no float holds: math.isfinite overflowed
        "-1" + "0" * 400,
        "1e400",  # infinity to the JSON parser
        "-1e400",
        "253402300800",  # a second past the end of year 9999
    ],
)
@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_time_claim_that_is_no_usable_numeric_date_is_refused(
    gateway: Party, claim: str, number: str
) -> None:
    """A signed JWT whose exp, nbf or iat no clock can read: JoseRejected, never OverflowError."""
    ring = _token_ring(gateway)
    key = jc_key(ring.current().jose_key.as_dict(private=True))
    exp = int(T0.timestamp()) + 300
    payload = f'{{"exp":{exp},"{claim}":{number}}}' if claim != "exp" else f'{{"exp":{number}}}'
    signed = jc_jws.JWS(payload.encode())
    signed.add_signature(key, None, json.dumps({"alg": "ES256", "kid": ring.current().kid}))
    with pytest.raises(JoseRejected, match="not a NumericDate"):
        verify_jwt(signed.serialize(compact=True), ring.public_keys(), typ=None, now=T0)


def test_oversized_jwt_is_refused_before_verification(gateway: Party, tripwire: None) -> None:
    """A 10 MB token is refused on length, without decoding it."""
    ring = _token_ring(gateway)
    token = f"{b64({'alg': 'ES256'})}.{'A' * 10_000_000}.AAAA"
    with pytest.raises(JoseRejected, match="over the cap"):
        verify_jwt(token, ring.public_keys(), typ=None, now=T0)
