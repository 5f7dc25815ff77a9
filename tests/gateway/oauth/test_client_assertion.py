"""THREATS.md "Authentication": hostile client assertions at POST /oauth/token."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.gateway.oauth.support import (
    DROP,
    ISSUER,
    TOKEN_URL,
    AgencyClient,
    Ledger,
    Raw,
    assert_refused,
)

NOW_PLUS = object()


@pytest.mark.parametrize(
    ("claims", "reason", "agency"),
    [
        # aud is the token endpoint, not the issuer identifier (FAPI 2.0 wants the issuer)
        ({"aud": TOKEN_URL}, "assertion_aud", "police-avon"),
        # aud names another server
        ({"aud": "https://elsewhere.example"}, "assertion_aud", "police-avon"),
        # aud as an array, even one holding the issuer (FAPI 2.0: a string)
        ({"aud": [ISSUER]}, "assertion_aud", "police-avon"),
        # aud left out
        ({"aud": DROP}, "assertion_aud_missing", "police-avon"),
        # iss is another (unregistered) client: the claimed client is unknown
        ({"iss": "housing-bristol"}, "client_unknown", None),
        # sub differs from the client id
        ({"sub": "someone-else"}, "assertion_iss_sub", "police-avon"),
        # sub left out
        ({"sub": DROP}, "assertion_sub_missing", "police-avon"),
        # exp left out
        ({"exp": DROP}, "assertion_exp_missing", "police-avon"),
        # iat left out
        ({"iat": DROP}, "assertion_iat_missing", "police-avon"),
        # jti left out
        ({"jti": DROP}, "assertion_jti_missing", "police-avon"),
        # jti not a string
        ({"jti": 12345}, "assertion_jti", "police-avon"),
        # exp is a string
        ({"exp": "tomorrow"}, "assertion_exp", "police-avon"),
    ],
)
async def test_assertion_with_bad_claims_is_refused_and_audited(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    claims: dict[str, Any],
    reason: str,
    agency: str | None,
) -> None:
    """Wrong aud, iss or sub, and missing sub, exp, iat or jti: invalid_client, audited."""
    response = await police.token_response(http, assertion=police.assertion(**claims))
    await assert_refused(response, ledger, code="invalid_client", reason=reason, agency_id=agency)


@pytest.mark.parametrize(
    ("offsets", "reason"),
    [
        # exp ten seconds ago (beyond the 5 s leeway)
        ({"exp": -10}, "assertion_expired"),
        # exp an hour ahead: more than a few minutes
        ({"exp": 3600}, "assertion_exp_too_far"),
        # iat 61 s in the future
        ({"iat": 61, "exp": 120}, "assertion_iat_future"),
        # nbf 61 s in the future
        ({"nbf": 61, "exp": 120}, "assertion_nbf_future"),
    ],
)
async def test_assertion_outside_its_time_window_is_refused(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    offsets: dict[str, int],
    reason: str,
) -> None:
    """exp past or too far ahead, iat or nbf more than 60 s ahead: refused and audited."""
    claims = {name: police.clock.ts + delta for name, delta in offsets.items()}
    response = await police.token_response(http, assertion=police.assertion(**claims))
    await assert_refused(
        response, ledger, code="invalid_client", reason=reason, agency_id="police-avon"
    )


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" + "0" * 400, "1e308"])
@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
async def test_assertion_time_that_is_no_usable_numeric_date_is_refused_and_audited(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, claim: str, number: str
) -> None:
    """``exp``, ``iat`` or ``nbf`` of 1e400 (infinity to the JSON parser: a 500 before) or out of
    range, under a valid signature: invalid_client with the claim's reason, audited."""
    overrides: dict[str, Any] = {claim: Raw(number)}
    assertion = police.assertion(**overrides)
    response = await police.token_response(http, assertion=assertion)
    await assert_refused(
        response,
        ledger,
        code="invalid_client",
        reason=f"assertion_{claim}",
        agency_id="police-avon",
    )


