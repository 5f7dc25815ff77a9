"""THREATS.md "Access tokens": hostile tokens and proofs against the authenticate dependency."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey

from gateway.agencies import reinstate_agency, rotate_agency_keys, suspend_agency
from gateway.oauth.signing import TokenSigner
from gateway.state import GatewayState
from keys import FileKeyRepository, Purpose, kek_from_file
from tests.gateway.hostile_labels import HOSTILE, LEGITIMATE
from tests.gateway.oauth.support import (
    CONTEXT,
    DROP,
    ISSUER,
    WHOAMI_URL,
    AgencyClient,
    Ledger,
    Raw,
    assert_refused,
    b64,
    forge,
)


@pytest.fixture
def gateway_key(gateway_keys: tuple[Path, Path]) -> Any:
    """The gateway's current token-signing key (private), to forge otherwise-valid tokens."""
    keys_dir, kek_file = gateway_keys
    ring = FileKeyRepository(keys_dir, kek_from_file(kek_file)).ring(Purpose.TOKEN_SIGNING)
    return ring.current("ES256")


def token_claims(agency: AgencyClient, **overrides: Any) -> dict[str, Any]:
    now = agency.clock.ts
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": agency.client_id,
        "client_id": agency.client_id,
        "aud": ISSUER + "/v1",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "scope": "case:read",
        "cnf": {"jkt": agency.dpop_key.thumbprint()},
        "agency_type": "police",
        "role": "responsible_authority",
        "area": "avon-somerset",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not DROP}


def mint(
    gateway_key: Any, agency: AgencyClient, header: dict[str, Any] | None = None, **claims: Any
) -> str:
    head = {"alg": "ES256", "typ": "at+jwt", "kid": gateway_key.kid, **(header or {})}
    return forge(head, token_claims(agency, **claims), gateway_key.jose_key)


async def call(
    http: httpx.AsyncClient, agency: AgencyClient, token: str, **proof: Any
) -> httpx.Response:
    return await http.get("/v1/whoami", headers=agency.resource_headers(token, **proof))


async def test_forged_token_with_gateway_key_is_accepted_as_a_control(
    http: httpx.AsyncClient, police: AgencyClient, gateway_key: Any
) -> None:
    """The forging helper makes tokens the gateway accepts, so each refusal below is real."""
    response = await call(http, police, mint(gateway_key, police))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "alg",
    [
        "none",  # lower case
        "NONE",  # upper case
        "None",  # title case
        "nOnE",  # mixed case
    ],
)
async def test_unsigned_access_token_is_refused_in_any_casing(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, gateway_key: Any, alg: str
) -> None:
    """alg none in any casing: refused from the header alone."""
    token = forge({"alg": alg, "typ": "at+jwt", "kid": gateway_key.kid}, token_claims(police))
    response = await call(http, police, token)
    await assert_refused(response, ledger, code="invalid_token", reason="alg_refused")


@pytest.mark.parametrize(
    "secret_form",
    [
        "jwk_json",  # the published JWK as JSON text
        "pem",  # the public key as PEM
    ],
)
async def test_access_token_alg_confusion_is_refused(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    gateway_key: Any,
    secret_form: str,
) -> None:
    """HS256 keyed with the gateway's public key (from its JWKS) is refused."""
    published = (await http.get("/.well-known/jwks.json")).json()["keys"][0]
    import json

    secret = (
        json.dumps(published).encode()
        if secret_form == "jwk_json"
        else ECKey.import_key(published).as_pem(private=False)
    )
    token = forge(
        {"alg": "HS256", "typ": "at+jwt", "kid": published["kid"]}, token_claims(police), secret
    )
    response = await call(http, police, token)
    await assert_refused(response, ledger, code="invalid_token", reason="alg_refused")


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        # no signature at all
        (lambda t: t.rsplit(".", 1)[0] + ".", "signature_missing"),
        # half a signature
        (lambda t: t[: len(t) - 40], "bad_signature"),
        # a signature of zeros
        (lambda t: t.rsplit(".", 1)[0] + "." + b64(bytes(64)), "bad_signature"),
        # a flipped payload under the old signature
        (
            lambda t: ".".join([t.split(".")[0], b64(b'{"iss":"x"}'), t.split(".")[2]]),
            "bad_signature",
        ),
    ],
)
async def test_null_or_truncated_signature_is_refused(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    gateway_key: Any,
    mangle: Any,
    reason: str,
) -> None:
    """A token whose signature is missing, cut short, zeroed or not over the payload."""
    response = await call(http, police, mangle(mint(gateway_key, police)))
    await assert_refused(response, ledger, code="invalid_token", reason=reason)


