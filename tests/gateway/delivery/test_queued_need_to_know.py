"""A queued message is decided again for its recipient when it is pulled or pushed.

Minutes queued for a participant, a level change, a warning marker: sealed and queued while the
recipient may know of the nominal, then the case moves on (category 4, deregistration, a level
change, the meeting's review date). The inbox does not hand such a message over and the relay
does not push it (the stub partner receives nothing): it is dead-lettered as
``recipient_may_not_know``, audited with the refusing rule by ids alone, counted in the metric.
While the involvement stands, the same message is delivered. A warning marker's revocation
still reaches the housing provider (docs/policies.md), bare.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from gateway.delivery.endpoints import set_endpoint
from gateway.delivery.inbox import list_inbox
from gateway.delivery.relay import Relay
from gateway.http.metrics import GatewayMetrics
from gateway.store.models import Meeting, OutboxMessage
from tests.gateway.cases import conftest as cases
from tests.gateway.cases.scenario import (
    CONCLUSION_TEXT,
    DISCUSSION_TEXT,
    HOUSING,
    JCP,
    POLICE,
    THIRD_PARTY_TEXT,
    at_level_2,
    minutes,
)
from tests.gateway.cases.support import TODAY, World
from tests.gateway.cases.test_warning_markers import marker
from tests.gateway.delivery.stub import PartnerPKI, PartnerStub
from tests.gateway.delivery.support import fast_config

#: The cases' fixture: the gateway on SQLite with Barnet's agencies (no relay of its own).
world = cases.world
NOT_KNOWN = "recipient_may_not_know"
SECRETS = (CONCLUSION_TEXT, DISCUSSION_TEXT, THIRD_PARTY_TEXT)


async def _meeting(world: World, nominal_id: str, parts: dict[str, str], **more: str) -> str:
    """A level 2 meeting police chaired today, with these participants."""
    meeting = await world[POLICE].post(
        "/v1/meetings",
        {
            "nominal_id": nominal_id,
            "meeting_type": "level_2",
            "held_on": TODAY.isoformat(),
            "chair_officer": "DI-2231",
            "participants": [{"agency_id": a, "participation": p} for a, p in parts.items()],
            "confidentiality_statement_signed": True,
            **more,
        },
    )
    return str(meeting["id"])


async def _minutes_queued(world: World) -> tuple[str, str]:
    """A level 2 nominal, a meeting housing attended and Jobcentre Plus receives the minutes
    of (review date in a week), its minutes queued for JCP: the nominal and the message."""
    nominal_id = await at_level_2(world)
    week = (TODAY + dt.timedelta(days=7)).isoformat()
    meeting_id = await _meeting(
        world, nominal_id, {HOUSING: "attended", JCP: "minutes_only"}, review_date=week
    )
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    [row] = [r for r in await world.outbox(JCP) if r.kind == "minutes"]
    return nominal_id, row.id


async def _post(world: World, path: str, body: dict[str, Any]) -> None:
    await world[POLICE].post(path, body)


Change = Callable[[World, str], Awaitable[None]]


async def _category_4(world: World, nominal_id: str) -> None:
    await _post(world, f"/v1/nominals/{nominal_id}/category", {"category": "M4", "reason": "x"})


async def _deregistered(world: World, nominal_id: str) -> None:
    await _post(world, f"/v1/nominals/{nominal_id}/deregistration", {"reason": "x"})


async def _level_3(world: World, nominal_id: str) -> None:
    await _post(world, f"/v1/nominals/{nominal_id}/level", {"level": 3, "reason": "x"})


async def _review_date_passed(world: World, nominal_id: str) -> None:
    world.clock.advance(days=8)


async def _the_meeting(world: World, nominal_id: str) -> str:
    """The one meeting about the nominal (the one whose minutes are queued)."""
    async with world.state.db.read() as session:
        [meeting_id] = (
            await session.scalars(select(Meeting.id).where(Meeting.nominal_id == nominal_id))
        ).all()
    return str(meeting_id)


async def _closed(world: World, nominal_id: str) -> None:
    meeting_id = await _the_meeting(world, nominal_id)
    await _post(world, f"/v1/meetings/{meeting_id}/closure", {"reason": "need met"})


async def _removed(world: World, nominal_id: str) -> None:
    meeting_id = await _the_meeting(world, nominal_id)
    removal = {"participants": [{"agency_id": JCP, "participation": "removed"}]}
    await _post(world, f"/v1/meetings/{meeting_id}/participants", removal)


async def _closed_but_in_another(world: World, nominal_id: str) -> None:
    """The meeting's need closed while JCP still takes part in another about the nominal."""
    meeting_id = await _the_meeting(world, nominal_id)
    await _meeting(world, nominal_id, {JCP: "minutes_only"})
    await _post(world, f"/v1/meetings/{meeting_id}/closure", {"reason": "need met"})