async def test_assertion_iat_just_inside_60_seconds_ahead_is_accepted(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """The 60 s future skew is a bound, not a ban: 59 s ahead still passes."""
    assertion = police.assertion(iat=police.clock.ts + 59, exp=police.clock.ts + 120)
    response = await police.token_response(http, assertion=assertion)
    assert response.status_code == 200, response.text
    assert await ledger.issued() == 1


async def test_replayed_assertion_jti_is_refused_in_the_same_process(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """The same assertion twice (with fresh proofs): the second is refused, one token issued."""
    assertion = police.assertion()
    first = await police.token_response(http, assertion=assertion)
    assert first.status_code == 200
    second = await police.token_response(http, assertion=assertion)
    await assert_refused(
        second,
        ledger,
        code="invalid_client",
        reason="client_assertion_jti_replayed",
        agency_id="police-avon",
        issued=1,
        jtis=2,
    )


async def test_assertion_signed_with_another_agencys_key_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, gateway_state: Any
) -> None:
    """Probation's ES256 key signing an assertion in police's name (police's kid): refused."""
    from joserfc.jwk import ECKey

    from tests.gateway.oauth.conftest import register

    probation = await register(
        gateway_state.db,
        AgencyClient("probation-sw", ECKey.generate_key("P-256"), police.clock),
        agency_type="probation",
        role="responsible_authority",
        scopes=["case:read"],
    )
    forged = AgencyClient(police.client_id, probation.key, police.clock)
    assertion = forged.assertion(header={"kid": police.kid})
    response = await police.token_response(http, assertion=assertion)
    await assert_refused(response, ledger, code="invalid_client", agency_id="police-avon")


async def test_assertion_naming_another_agencys_kid_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, housing: AgencyClient, ledger: Ledger
) -> None:
    """Housing signing as police with its own kid: not one of police's keys."""
    forged = AgencyClient(police.client_id, housing.key, police.clock)
    response = await police.token_response(http, assertion=forged.assertion())
    await assert_refused(
        response, ledger, code="invalid_client", reason="key_unknown", agency_id="police-avon"
    )


@pytest.mark.parametrize(
    "alg",
    [
        "none",  # the classic
        "NONE",  # upper case
        "None",  # title case
        "nOnE",  # mixed case
    ],
)
async def test_unsigned_assertion_is_refused_in_any_casing(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, alg: str
) -> None:
    """alg none, however spelt, is refused before any key is looked at."""
    from tests.gateway.oauth.support import forge

    assertion = forge({"alg": alg, "kid": police.kid}, police.assertion_claims())
    response = await police.token_response(http, assertion=assertion)
    await assert_refused(response, ledger, code="invalid_client", reason="alg_refused")


@pytest.mark.parametrize(
    "secret_form",
    [
        "json",  # the public JWK as JSON text
        "pem",  # the public key as PEM
        "x",  # the raw x coordinate
    ],
)
async def test_hs256_keyed_with_the_public_key_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, secret_form: str
) -> None:
    """Algorithm confusion: HMAC keyed with the agency's own public key is refused."""
    import json

    from tests.gateway.oauth.support import forge

    public = police.key.as_dict(private=False)
    secret = {
        "json": json.dumps(public).encode(),
        "pem": police.key.as_pem(private=False),
        "x": str(public["x"]).encode(),
    }[secret_form]
    assertion = forge({"alg": "HS256", "kid": police.kid}, police.assertion_claims(), secret)
    response = await police.token_response(http, assertion=assertion)
    await assert_refused(response, ledger, code="invalid_client", reason="alg_refused")


@pytest.mark.parametrize(
    "alg",
    [
        "RS256",  # RSA PKCS#1 v1.5
        "PS256",  # RSA-PSS
        "ES384",  # another curve
        "ES256K",  # secp256k1
        "HS512",  # HMAC
        "Ed25519",  # the fully-specified name is not in our allow-list
    ],
)
async def test_assertion_with_alg_outside_the_allow_list_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, alg: str
) -> None:
    """Only ES256 and EdDSA are accepted; the header alone decides the refusal."""
    from tests.gateway.oauth.support import b64, forge

    assertion = forge({"alg": alg, "kid": police.kid}, police.assertion_claims())
    assertion += b64(b"x" * 64)
    response = await police.token_response(http, assertion=assertion)
    await assert_refused(response, ledger, code="invalid_client", reason="alg_refused")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        # a key URL to fetch: never followed
        ({"jku": "https://attacker.example/jwks.json"}, "header_jku_refused"),
        # an embedded key: never trusted
        ({"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}, "header_jwk_refused"),
        # a certificate URL
        ({"x5u": "https://attacker.example/cert.pem"}, "header_x5u_refused"),
        # a critical extension we do not know
        ({"crit": ["urn:example:ext"], "urn:example:ext": 1}, "header_crit_refused"),
        # a DPoP proof presented as an assertion
        ({"typ": "dpop+jwt"}, "assertion_typ"),
        # an access token presented as an assertion
        ({"typ": "at+jwt"}, "assertion_typ"),
        # a kid that looks like a path
        ({"kid": "../../etc/passwd"}, "kid_malformed"),
    ],
)
async def test_assertion_with_hostile_header_is_refused(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    header: dict[str, Any],
    reason: str,
) -> None:
    """Key-carrying, critical or mistyped headers are refused, nothing is fetched."""
    response = await police.token_response(http, assertion=police.assertion(header=header))
    await assert_refused(response, ledger, code="invalid_client", reason=reason)