async def test_token_signed_by_an_unknown_key_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, gateway_key: Any
) -> None:
    """A stranger's ES256 key, with the gateway's kid or its own: refused."""
    stranger = ECKey.generate_key("P-256")
    own_kid = forge(
        {"alg": "ES256", "typ": "at+jwt", "kid": stranger.thumbprint()},
        token_claims(police),
        stranger,
    )
    response = await call(http, police, own_kid)
    await assert_refused(response, ledger, code="invalid_token", reason="key_unknown")
    our_kid = forge(
        {"alg": "ES256", "typ": "at+jwt", "kid": gateway_key.kid}, token_claims(police), stranger
    )
    response = await call(http, police, our_kid)
    await assert_refused(response, ledger, code="invalid_token", reason="bad_signature")


@pytest.mark.parametrize(
    "kid",
    [
        "../../etc/passwd",  # a path
        "/dev/random",  # a device
        "' OR 1=1--",  # SQL
        "x'; DROP TABLE agencies;--",  # more SQL
        "$(reboot)",  # shell
        "`id`",  # shell backticks
        "a" * 300,  # far too long
    ],
)
async def test_hostile_kid_is_refused_quickly_touching_no_file_or_shell(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    gateway_key: Any,
    kid: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kid values like paths, SQL or shell are refused by pattern before any lookup: no key
    is looked up for them, and nothing reaches a file or a shell."""
    token = forge(
        {"alg": "ES256", "typ": "at+jwt", "kid": kid}, token_claims(police), gateway_key.jose_key
    )
    headers = police.resource_headers(token)

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a hostile kid reached the file system or a shell")

    monkeypatch.setattr(os, "system", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(Path, "open", forbidden)
    monkeypatch.setattr(Path, "read_bytes", forbidden)
    monkeypatch.setattr(TokenSigner, "verification_key", forbidden)
    response = await http.get("/v1/whoami", headers=headers)
    monkeypatch.undo()
    await assert_refused(response, ledger, code="invalid_token", reason="kid_malformed")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        # a key URL: never followed
        ({"jku": "https://attacker.example/jwks.json"}, "header_jku_refused"),
        # a certificate URL: never followed
        ({"x5u": "https://attacker.example/cert.pem"}, "header_x5u_refused"),
        # an embedded key: never trusted
        ({"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}, "header_jwk_refused"),
        # an embedded certificate chain
        ({"x5c": ["MIIB"]}, "header_x5c_refused"),
        # an unknown critical extension
        (
            {"crit": ["urn:example:must-understand"], "urn:example:must-understand": True},
            "header_crit_refused",
        ),
    ],
)
async def test_token_header_that_carries_keys_or_crit_is_refused(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    gateway_key: Any,
    header: dict[str, Any],
    reason: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """jku, x5u, jwk, x5c and unknown crit: refused, and no HTTP request leaves the gateway."""
    token = mint(gateway_key, police, header=header)
    headers = police.resource_headers(token)

    async def no_fetch(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the gateway tried to fetch a URL from a token header")

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", no_fetch)
    response = await http.get("/v1/whoami", headers=headers)
    await assert_refused(response, ledger, code="invalid_token", reason=reason)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        # expired a minute ago
        ({"exp": -60}, "token_expired"),
        # not valid for another minute
        ({"nbf": 60}, "token_not_yet_valid"),
        # issued in the future
        ({"iat": 60}, "token_iat_future"),
    ],
)
async def test_token_outside_its_validity_is_refused(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    gateway_key: Any,
    claims: dict[str, int],
    reason: str,
) -> None:
    """Expired or not-yet-valid tokens, signed by the gateway itself, are refused."""
    shifted = {name: police.clock.ts + delta for name, delta in claims.items()}
    response = await call(http, police, mint(gateway_key, police, **shifted))
    await assert_refused(response, ledger, code="invalid_token", reason=reason, agency_id=None)


async def test_token_expires_with_the_clock(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """A real token works now and is refused 300 s + leeway later."""
    token = await police.token(http)
    assert (await call(http, police, token)).status_code == 200
    police.clock.advance(306)
    response = await call(http, police, token)
    await assert_refused(
        response, ledger, code="invalid_token", reason="token_expired", issued=1, jtis=3
    )


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        # the issuer identifier as audience (what a client assertion carries)
        ({"aud": ISSUER}, "token_aud"),
        # another API
        ({"aud": "https://other.example/v1"}, "token_aud"),
        # another issuer
        ({"iss": "https://evil.example"}, "token_iss"),
        # not bound to a DPoP key
        ({"cnf": DROP}, "token_not_bound"),
        # sub and client_id disagree
        ({"sub": "housing-bristol"}, "token_sub"),
    ],
)
async def test_token_with_wrong_audience_or_issuer_is_refused(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    gateway_key: Any,
    claims: dict[str, Any],
    reason: str,
) -> None:
    """Wrong aud or iss, or an unbound token: refused even with the gateway's signature."""
    response = await call(http, police, mint(gateway_key, police, **claims))
    await assert_refused(response, ledger, code="invalid_token", reason=reason)


@pytest.mark.parametrize(
    ("typ", "reason"),
    [
        ("JWT", "token_typ"),  # a plain JWT
        ("dpop+jwt", "token_typ"),  # a DPoP proof's typ
        ("client-authentication+jwt", "token_typ"),  # a client assertion's typ
        (DROP, "header_typ_missing"),  # no typ at all
    ],
)
async def test_token_with_wrong_typ_is_refused(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    gateway_key: Any,
    typ: Any,
    reason: str,
) -> None:
    """Only at+jwt is an access token, even when the gateway's key signed it."""
    head = {"alg": "ES256", "kid": gateway_key.kid, "typ": typ}
    token = forge(
        {k: v for k, v in head.items() if v is not DROP}, token_claims(police), gateway_key.jose_key
    )
    response = await call(http, police, token)
    await assert_refused(response, ledger, code="invalid_token", reason=reason)


async def test_client_assertion_presented_as_access_token_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """An agency's own client assertion is not an access token."""
    response = await call(http, police, police.assertion())
    await assert_refused(response, ledger, code="invalid_token")


async def test_dpop_proof_presented_as_access_token_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """A DPoP proof is not an access token."""
    response = await call(http, police, police.proof("GET", WHOAMI_URL))
    await assert_refused(response, ledger, code="invalid_token")


async def test_jwe_presented_as_access_token_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """A five-part JWE is refused as not a JWS."""
    jwe = ".".join(
        [b64(b'{"alg":"ECDH-ES+A256KW","enc":"A256GCM"}'), "AAAA", "AAAA", "AAAA", "AAAA"]
    )
    response = await call(http, police, jwe)
    await assert_refused(response, ledger, code="invalid_token", reason="jwe_not_jws")


async def test_oversized_token_is_refused_by_length(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, gateway_key: Any
) -> None:
    """A 6 KB token (under the header cap) is refused by length before decoding."""
    token = mint(gateway_key, police, padding="p" * 6000)
    response = await call(http, police, token)
    await assert_refused(response, ledger, code="invalid_token", reason="too_large")


async def test_oversized_headers_are_refused_at_the_edge(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """A 64 KB Authorization header is refused (431) before the app reads it."""
    headers = {"Authorization": "DPoP " + "a" * 65536, "DPoP": "x", **CONTEXT}
    response = await http.get("/v1/whoami", headers=headers)
    assert response.status_code == 431
    assert await ledger.issued() == 0
    assert await ledger.jtis() == 0


async def test_token_bound_to_key_a_with_proof_from_key_b_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """The proof is valid in itself, but its key is not the one in cnf.jkt."""
    token = await police.token(http)
    response = await call(http, police, token, key=ECKey.generate_key("P-256"))
    await assert_refused(
        response,
        ledger,
        code="invalid_dpop_proof",
        reason="dpop_key_mismatch",
        agency_id="police-avon",
        issued=1,
        jtis=2,
    )


async def test_dpop_token_presented_as_bearer_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """Authorization: Bearer with a DPoP-bound token is refused (after the token verified, so
    the refusal names the agency)."""
    token = await police.token(http)
    headers = police.resource_headers(token)
    headers["Authorization"] = f"Bearer {token}"
    response = await http.get("/v1/whoami", headers=headers)
    await assert_refused(
        response,
        ledger,
        code="invalid_token",
        reason="dpop_token_as_bearer",
        agency_id=police.client_id,
        issued=1,
        jtis=2,
    )


@pytest.mark.parametrize(
    ("proof", "reason"),
    [
        # another method
        ({"htm": "POST"}, "dpop_htm"),
        # another URL
        ({"url": ISSUER + "/v1/nominals"}, "dpop_htu"),
        # another host
        ({"url": "https://evil.example/v1/whoami"}, "dpop_htu"),
        # too old
        ({"iat": -120}, "dpop_iat_stale"),
        # too far ahead
        ({"iat": 120}, "dpop_iat_future"),
        # no jti
        ({"jti": DROP}, "dpop_jti"),
        # ath over another token
        ({"ath": b64(b"\x00" * 32)}, "dpop_ath"),
        # no ath
        ({"ath": DROP}, "dpop_ath"),
        # a private key in the header jwk
        ({"header": {"jwk": "private"}}, "dpop_jwk_refused"),
        # wrong typ
        ({"header": {"typ": "jwt"}}, "dpop_typ"),
        # a kid instead of a jwk
        ({"header": {"jwk": DROP, "kid": "k1"}}, "header_kid_refused"),
    ],
)
async def test_bad_dpop_proof_on_a_protected_call_is_refused(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    proof: dict[str, Any],
    reason: str,
) -> None:
    """Each broken part of the proof is refused and audited; nothing new is spent."""
    token = await police.token(http)
    proof = dict(proof)
    method = proof.pop("htm", "GET")
    url = proof.pop("url", WHOAMI_URL)
    if "iat" in proof:
        proof["iat"] = police.clock.ts + proof["iat"]
    header = proof.pop("header", None)
    if header and header.get("jwk") == "private":
        header = {"jwk": police.dpop_key.as_dict(private=True)}
    headers = {
        "Authorization": f"DPoP {token}",
        "DPoP": police.proof(method, url, token=token, header=header, **proof),
        **CONTEXT,
    }
    response = await http.get("/v1/whoami", headers=headers)
    await assert_refused(
        response,
        ledger,
        code="invalid_dpop_proof",
        reason=reason,
        agency_id="police-avon",
        issued=1,
        jtis=2,
    )


#: Numbers no clock reads as a NumericDate: beyond a float (the JSON parser reads infinity,
#: which ``int`` cannot convert: a 500 before), and finite ones outside 0 to the end of 9999.
UNUSABLE_NUMERIC_DATES = ["1e400", "-1e400", "1E+999", "1" + "0" * 400, "1e308", "-1"]


@pytest.mark.parametrize("iat", UNUSABLE_NUMERIC_DATES)
async def test_dpop_iat_that_is_no_usable_numeric_date_is_refused_and_audited(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, iat: str
) -> None:
    """A proof signed by the caller's own DPoP key with ``iat`` 1e400 (or any number out of
    range) is refused like a missing ``iat``, and audited; nothing new is spent."""
    token = await police.token(http)
    response = await http.get("/v1/whoami", headers=police.resource_headers(token, iat=Raw(iat)))
    await assert_refused(
        response,
        ledger,
        code="invalid_dpop_proof",
        reason="dpop_iat_missing",
        agency_id="police-avon",
        issued=1,
        jtis=2,
    )


async def test_dpop_iat_with_a_fraction_is_a_numeric_date(
    http: httpx.AsyncClient, police: AgencyClient
) -> None:
    """RFC 7519 NumericDates may carry a fraction: a current ``iat`` of x.5 is accepted."""
    token = await police.token(http)
    headers = police.resource_headers(token, iat=police.clock.ts + 0.5)
    response = await http.get("/v1/whoami", headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("sent", "signed", "accepted"),
    [
        # the proof names the path exactly as sent, escapes and all
        ("/v1/nominals/a%3Ab", "/v1/nominals/a%3Ab", True),
        # escape hex in either case is one path (RFC 3986 6.2.2.1)
        ("/v1/nominals/a%3ab", "/v1/nominals/a%3Ab", True),
        # an escaped character is that character: the resource the router serves
        ("/v1/nominals/a%2Db", "/v1/nominals/a-b", True),
        ("/v1/nominals/a-b", "/v1/nominals/a%2Db", True),
        ("/v1/nominals/a%3Ab", "/v1/nominals/a:b", True),
        ("/v1/nominals/a%27%20b", "/v1/nominals/a' b", True),
        # another resource, escaped or not: refused
        ("/v1/nominals/a%3Ab", "/v1/nominals/a%3Ac", False),
        ("/v1/nominals/a-b", "/v1/nominals/a%2Dc", False),
        ("/v1/nominals/a-b", "/v1/nominals/a-b/records", False),
    ],
)
async def test_dpop_htu_names_the_resource_served_whether_or_not_it_is_percent_encoded(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    sent: str,
    signed: str,
    accepted: bool,
) -> None:
    """The htu check normalises both URLs (RFC 3986 syntax-based normalisation, as RFC 9449
    asks) and compares the resources they name: a client that signs the path as it sent it on
    the wire, escapes and all, is accepted as well as one that signs it unescaped; a proof for
    any other path is refused."""
    token = await police.token(http)
    headers = police.resource_headers(token, url=ISSUER + signed)
    response = await http.get(httpx.URL(ISSUER + sent), headers=headers)
    refusals = [entry.reason_code for entry in await ledger.refusals()]
    if accepted:  # authenticated (its proof spent), then the route's own answer
        assert response.status_code == 403, response.text  # the test context's basis
        assert response.json()["code"] == "lawful_basis_refused"
        assert "dpop_htu" not in refusals
        assert await ledger.jtis() == 3
    else:
        await assert_refused(
            response,
            ledger,
            code="invalid_dpop_proof",
            reason="dpop_htu",
            agency_id="police-avon",
            issued=1,
            jtis=2,
        )


async def test_replayed_dpop_proof_on_a_protected_call_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """The same proof twice: the second call is refused."""
    token = await police.token(http)
    headers = police.resource_headers(token)
    assert (await http.get("/v1/whoami", headers=headers)).status_code == 200
    response = await http.get("/v1/whoami", headers=headers)
    await assert_refused(
        response,
        ledger,
        code="invalid_dpop_proof",
        reason="dpop_jti_replayed",
        agency_id="police-avon",
        issued=1,
        jtis=3,
    )


async def test_missing_credentials_answer_401_with_dpop_challenge_never_422(
    http: httpx.AsyncClient, ledger: Ledger
) -> None:
    """No Authorization, no DPoP: 401 with WWW-Authenticate: DPoP."""
    response = await http.get("/v1/whoami")
    await assert_refused(response, ledger, code="invalid_token", reason="token_missing")
    assert 'algs="ES256 EdDSA"' in response.headers["www-authenticate"]


async def test_missing_dpop_proof_on_a_protected_call_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """A token without its proof is refused."""
    token = await police.token(http)
    response = await http.get("/v1/whoami", headers={"Authorization": f"DPoP {token}", **CONTEXT})
    await assert_refused(
        response,
        ledger,
        code="invalid_dpop_proof",
        reason="dpop_missing",
        agency_id="police-avon",
        issued=1,
        jtis=2,
    )


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("MAPPA-Legal-Basis", DROP, "mappa-legal-basis_missing"),  # no legal basis
        ("MAPPA-Purpose", DROP, "mappa-purpose_missing"),  # no purpose
        ("MAPPA-Officer", DROP, "mappa-officer_missing"),  # no officer
        ("MAPPA-Officer", "PC 4521", "mappa-officer_malformed"),  # a space
        ("MAPPA-Officer", "a" * 65, "mappa-officer_malformed"),  # too long
        ("MAPPA-Purpose", "risk;drop", "mappa-purpose_malformed"),  # punctuation
        ("MAPPA-Legal-Basis", "", "mappa-legal-basis_malformed"),  # empty
    ],
)
async def test_missing_or_malformed_context_header_is_refused_with_400(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    name: str,
    value: Any,
    reason: str,
) -> None:
    """Legal basis, purpose and officer must be present and well formed."""
    token = await police.token(http)
    headers = police.resource_headers(token)
    if value is DROP:
        del headers[name]
    else:
        headers[name] = value
    response = await http.get("/v1/whoami", headers=headers)
    await assert_refused(
        response,
        ledger,
        code="invalid_context",
        status=400,
        reason=reason,
        agency_id="police-avon",
        issued=1,
        jtis=2,
    )