async def _removed_but_in_another(world: World, nominal_id: str) -> None:
    """JCP taken off the meeting while it still takes part in another about the nominal."""
    meeting_id = await _the_meeting(world, nominal_id)
    await _meeting(world, nominal_id, {JCP: "minutes_only"})
    removal = {"participants": [{"agency_id": JCP, "participation": "removed"}]}
    await _post(world, f"/v1/meetings/{meeting_id}/participants", removal)


ENDED: list[tuple[Change, str]] = [
    # category 4: only police and probation of the nominal's area may know of it
    (_category_4, "category-4-named-agencies"),
    # deregistration ends every meeting's involvement: no rule grants
    (_deregistered, "default-deny"),
    # a level change after the meeting ends what the meeting granted
    (_level_3, "default-deny"),
    # the meeting's review date passed (to the end of that day, London time)
    (_review_date_passed, "default-deny"),
    # the chair closed the meeting's need, or took JCP off it
    (_closed, "default-deny"),
    (_removed, "default-deny"),
    # ... while JCP takes part in another meeting about the nominal: that one grants its own
    # minutes, not these
    (_closed_but_in_another, "default-deny"),
    (_removed_but_in_another, "default-deny"),
]


async def _pull(world: World, agency_id: str) -> Any:
    """The agency's inbox as it pulls it now (the gateway's clock), in a write transaction."""
    async with world.state.db.write() as session:
        return await list_inbox(session, agency_id, limit=50, now=world.clock.now)


async def _row(world: World, message_id: str) -> OutboxMessage:
    [row] = [r for r in await world.outbox() if r.id == message_id]
    return row


async def _refusals(world: World) -> list[Any]:
    return await world.audit(reason_code=NOT_KNOWN)


def _holds_no_content(world_entries: list[Any], logs: Sequence[Mapping[str, Any]]) -> None:
    text = json.dumps([e.detail for e in world_entries]) + json.dumps(logs, default=str)
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize(("change", "rule"), ENDED, ids=[c.__name__ for c, _ in ENDED])
async def test_queued_minutes_are_not_pulled_once_the_involvement_ended(
    world: World, change: Change, rule: str
) -> None:
    nominal_id, message_id = await _minutes_queued(world)
    await change(world, nominal_id)
    with capture_logs() as logs:
        page = await _pull(world, JCP)
    assert [i.id for i in page.items if i.kind == "minutes"] == []
    assert "minutes" in page.refused_kinds
    row = await _row(world, message_id)
    assert (row.status, row.last_error_code) == ("dead", NOT_KNOWN)
    [entry] = [e for e in await _refusals(world) if e.record_refs == [message_id]]
    assert entry.outcome == "refused" and entry.operation == "disclosure"
    assert entry.rule == rule and entry.recipients == [JCP] and entry.nominal_ref == nominal_id
    assert entry.detail["kind"] == "minutes" and entry.detail["delivery"] == "pull"
    assert entry.payload_digest is None
    _holds_no_content(await world.audit(), logs)
    assert any(log.get("code") == NOT_KNOWN for log in logs)
    again = await _pull(world, JCP)  # dead: never listed again, nor decided again
    assert message_id not in [i.id for i in again.items] and again.refused_kinds == ()


