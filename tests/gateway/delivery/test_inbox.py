"""Pull delivery: ``GET /v1/inbox`` and ``POST /v1/inbox/{id}/ack``, end to end over the API."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from adapters.client import ContextHeaders, GatewayClient, GatewayResponseError
from adapters.identity import AgencyIdentity
from gateway.agencies import add_agency, rotate_agency_keys
from gateway.delivery import enqueue
from gateway.delivery.outbox import KEY_RETIRED
from gateway.flow.seal import agency_public_jwks
from gateway.state import GatewayState
from gateway.store.models import Agency, AuditEntry, OutboxMessage

ISSUER = "https://gateway.test"
CONTEXT = ContextHeaders("CJA2003-s325-4", "risk-management", "SW-1042")


@pytest.fixture
def state(app: FastAPI) -> GatewayState:
    gateway: GatewayState = app.state.gateway
    return gateway


async def _agency(
    state: GatewayState, http: httpx.AsyncClient, agency_id: str, scopes: list[str]
) -> GatewayClient:
    identity = AgencyIdentity.generate(agency_id)
    await add_agency(
        state.db,
        agency_id=agency_id,
        name=agency_id,
        agency_type="childrens_services",
        role="duty_to_cooperate",
        area="barnet",
        scopes=scopes,
        jwks=identity.public_jwks(),
    )
    return GatewayClient(identity, ISSUER, http)


@pytest.fixture
async def cs(state: GatewayState, client: httpx.AsyncClient) -> AsyncIterator[GatewayClient]:
    yield await _agency(state, client, "barnet-cs", ["inbox:read"])


@pytest.fixture
async def housing(state: GatewayState, client: httpx.AsyncClient) -> AsyncIterator[GatewayClient]:
    yield await _agency(state, client, "barnet-housing", ["inbox:read"])


async def _send(
    state: GatewayState, to: str, body: dict[str, Any], kind: str = "hazard_flag"
) -> str:
    """What the case API does: seal for the recipient, enqueue in the same transaction."""
    assert state.sealer is not None
    now = state.clock()
    async with state.db.write() as session:
        recipient = await session.get(Agency, to)
        assert recipient is not None
        keys = await agency_public_jwks(session, to, "enc", now)
        jwe, _ = state.sealer.seal(body, recipient=recipient, recipient_keys=keys, now=now)
        return await enqueue(session, recipient_agency_id=to, kind=kind, body=jwe)


async def _pull(agency: GatewayClient, **params: str) -> dict[str, Any]:
    response = await agency.call("GET", "/v1/inbox", CONTEXT, params=params)
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_agency_pulls_its_sealed_messages_and_acknowledges_them(
    state: GatewayState, cs: GatewayClient, housing: GatewayClient
) -> None:
    """Only the caller's messages, sealed to it, oldest first; an ack removes one for good."""
    first = await _send(state, "barnet-cs", {"flag": "HZD", "n": 1})
    second = await _send(state, "barnet-cs", {"flag": "HZD", "n": 2})
    await _send(state, "barnet-housing", {"marker": "property"}, kind="record")
    page = await _pull(cs)
    assert [m["id"] for m in page["messages"]] == [first, second]
    assert page["next_cursor"] is None
    signed, _ = await cs.open(page["messages"][0]["body"])
    assert signed.body == {"flag": "HZD", "n": 1}
    ack = await cs.call("POST", f"/v1/inbox/{first}/ack", CONTEXT)
    assert isinstance(ack, httpx.Response) and ack.json() == {"id": first, "status": "delivered"}
    again = await cs.call("POST", f"/v1/inbox/{first}/ack", CONTEXT)  # idempotent
    assert isinstance(again, httpx.Response) and again.status_code == 200
    assert [m["id"] for m in (await _pull(cs))["messages"]] == [second]
    async with state.db.read() as session:
        row = await session.get(OutboxMessage, first)
        assert row is not None and row.status == "delivered"


async def test_acknowledging_another_agencys_message_is_404_and_audited(
    state: GatewayState, cs: GatewayClient, housing: GatewayClient
) -> None:
    """Another agency's message id answers exactly like one that does not exist."""
    theirs = await _send(state, "barnet-cs", {"flag": "HZD"})
    with pytest.raises(GatewayResponseError) as caught:
        await housing.call("POST", f"/v1/inbox/{theirs}/ack", CONTEXT)
    with pytest.raises(GatewayResponseError) as unknown:
        await housing.call("POST", "/v1/inbox/00000000-0000-4000-8000-000000000000/ack", CONTEXT)
    assert caught.value.status == unknown.value.status == 404
    assert caught.value.code == unknown.value.code == "not_found"
    async with state.db.read() as session:
        row = await session.get(OutboxMessage, theirs)
        assert row is not None and row.status == "pending"
        refused = (
            await session.scalars(
                select(AuditEntry).where(
                    AuditEntry.agency_id == "barnet-housing", AuditEntry.outcome == "refused"
                )
            )
        ).all()
    assert theirs in [ref for entry in refused for ref in entry.record_refs]


