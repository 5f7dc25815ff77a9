"""The token endpoint and a protected call, done right."""

from __future__ import annotations

import httpx

from tests.gateway.oauth.support import AgencyClient, Ledger


async def test_agency_gets_dpop_bound_token_and_calls_whoami(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger
) -> None:
    """A correct assertion and proof get an at+jwt that works on /v1/whoami."""
    response = await police.token_response(http)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert body["expires_in"] <= 300
    whoami = await http.get("/v1/whoami", headers=police.resource_headers(body["access_token"]))
    assert whoami.status_code == 200, whoami.text
    assert whoami.json()["agency_id"] == "police-avon"
    assert await ledger.issued() == 1