async def test_queued_minutes_are_pulled_while_the_involvement_stands(world: World) -> None:
    _, message_id = await _minutes_queued(world)
    world.clock.advance(days=7)  # the review date itself: still to the end of that day
    page = await _pull(world, JCP)
    assert message_id in [i.id for i in page.items] and page.refused_kinds == ()
    assert (await _row(world, message_id)).status == "pending"
    assert await _refusals(world) == []


async def test_removed_from_one_meeting_the_minutes_of_the_other_are_still_pulled(
    world: World,
) -> None:
    """JCP takes part in meetings A and B about one nominal, the minutes of both queued for it;
    taken off A, it is refused A's minutes, and still has B's."""
    nominal_id, of_a = await _minutes_queued(world)
    meeting_a = await _the_meeting(world, nominal_id)
    meeting_b = await _meeting(world, nominal_id, {JCP: "minutes_only"})
    await world[POLICE].post(f"/v1/meetings/{meeting_b}/minutes", minutes())
    [of_b] = [r.id for r in await world.outbox(JCP) if r.kind == "minutes" and r.id != of_a]
    removal = {"participants": [{"agency_id": JCP, "participation": "removed"}]}
    await _post(world, f"/v1/meetings/{meeting_a}/participants", removal)
    page = await _pull(world, JCP)
    assert [i.id for i in page.items if i.kind == "minutes"] == [of_b]
    assert (await _row(world, of_a)).status == "dead"
    assert (await _row(world, of_b)).status == "pending"
    [entry] = await _refusals(world)
    assert entry.record_refs == [of_a]


async def test_a_row_queued_before_it_named_its_meeting_is_decided_on_any_meeting(
    world: World,
) -> None:
    """A row with no ``subject_ref`` (queued before the outbox kept it) goes while the
    recipient takes part in any meeting about the nominal, as it did then."""
    nominal_id, message_id = await _minutes_queued(world)
    async with world.state.db.write() as session:
        row = await session.get(OutboxMessage, message_id)
        assert row is not None and row.subject_ref == await _the_meeting(world, nominal_id)
        row.subject_ref = None
    await _removed_but_in_another(world, nominal_id)
    page = await _pull(world, JCP)
    assert message_id in [i.id for i in page.items]


async def test_the_inbox_over_http_no_longer_hands_over_minutes_of_a_category_4_nominal(
    world: World,
) -> None:
    """The review's case: after category 4 and deregistration, GET of the minutes is 404 and
    the inbox lists nothing of them (it listed the full minutes)."""
    puller = await world.register(
        "barnet-jcp-2",
        "jobcentre_plus",
        "duty_to_cooperate",
        scopes=["case:read", "case:write", "inbox:read"],
    )
    nominal_id = await at_level_2(world)
    meeting_id = await _meeting(world, nominal_id, {puller.id: "minutes_only"})
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    await _category_4(world, nominal_id)
    await _deregistered(world, nominal_id)
    refused = await puller.refused("GET", f"/v1/meetings/{meeting_id}/minutes")
    assert refused.status == 404
    metrics = world.state.metrics
    assert metrics is not None
    counted = metrics.outbox_dead_letters.labels("minutes", NOT_KNOWN)
    before = counted._value.get()
    answer = await puller.raw("GET", "/v1/inbox")
    assert answer.status_code == 200
    assert [m["kind"] for m in answer.json()["messages"]] == []
    [entry] = await _refusals(world)
    assert entry.rule == "category-4-named-agencies" and entry.recipients == [puller.id]
    # counted as the relay counts what it dead-letters
    assert counted._value.get() == before + 1


async def test_a_level_change_still_reaches_the_participants_it_was_sealed_for(
    world: World,
) -> None:
    """A level change is sent to who could see the nominal at the old level: the level change
    it announces does not refuse it; a deregistration after it does."""
    nominal_id, _ = await _minutes_queued(world)
    await _level_3(world, nominal_id)
    [told] = [r for r in await world.outbox(JCP) if r.kind == "level_change"]
    page = await _pull(world, JCP)
    assert told.id in [i.id for i in page.items]
    second = await at_level_2(world)
    await _meeting(world, second, {JCP: "minutes_only"})
    await _level_3(world, second)
    await _deregistered(world, second)
    late, *_ = [  # the level change's message (the oldest: deregistration may tell too)
        r for r in await world.outbox(JCP) if r.kind == "level_change" and r.nominal_ref == second
    ]
    page = await _pull(world, JCP)
    assert late.id not in [i.id for i in page.items]
    [entry] = [e for e in await _refusals(world) if e.record_refs == [late.id]]
    assert entry.rule == "default-deny" and entry.detail["kind"] == "level_change"


