"""Headers sent twice and ids that disagree: a request that says two things is refused, whatever
the first copy says, and the refusal is audited with its precise reason (nothing issued, no
proof spent)."""

from __future__ import annotations

import httpx

from tests.gateway.oauth.support import (
    CONTEXT,
    WHOAMI_URL,
    AgencyClient,
    Ledger,
    assert_refused,
)


async def test_two_dpop_headers_at_the_token_endpoint_are_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """Two proofs, each valid on its own: which one would be bound? Neither: 400, audited for
    police (its assertion verified), and its assertion's jti not spent."""
    headers = [("DPoP", police.proof()), ("DPoP", police.proof())]
    response = await http.post("/oauth/token", data=police.form(), headers=headers)
    await assert_refused(
        response,
        ledger,
        code="invalid_dpop_proof",
        reason="dpop_repeated",
        status=400,
        agency_id=police.client_id,
    )


async def test_two_authorization_headers_are_refused(
    http: httpx.AsyncClient, police: AgencyClient, housing: AgencyClient, ledger: Ledger
) -> None:
    """Police's token first, housing's second (or the other way): 401, never either agency."""
    police_token, housing_token = await police.token(http), await housing.token(http)
    issued, jtis = await ledger.issued(), await ledger.jtis()
    sent = police.resource_headers(police_token)
    headers = [(k, v) for k, v in sent.items()] + [("Authorization", f"DPoP {housing_token}")]
    response = await http.get(WHOAMI_URL, headers=headers)
    await assert_refused(
        response,
        ledger,
        code="invalid_token",
        reason="authorization_repeated",
        issued=issued,
        jtis=jtis,
    )


async def test_two_proofs_on_a_call_are_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    token = await police.token(http)
    issued, jtis = await ledger.issued(), await ledger.jtis()
    sent = police.resource_headers(token)
    extra = ("DPoP", police.proof("GET", WHOAMI_URL, token=token))
    response = await http.get(WHOAMI_URL, headers=[*sent.items(), extra])
    entry = await assert_refused(
        response, ledger, code="invalid_token", issued=issued, jtis=jtis, agency_id=None
    )
    assert entry.reason_code == "dpop_repeated"


async def test_a_context_header_sent_twice_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """Two legal bases: the call is refused before anything is read, audited for police."""
    token = await police.token(http)
    issued, jtis = await ledger.issued(), await ledger.jtis()
    sent = police.resource_headers(token)
    basis = next(name for name in CONTEXT if name.lower() == "mappa-legal-basis")
    response = await http.get(WHOAMI_URL, headers=[*sent.items(), (basis, "DPA2018-s35-sch8")])
    entry = await assert_refused(
        response,
        ledger,
        code="invalid_context",
        reason="mappa-legal-basis_repeated",
        status=400,
        agency_id=police.client_id,
        issued=issued,
        jtis=jtis,
    )
    assert entry.legal_basis is None


async def test_a_client_id_other_than_the_assertions_issuer_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, housing: AgencyClient, ledger: Ledger
) -> None:
    """Police's valid assertion with ``client_id`` naming housing: invalid_client, no token for
    either."""
    response = await police.token_response(http, client_id=housing.client_id)
    await assert_refused(
        response,
        ledger,
        code="invalid_client",
        reason="client_id_mismatch",
        agency_id=None,
        challenge="",
    )