async def test_inbox_pages_with_a_cursor(state: GatewayState, cs: GatewayClient) -> None:
    """limit and cursor walk the inbox without gaps or repeats."""
    ids = [await _send(state, "barnet-cs", {"n": i}) for i in range(5)]
    seen: list[str] = []
    params: dict[str, str] = {"limit": "2"}
    while True:
        page = await _pull(cs, **params)
        seen += [m["id"] for m in page["messages"]]
        if page["next_cursor"] is None:
            break
        params = {"limit": "2", "cursor": page["next_cursor"]}
    assert seen == ids


async def test_inbox_pull_is_audited_as_a_disclosure(
    state: GatewayState, cs: GatewayClient
) -> None:
    """Each pull records which message ids were handed over."""
    mid = await _send(state, "barnet-cs", {"flag": "HZD"})
    await _pull(cs)
    async with state.db.read() as session:
        entries = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.reason_code == "inbox_pulled")
            )
        ).all()
    assert [e.record_refs for e in entries] == [[mid]]


async def test_inbox_needs_the_inbox_scope(state: GatewayState, client: httpx.AsyncClient) -> None:
    """An agency without ``inbox:read`` is refused 403."""
    other = await _agency(state, client, "barnet-jcp", ["case:read"])
    with pytest.raises(GatewayResponseError) as caught:
        await other.call("GET", "/v1/inbox", CONTEXT)
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("basis", "purpose", "rule"),
    [
        # a code the register does not hold
        ("NO-SUCH-BASIS", "risk-management", "lawful-basis-registered"),
        # a registered basis, but a purpose it does not allow
        ("CJA2003-s325-4", "public-disclosure", "purpose-allowed-for-basis"),
        # a basis open to the Responsible Authority only, from a duty-to-co-operate agency
        ("CJA2003-s327A", "public-disclosure", "role-allowed-for-basis"),
    ],
)
async def test_the_inbox_is_refused_without_a_fitting_legal_basis(
    state: GatewayState, cs: GatewayClient, basis: str, purpose: str, rule: str
) -> None:
    """The inbox hands over sealed case data, so a pull or an acknowledgement under a basis or
    purpose that does not fit the caller is refused 403 as any case call is, audited with the
    rule that refused, and nothing is handed over or marked delivered."""
    mid = await _send(state, "barnet-cs", {"flag": "HZD"})
    context = ContextHeaders(basis, purpose, "SW-1042")
    for method, path in (("GET", "/v1/inbox"), ("POST", f"/v1/inbox/{mid}/ack")):
        with pytest.raises(GatewayResponseError) as caught:
            await cs.call(method, path, context)
        assert caught.value.status == 403, path
        assert caught.value.code == "lawful_basis_refused", path
    async with state.db.read() as session:
        row = await session.get(OutboxMessage, mid)
        assert row is not None and row.status == "pending"
        mine = (
            await session.scalars(select(AuditEntry).where(AuditEntry.agency_id == "barnet-cs"))
        ).all()
    entries = [e for e in mine if (e.detail or {}).get("resource") == "inbox"]
    assert [(e.outcome, e.rule, e.legal_basis) for e in entries] == [("refused", rule, basis)] * 2
    assert not any(e.record_refs for e in entries)


@pytest.mark.parametrize("cursor", ["not-a-cursor", "eyJ4IjoxfQ"])
async def test_bad_cursor_is_400(cs: GatewayClient, cursor: str) -> None:
    """A cursor the API did not give is refused, not interpreted."""
    with pytest.raises(GatewayResponseError) as caught:
        await cs.call("GET", "/v1/inbox", CONTEXT, params={"cursor": cursor})
    assert caught.value.status == 400


async def test_a_pull_counts_what_it_dead_lettered_for_a_retired_key(
    state: GatewayState, cs: GatewayClient
) -> None:
    """A message sealed to a key the agency has since retired is not listed; the pull that
    dead-letters it counts it in the dead-letter metric, as the relay does."""
    stale = await _send(state, "barnet-cs", {"flag": "HZD", "n": 1})
    fresh = AgencyIdentity.generate("barnet-cs").encryption_key.as_dict(private=False)
    signing = cs.identity.signing_key.as_dict(private=False)
    await rotate_agency_keys(state.db, "barnet-cs", {"keys": [signing, fresh]}, dt.timedelta(0))
    assert state.metrics is not None
    sample = {"kind": "hazard_flag", "code": KEY_RETIRED}
    counter = "mappa_gateway_outbox_dead_letters_total"
    before = state.metrics.registry.get_sample_value(counter, sample) or 0.0
    assert (await _pull(cs))["messages"] == []
    assert state.metrics.registry.get_sample_value(counter, sample) == before + 1
    async with state.db.read() as session:
        row = await session.get(OutboxMessage, stale)
        assert row is not None and (row.status, row.last_error_code) == ("dead", KEY_RETIRED)