async def test_unknown_client_is_refused_without_naming_an_agency(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """A well-formed assertion for an unregistered client id: refused, no agency recorded."""
    ghost = AgencyClient("ghost-agency", police.key, police.clock)
    response = await ghost.token_response(http)
    await assert_refused(response, ledger, code="invalid_client", reason="client_unknown")


async def test_suspended_agency_gets_no_token(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, gateway_state: Any
) -> None:
    """A suspended agency's correct assertion is refused."""
    from gateway.agencies import suspend_agency

    await suspend_agency(gateway_state.db, police.client_id)
    response = await police.token_response(http)
    await assert_refused(
        response, ledger, code="invalid_client", reason="agency_suspended", agency_id="police-avon"
    )


async def test_missing_assertion_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """client_credentials without a client assertion: invalid_client."""
    response = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": police.client_id},
        headers={"DPoP": police.proof()},
    )
    await assert_refused(response, ledger, code="invalid_client", reason="assertion_missing")


async def test_client_secret_is_not_an_authentication_method(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """client_secret_post and HTTP Basic are refused: private_key_jwt only."""
    response = await http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": police.client_id,
            "client_secret": "hunter2",
        },
        headers={"DPoP": police.proof(), "Authorization": "Basic cG9saWNlOmh1bnRlcjI="},
    )
    await assert_refused(response, ledger, code="invalid_client")


async def test_forged_client_cert_header_from_untrusted_address_is_ignored(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """An RFC 9440 Client-Cert header sent straight to the app authenticates nobody."""
    forged = ":MIIBszCCAVmgAwIBAgIUQ2xpZW50LWNlcnQtZm9yZ2VyeQ==:"
    response = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": police.client_id},
        headers={"DPoP": police.proof(), "Client-Cert": forged},
    )
    await assert_refused(response, ledger, code="invalid_client", reason="assertion_missing")


async def test_unsupported_grant_type_is_refused_and_audited(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """grant_type=password is not spoken here: 400 unsupported_grant_type, audited."""
    response = await police.token_response(http, grant_type="password")
    await assert_refused(
        response, ledger, code="unsupported_grant_type", status=400, agency_id="police-avon"
    )
    assert response.json()["error"] == "unsupported_grant_type"


async def test_scope_not_registered_for_the_agency_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """Asking for a scope the agency does not hold: 400 invalid_scope, nothing issued."""
    response = await police.token_response(http, scope="case:read console:admin")
    await assert_refused(
        response, ledger, code="invalid_scope", status=400, agency_id="police-avon"
    )


async def test_repeated_form_parameter_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """RFC 6749: a parameter sent twice is invalid_request."""
    body = "grant_type=client_credentials&grant_type=client_credentials"
    response = await http.post(
        "/oauth/token",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "DPoP": police.proof()},
    )
    await assert_refused(response, ledger, code="invalid_request", status=400)


async def test_json_token_request_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """The token endpoint takes a form, never JSON (and never answers 422)."""
    response = await http.post("/oauth/token", json=police.form(), headers={"DPoP": police.proof()})
    await assert_refused(response, ledger, code="invalid_request", status=400)


async def test_oversized_assertion_is_refused_before_parsing(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """A 12 KB assertion is refused by size (the form cap or the assertion cap)."""
    huge = police.assertion(padding="x" * 9000)
    response = await police.token_response(http, assertion=huge)
    assert response.status_code in (400, 401)
    assert await ledger.issued() == 0
    assert await ledger.jtis() == 0
    assert (await ledger.refusals())[-1].reason_code == "too_large"