# -- the relay --------------------------------------------------------------------------------


async def _relay_once(world: World, stub: PartnerStub, pki: PartnerPKI, *agencies: str) -> Relay:
    for agency_id in agencies:
        await set_endpoint(
            world.state.db, agency_id, url=stub.url, ca_pem=pki.ca_pem, development=True
        )
    metrics = GatewayMetrics()
    relay = Relay(world.state.db, fast_config(), metrics=metrics, clock=world.clock)
    for _ in range(3):
        await relay.sweep()
        await relay.drain(2.0)
        await asyncio.sleep(0.05)
    await relay.stop()
    return relay


def _dead_letters(relay: Relay, kind: str) -> float:
    assert relay.metrics is not None
    counter = relay.metrics.outbox_dead_letters.labels(kind, NOT_KNOWN)
    return float(counter._value.get())


@pytest.mark.parametrize(("change", "rule"), ENDED, ids=[c.__name__ for c, _ in ENDED])
async def test_the_relay_does_not_push_what_the_recipient_may_no_longer_have(
    world: World, stub: PartnerStub, pki: PartnerPKI, change: Change, rule: str
) -> None:
    nominal_id, message_id = await _minutes_queued(world)
    await change(world, nominal_id)
    with capture_logs() as logs:
        relay = await _relay_once(world, stub, pki, JCP)
    assert all(r.idempotency_key != message_id for r in stub.requests)
    row = await _row(world, message_id)
    assert (row.status, row.last_error_code, row.attempts) == ("dead", NOT_KNOWN, 0)
    [entry] = [e for e in await _refusals(world) if e.record_refs == [message_id]]
    assert entry.rule == rule and entry.detail["delivery"] == "push"
    # each counted once; with the review date 8 days past, the minutes queued for the other
    # participants, which no push or pull took, are refused too by the relay's expiry sweep
    refused = [e for e in await _refusals(world) if e.detail["kind"] == "minutes"]
    assert _dead_letters(relay, "minutes") == len(refused)
    assert {e.detail["delivery"] for e in refused if e.record_refs != [message_id]} <= {"sweep"}
    _holds_no_content(await world.audit(), logs)


async def test_the_relay_pushes_while_the_involvement_stands(
    world: World, stub: PartnerStub, pki: PartnerPKI
) -> None:
    _, message_id = await _minutes_queued(world)
    relay = await _relay_once(world, stub, pki, JCP)
    assert message_id in stub.accepted
    assert (await _row(world, message_id)).status == "delivered"
    assert _dead_letters(relay, "minutes") == 0 and await _refusals(world) == []


async def test_a_queued_marker_is_not_pushed_but_its_revocation_is(
    world: World, stub: PartnerStub, pki: PartnerPKI
) -> None:
    """Housing may no longer know of the nominal (category 4): the marker still queued for it
    is not pushed; the bare revocation is, so no stale marker stays on the property."""
    nominal_id, _ = await _minutes_queued(world)
    raised = await world[POLICE].post("/v1/warning-markers", marker(nominal_id))
    await _category_4(world, nominal_id)
    await world[POLICE].post(
        f"/v1/warning-markers/{raised['id']}/revocation", {"reason": "deregistered"}
    )
    rows = {r.kind: r.id for r in await world.outbox(HOUSING)}
    await _relay_once(world, stub, pki, HOUSING)
    assert rows["warning_marker_revocation"] in stub.accepted
    assert rows["warning_marker"] not in stub.accepted
    [entry] = [e for e in await _refusals(world) if e.record_refs == [rows["warning_marker"]]]
    assert entry.rule == "category-4-named-agencies"
