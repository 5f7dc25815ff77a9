"""DPoP at the token endpoint (RFC 9449 section 5): a bad proof is an RFC 6749 section 5.2 error.

The authorization server answers 400 with ``error`` = ``invalid_dpop_proof`` (a 401 is for the
protected resources, with a ``WWW-Authenticate: DPoP`` challenge); no token is issued and the
refusal is audited with its precise reason.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey

from tests.gateway.oauth.support import (
    DROP,
    ISSUER,
    TOKEN_URL,
    AgencyClient,
    Ledger,
    Raw,
    assert_refused,
    forge,
)

#: The agency the refusals are recorded against (the assertion named it).
AGENCY = "police-avon"


@pytest.mark.parametrize(
    ("proof", "reason"),
    [
        # no proof at all
        ("missing", "dpop_missing"),
        # for another method
        ({"htm": "GET"}, "dpop_htm"),
        # for another URL
        ({"htu": ISSUER + "/v1/whoami"}, "dpop_htu"),
        # too old, too far ahead
        ({"iat": -120}, "dpop_iat_stale"),
        ({"iat": 120}, "dpop_iat_future"),
        # no jti
        ({"jti": DROP}, "dpop_jti"),
        # wrong typ; a private key in the header; HS256
        ({"header": {"typ": "JWT"}}, "dpop_typ"),
        ({"header": "private"}, "dpop_jwk_refused"),
        ({"header": {"alg": "HS256"}}, "alg_refused"),
        ({"header": {"alg": "none"}}, "alg_refused"),
    ],
)
async def test_a_bad_proof_at_the_token_endpoint_is_400_invalid_dpop_proof(
    http: httpx.AsyncClient,
    police: AgencyClient,
    ledger: Ledger,
    proof: str | dict[str, Any],
    reason: str,
) -> None:
    if proof == "missing":
        response = await police.token_response(http, proof=DROP)
    else:
        assert isinstance(proof, dict)
        claims = dict(proof)
        if "iat" in claims:
            claims["iat"] = police.clock.ts + claims["iat"]
        header = claims.pop("header", None)
        if header == "private":
            header = {"jwk": police.dpop_key.as_dict(private=True)}
        if header and header.get("alg") in {"HS256", "none"}:
            # the public JWK as an HMAC secret (algorithm confusion), or no signature at all
            public = police.dpop_key.as_dict(private=False)
            head = {"typ": "dpop+jwt", "jwk": public, **header}
            body = {"jti": "j-1", "htm": "POST", "htu": TOKEN_URL, "iat": police.clock.ts}
            secret = json.dumps(public).encode() if header["alg"] == "HS256" else None
            sent = forge(head, body, secret)
        else:
            sent = police.proof(header=header, **claims)
        response = await police.token_response(http, proof=sent)
    entry = await assert_refused(
        response,
        ledger,
        code="invalid_dpop_proof",
        reason=reason,
        status=400,
        agency_id=AGENCY,
    )
    assert response.json()["error"] == "invalid_dpop_proof"
    assert "www-authenticate" not in response.headers
    assert entry.detail["stage"] == "token"


@pytest.mark.parametrize("iat", ["1e400", "-1e400", "1" + "0" * 400, "1e308"])
async def test_a_proof_whose_iat_is_no_usable_numeric_date_is_400_and_audited(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, iat: str
) -> None:
    """``iat`` 1e400 (infinity to the JSON parser: a 500 before) or out of range, in a proof
    signed by the agency's own DPoP key: refused like a missing ``iat``, audited, no token."""
    response = await police.token_response(http, proof=police.proof(iat=Raw(iat)))
    entry = await assert_refused(
        response,
        ledger,
        code="invalid_dpop_proof",
        reason="dpop_iat_missing",
        status=400,
        agency_id=AGENCY,
    )
    assert response.json()["error"] == "invalid_dpop_proof"
    assert entry.detail["stage"] == "token"


async def test_a_replayed_proof_at_the_token_endpoint_is_400_and_issues_nothing(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    proof = police.proof()
    first = await police.token_response(http, proof=proof)
    assert first.status_code == 200, first.text
    again = await police.token_response(http, proof=proof)
    assert again.status_code == 400, again.text
    assert again.json()["error"] == "invalid_dpop_proof"
    assert await ledger.issued() == 1
    refusals = await ledger.refusals()
    assert refusals[-1].reason_code == "dpop_jti_replayed"


async def test_a_proof_signed_by_another_key_than_its_header_names_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    other = ECKey.generate_key("P-256", private=True)
    forged = police.proof(header={"jwk": police.dpop_key.as_dict(private=False)}, key=other)
    response = await police.token_response(http, proof=forged)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_dpop_proof"
    assert await ledger.issued() == 0
    assert (await ledger.refusals())[-1].reason_code == "bad_signature"


@pytest.mark.parametrize("alg", [["ES256"], {"alg": "ES256"}, 256])
async def test_a_proof_whose_jwk_alg_is_not_a_string_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, alg: Any
) -> None:
    """A list or object as the header jwk's alg was a TypeError (unhashable) in the key check:
    a 500 with nothing audited, at the token endpoint and at every protected resource."""
    jwk = {**police.dpop_key.as_dict(private=False), "alg": alg}
    response = await police.token_response(http, proof=police.proof(header={"jwk": jwk}))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_dpop_proof"
    assert await ledger.issued() == 0
    assert (await ledger.refusals())[-1].agency_id == AGENCY
