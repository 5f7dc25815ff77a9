"""An agency registered with a ``jwks_uri``: the token endpoint fetches its signing keys from
there, but the seal stage reads an agency's keys from the store only (``agency_keys``), where
such an agency has none. It gets tokens; its sealed calls cannot work: a write's body cannot be
verified and an answer cannot be sealed to it. docs/authentication.md and docs/partners.md say
so, and onboarding warns."""

from __future__ import annotations

import httpx

from adapters.client import ContextHeaders, GatewayClient
from adapters.identity import AgencyIdentity
from gateway import agencies
from gateway.oauth.jwks import JwksFetcher
from tests.gateway.cases.scenario import referral
from tests.gateway.cases.support import AREA, ISSUER, MAPPA_BASIS, READ_WRITE, Agent, World

JWKS_URI = "https://police.example/jwks.json"


async def test_an_agency_keyed_at_a_jwks_uri_gets_tokens_but_no_sealed_call(world: World) -> None:
    identity = AgencyIdentity.generate("barnet-police-hq")
    published = identity.public_jwks()  # its signing and its encryption key
    world.state.jwks_fetcher = JwksFetcher(
        max_bytes=65_536,
        cache_seconds=300,
        timeout=2.0,
        transport=httpx.MockTransport(lambda _request: httpx.Response(200, json=published)),
    )
    view = await agencies.add_agency(
        world.state.db,
        agency_id="barnet-police-hq",
        name="Barnet police HQ",
        agency_type="police",
        role="responsible_authority",
        area=AREA,
        scopes=READ_WRITE,
        jwks_uri=JWKS_URI,
        now=world.clock.now,
    )
    assert view.keys == ()  # nothing in agency_keys: the keys live at the jwks_uri
    agent = Agent(
        "barnet-police-hq",
        "police",
        "responsible_authority",
        AREA,
        identity,
        GatewayClient(identity, ISSUER, world.http, clock=world.clock),
        ContextHeaders(MAPPA_BASIS[0], MAPPA_BASIS[1], "OFF-1"),
    )

    whoami = await agent.raw("GET", "/v1/whoami")
    assert whoami.status_code == 200, whoami.text  # authenticated by the fetched key

    read = await agent.refused("GET", "/v1/level-1-list")
    assert (read.status, read.code) == (503, "recipient_key_unavailable")

    write = await agent.refused("POST", "/v1/referrals", referral(), key="k-jwks-uri-1")
    assert (write.status, write.code) == (400, "unreadable_body")
    [entry] = await world.audit(agency_id="barnet-police-hq", outcome="refused")
    assert entry.detail["reason"] == "sender has no usable signing key"
