"""Writes with different Idempotency-Keys that race for one row: one stands, the other is an
audited 409 whose DPoP proof is spent, and nothing of it is stored (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from adapters.client import GatewayClient
from gateway.cases import meetings
from gateway.store.models import Action, IdempotentRequest, Meeting, MeetingAgency, Minutes
from tests.gateway.cases.scenario import (
    JCP,
    POLICE,
    VICTIM_SUPPORT,
    at_level_2,
    level_2_meeting,
    minutes,
)
from tests.gateway.cases.support import ISSUER, Agent, World, new_key, open_world


def _after_both(
    monkeypatch: pytest.MonkeyPatch, name: str, parties: int = 2
) -> Callable[..., Awaitable[Any]]:
    """Patch ``meetings.<name>`` (a step of a route's read) so that each of ``parties`` calls
    waits there for the others: every racer has passed the route's checks before any writes."""
    real = getattr(meetings, name)
    barrier = asyncio.Barrier(parties)

    async def both_read(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        async with asyncio.timeout(10):
            await barrier.wait()
        return result

    monkeypatch.setattr(meetings, name, both_read)
    return both_read


Prepared = tuple[str, dict[str, str]]


async def _prepared(agent: Agent, path: str, body: dict[str, Any]) -> Prepared:
    """A sealed write with its own key and proof, kept so that it can be sent again as is."""
    sealed = await agent.client.seal(body)
    headers = await agent.headers("POST", path)
    headers["Content-Type"] = "application/jose"
    headers["Idempotency-Key"] = new_key()
    return sealed, headers


async def _send(agent: Agent, path: str, request: Prepared) -> httpx.Response:
    content, headers = request
    return await agent.client.http.post(ISSUER + path, content=content, headers=headers)


async def _keys_of(world: World, requests: list[Prepared]) -> set[str]:
    async with world.state.db.read() as session:
        kept = await session.scalars(select(IdempotentRequest.key))
        return {headers["Idempotency-Key"] for _, headers in requests} & set(kept.all())


async def _refused_as_conflict(world: World, response: httpx.Response, reason: str) -> None:
    """The 409 problem, its refusal audited (with the reason), its proof spent."""
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "conflict"
    [refusal] = await world.audit(request_id=response.headers["x-request-id"])
    assert (refusal.outcome, refusal.reason_code) == ("refused", "conflict")
    assert refusal.detail["reason"] == reason


async def test_minutes_posted_twice_at_once_give_one_201_and_one_audited_409(
    any_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sets of minutes for one meeting, different keys, both past the "no minutes yet"
    check before either writes: one is stored and circulated; the other is a 409 (audited,
    not an unaudited 500), stores nothing, and its proof sent again is refused (401)."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    police = world[POLICE]
    path = f"/v1/meetings/{meeting_id}/minutes"
    requests = [await _prepared(police, path, minutes()) for _ in range(2)]
    _after_both(monkeypatch, "_participant_pushes")

    responses = await asyncio.gather(*(_send(police, path, r) for r in requests))

    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    lost = [r.status_code for r in responses].index(409)
    await _refused_as_conflict(world, responses[lost], "minutes_exist")
    assert await world.count(Minutes) == 1
    pushed = [m.recipient_agency_id for m in await world.outbox() if m.kind == "minutes"]
    assert pushed and len(pushed) == len(set(pushed)), "one set of minutes, pushed once each"
    assert await _keys_of(world, requests) == {requests[1 - lost][1]["Idempotency-Key"]}

    again = await _send(police, path, requests[lost])
    assert again.status_code == 401, again.text
    assert again.json()["code"] == "invalid_dpop_proof"
    assert await world.count(Minutes) == 1


async def test_a_write_that_collides_on_a_stored_row_is_an_audited_409(
    any_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any write the store refuses for a unique row another write holds (here an action point
    given the id of one already stored) is an audited 409 ``conflict``, never a 500: nothing of
    it stands, its key is not kept, and its proof is spent (sent again: 401)."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    police = world[POLICE]
    path = f"/v1/meetings/{meeting_id}/actions"
    action = {
        "owner_agency_id": JCP,
        "description": "Review benefit claim address",
        "due_date": "2030-01-01",
    }
    taken = (await police.post(path, action))["id"]
    monkeypatch.setattr(meetings, "new_id", lambda: taken)
    request = await _prepared(police, path, action)

    response = await _send(police, path, request)

    await _refused_as_conflict(world, response, "concurrent_write")
    assert await world.count(Action) == 1
    assert await _keys_of(world, [request]) == set()
    again = await _send(police, path, request)
    assert again.status_code == 401, again.text
    assert again.json()["code"] == "invalid_dpop_proof"


async def test_participants_set_at_once_on_two_replicas_are_both_set(
    any_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas each add the same new participant at once (different keys, both past the
    read before either writes): both answer 200 (the later one's participation stands), one
    row, never a 500 from the primary key."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    path = f"/v1/meetings/{meeting_id}/participants"
    async with open_world(world.state.settings, world.clock) as replica:
        police = world[POLICE]
        other = GatewayClient(police.identity, ISSUER, replica.http, clock=world.clock)
        _after_both(monkeypatch, "_known_agencies")
        bodies = [
            {"participants": [{"agency_id": VICTIM_SUPPORT, "participation": p}]}
            for p in ("invited", "attended")
        ]
        answers = await asyncio.gather(
            police.client.call(
                "POST", path, police.context, body=bodies[0], idempotency_key=str(uuid.uuid4())
            ),
            other.call(
                "POST", path, police.context, body=bodies[1], idempotency_key=str(uuid.uuid4())
            ),
            return_exceptions=True,
        )
    assert all(
        getattr(answer, "body", {}).get("status") == "participants_set" for answer in answers
    ), answers
    async with world.state.db.read() as session:
        rows = (
            await session.scalars(
                select(MeetingAgency.participation).where(
                    MeetingAgency.meeting_id == meeting_id,
                    MeetingAgency.agency_id == VICTIM_SUPPORT,
                )
            )
        ).all()
    assert [str(p) for p in rows] in (["invited"], ["attended"])


def _then(
    monkeypatch: pytest.MonkeyPatch, name: str, meanwhile: Callable[[], Awaitable[None]]
) -> None:
    """Patch ``meetings.<name>`` (a step of a route's read) so that ``meanwhile`` commits
    right after it: another request's write between the route's read and its write."""
    real = getattr(meetings, name)

    async def then(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        await meanwhile()
        return result

    monkeypatch.setattr(meetings, name, then)


async def _close_need(world: World, meeting_id: str) -> None:
    async with world.state.db.write() as session:
        await session.execute(
            update(Meeting)
            .where(Meeting.id == meeting_id)
            .values(need_closed_at=world.clock.now, need_closed_by_agency_id=POLICE)
        )


async def _remove(world: World, meeting_id: str, agency_id: str) -> None:
    async with world.state.db.write() as session:
        await session.execute(
            update(MeetingAgency)
            .where(MeetingAgency.meeting_id == meeting_id, MeetingAgency.agency_id == agency_id)
            .values(participation="removed")
        )


async def test_participants_are_not_set_on_a_meeting_closed_since_the_read(
    any_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The meeting's need closed between the read (still open) and the write: a 409
    ``need_closed``, audited, and the participants stay as they were."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    path = f"/v1/meetings/{meeting_id}/participants"
    body = {"participants": [{"agency_id": VICTIM_SUPPORT, "participation": "attended"}]}
    request = await _prepared(world[POLICE], path, body)
    _then(monkeypatch, "_known_agencies", lambda: _close_need(world, meeting_id))

    response = await _send(world[POLICE], path, request)

    await _refused_as_conflict(world, response, "need_closed")
    async with world.state.db.read() as session:
        added = await session.scalar(
            select(MeetingAgency.agency_id).where(
                MeetingAgency.meeting_id == meeting_id, MeetingAgency.agency_id == VICTIM_SUPPORT
            )
        )
    assert added is None


@pytest.mark.parametrize("change", ["closure", "removal"])
async def test_minutes_are_not_circulated_past_a_change_since_the_read(
    any_world: World, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """The pushes were decided on the meeting as read; its need closed, or Jobcentre Plus
    taken off it, before the write: a 409, no minutes stored, nothing queued."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    path = f"/v1/meetings/{meeting_id}/minutes"
    request = await _prepared(world[POLICE], path, minutes())
    meanwhile = (
        (lambda: _close_need(world, meeting_id))
        if change == "closure"
        else (lambda: _remove(world, meeting_id, JCP))
    )
    _then(monkeypatch, "_participant_pushes", meanwhile)

    response = await _send(world[POLICE], path, request)

    reason = "need_closed" if change == "closure" else "participants_changed"
    await _refused_as_conflict(world, response, reason)
    assert await world.count(Minutes) == 0
    assert [m for m in await world.outbox() if m.kind == "minutes"] == []