@pytest.mark.parametrize(
    "officer",
    [*(p for p in HOSTILE if p.id != "lone-surrogate"), *LEGITIMATE],  # no UTF-8 for a surrogate
)
async def test_an_officer_header_that_is_not_an_identifier_is_refused_and_not_recorded(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, officer: str
) -> None:
    """The officer a case system acts for (``MAPPA-Officer``, the audit's officer column) is an
    identifier of A-Z a-z 0-9 . _ : -: a name with a bidirectional control, a zero-width or
    other format character, a separator, a private-use or unassigned code point, and a real name
    in any script, sent as UTF-8, is refused with a 400 problem before it is recorded anywhere.
    (A control character is refused earlier still, at the edge, as ``bad_header``.)"""
    token = await police.token(http)
    headers: dict[str, Any] = police.resource_headers(token)
    headers["MAPPA-Officer"] = officer.encode()
    response = await http.get("/v1/whoami", headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if response.json()["code"] == "bad_header":
        assert unicodedata.category(officer[len("Police")]) == "Cc"
        return
    refusal = await assert_refused(
        response,
        ledger,
        code="invalid_context",
        status=400,
        reason="mappa-officer_malformed",
        agency_id="police-avon",
        issued=1,
        jtis=2,
    )
    assert refusal.officer_id is None
    assert officer not in json.dumps(refusal.detail, ensure_ascii=False)


async def test_suspension_refuses_outstanding_tokens_on_the_next_request(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, gateway_state: GatewayState
) -> None:
    """Suspend between two calls with the same token: the second is refused."""
    token = await police.token(http)
    assert (await call(http, police, token)).status_code == 200
    await suspend_agency(gateway_state.db, police.client_id)
    response = await call(http, police, token)
    await assert_refused(
        response,
        ledger,
        code="invalid_token",
        reason="agency_suspended",
        agency_id="police-avon",
        issued=1,
        jtis=3,
    )
    await reinstate_agency(gateway_state.db, police.client_id)
    assert (await call(http, police, token)).status_code == 200


async def test_rotated_out_agency_key_is_refused_after_the_overlap(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, gateway_state: GatewayState
) -> None:
    """Old key works during the overlap, is refused after it; the new key works throughout."""
    new = AgencyClient(
        police.client_id, ECKey.generate_key("P-256"), police.clock, dpop_key=police.dpop_key
    )
    await rotate_agency_keys(
        gateway_state.db,
        police.client_id,
        new.public_jwks(),
        dt.timedelta(minutes=10),
        now=police.clock.now,
    )
    assert (await police.token_response(http)).status_code == 200
    assert (await new.token_response(http)).status_code == 200
    police.clock.advance(601)
    response = await police.token_response(http)
    await assert_refused(
        response,
        ledger,
        code="invalid_client",
        reason="key_retired",
        agency_id="police-avon",
        issued=2,
        jtis=4,
    )
    assert (await new.token_response(http)).status_code == 200
