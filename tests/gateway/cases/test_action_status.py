"""Action points' status through the API: the owner and the chair move it along the
transition table; everyone else gets 403 or the opaque 404; bad bodies store nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from gateway.cases.actions import TRANSITIONS, Actor
from gateway.domain import ActionStatus
from gateway.store.models import Action, ActionUpdate
from tests.gateway.cases.scenario import (
    ACTION_TEXT,
    CS,
    HOUSING,
    JCP,
    MAPPA,
    MENTAL_HEALTH,
    POLICE,
    PROBATION,
    WILTS_POLICE,
    at_level_2,
    level_2_meeting,
)
from tests.gateway.cases.support import TODAY, World

NOTE = "Tenancy officer Mr Gideon Ashworth-Pell visited; move agreed"
S = ActionStatus


async def _action(
    world: World, owner: str = HOUSING, participants: dict[str, str] | None = None
) -> tuple[str, str]:
    """A level 2 meeting chaired by police (by default housing, children's services and
    probation attend, Jobcentre Plus gets the minutes) with an action owned by ``owner``:
    (nominal, action)."""
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id, participants)
    answer = await world[POLICE].post(
        f"/v1/meetings/{meeting_id}/actions",
        {
            "owner_agency_id": owner,
            "description": ACTION_TEXT,
            "due_date": (TODAY + dt.timedelta(days=14)).isoformat(),
            "review_date": (TODAY + dt.timedelta(days=28)).isoformat(),
        },
    )
    return nominal_id, str(answer["id"])


async def _status(world: World, action_id: str) -> ActionStatus:
    async with world.state.db.read() as session:
        row = await session.get(Action, action_id)
    assert row is not None
    return ActionStatus(row.status)


async def test_owner_reports_progress_then_done_audited_with_sealed_notes(
    any_world: World,
) -> None:
    """open -> in_progress -> done by the owner: each move kept and audited, the note sealed
    and never in the audit (SQLite and PostgreSQL)."""
    world = any_world
    nominal_id, action_id = await _action(world)
    path = f"/v1/actions/{action_id}/status"
    answer = await world[HOUSING].post(path, {"status": "in_progress", "note": NOTE})
    assert answer == {"id": action_id, "status": "in_progress", "nominal_id": nominal_id}
    assert await _status(world, action_id) is S.IN_PROGRESS
    answer = await world[HOUSING].post(path, {"status": "done"})
    assert answer["status"] == "done"
    async with world.state.db.read() as session:
        updates = (
            await session.scalars(select(ActionUpdate).order_by(ActionUpdate.created_at))
        ).all()
    moves = [(u.from_status, u.to_status, u.agency_id) for u in updates]
    assert sorted(moves) == [("in_progress", "done", HOUSING), ("open", "in_progress", HOUSING)]
    noted = next(u for u in updates if u.to_status == "in_progress")
    assert noted.note_sealed is not None and b"Ashworth" not in bytes(noted.note_sealed)
    sealer = world.state.case_sealer
    assert sealer is not None
    opened = sealer.unseal("action_updates", noted.id, "note_sealed", noted.note_sealed)
    assert opened == {"note": NOTE}
    entries = [
        e
        for e in await world.audit(agency_id=HOUSING, outcome="allowed")
        if e.detail.get("resource") == "action"
    ]
    assert [(e.detail["from"], e.detail["to"]) for e in entries] == [
        ("open", "in_progress"),
        ("in_progress", "done"),
    ]
    for entry in entries:
        assert entry.operation == "alteration"
        assert entry.nominal_ref == nominal_id
        assert action_id in entry.record_refs
        assert entry.detail["as"] == ["owner"]
    for entry in await world.audit():
        assert "Ashworth" not in str(entry.detail)


# One row per transition rule: the moves made first (by the chair), who moves, where, answer.
MOVES = [
    # open -> in_progress: the owner reports progress.
    pytest.param([], HOUSING, "in_progress", 200, id="owner-starts"),
    # open -> done: the owner may finish at once.
    pytest.param([], HOUSING, "done", 200, id="owner-finishes"),
    # open -> cancelled: the chair's decision, not the owner's.
    pytest.param([], HOUSING, "cancelled", 403, id="owner-may-not-cancel"),
    # open -> cancelled by the chair agency.
    pytest.param([], POLICE, "cancelled", 200, id="chair-cancels"),
    # open -> cancelled by the MAPPA co-ordination unit of the area.
    pytest.param([], MAPPA, "cancelled", 200, id="coordinator-cancels"),
    # in_progress -> open: the owner may step back.
    pytest.param(["in_progress"], HOUSING, "open", 200, id="owner-steps-back"),
    # in_progress -> done by the owner.
    pytest.param(["in_progress"], HOUSING, "done", 200, id="owner-completes"),
    # in_progress -> cancelled: the chair's.
    pytest.param(["in_progress"], HOUSING, "cancelled", 403, id="owner-may-not-cancel-started"),
    # done -> open: only the chair reopens.
    pytest.param(["done"], HOUSING, "open", 403, id="owner-may-not-reopen"),
    pytest.param(["done"], POLICE, "open", 200, id="chair-reopens"),
    # done -> in_progress: not a move at all (reopen first).
    pytest.param(["done"], POLICE, "in_progress", 409, id="done-to-in-progress"),
    # cancelled is final.
    pytest.param(["cancelled"], POLICE, "open", 409, id="cancelled-is-final"),
    # a move to the same status is no move.
    pytest.param([], HOUSING, "open", 409, id="open-to-open"),
    pytest.param(["done"], POLICE, "done", 409, id="done-to-done"),
]


@pytest.mark.parametrize(("before", "who", "to", "status"), MOVES)
async def test_transition_table_through_the_api(
    world: World, before: list[str], who: str, to: str, status: int
) -> None:
    """Each move answers as the table says; a refused move changes nothing and is audited."""
    _, action_id = await _action(world)
    path = f"/v1/actions/{action_id}/status"
    for step in before:
        await world[POLICE].post(path, {"status": step})
    was = await _status(world, action_id)
    updates = await world.count(ActionUpdate)
    if status == 200:
        answer = await world[who].post(path, {"status": to})
        assert answer["status"] == to
        assert await _status(world, action_id) is S(to)
        assert await world.count(ActionUpdate) == updates + 1
        return
    refused = await world[who].refused("POST", path, {"status": to})
    assert refused.status == status
    assert await _status(world, action_id) is was
    assert await world.count(ActionUpdate) == updates
    entry = (await world.audit(agency_id=who, outcome="refused"))[-1]
    assert entry.reason_code in {"forbidden", "conflict"}


def test_transition_table_is_closed_and_cancellation_is_the_chairs() -> None:
    """No move leaves cancelled, none repeats a status, and every move to cancelled or out of
    done is the chair's alone."""
    for (old, new), actors in TRANSITIONS.items():
        assert old is not new and old is not S.CANCELLED
        assert actors
        if new is S.CANCELLED or old is S.DONE:
            assert actors == {Actor.CHAIR}


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        (CS, 403, "forbidden"),  # attended, may see the case, neither owner nor chair
        (JCP, 403, "forbidden"),  # receives the minutes, still not the owner
        (PROBATION, 403, "forbidden"),  # an RA agency, but not this meeting's chair
        (WILTS_POLICE, 404, "not_found"),  # may not know of the case at all
    ],
)
async def test_others_may_not_move_the_action(
    world: World, who: str, status: int, code: str
) -> None:
    """Anyone but the owner and the chair: 403 if it may know of the case, 404 if not."""
    _, action_id = await _action(world)
    refused = await world[who].refused(
        "POST", f"/v1/actions/{action_id}/status", {"status": "done"}
    )
    assert (refused.status, refused.code) == (status, code)
    assert await _status(world, action_id) is S.OPEN
    assert await world.count(ActionUpdate) == 0


async def test_an_agency_that_may_not_know_of_the_action_gets_the_404_of_no_action(
    world: World,
) -> None:
    """Mental health, invited to the meeting, may know of the nominal but not of the meeting's
    action points: moving one is refused as reading it is, with the 404 of an action that does
    not exist (a 403 would say the action exists), and nothing changes."""
    nominal_id, action_id = await _action(
        world, participants={HOUSING: "attended", MENTAL_HEALTH: "invited"}
    )
    assert (await world[MENTAL_HEALTH].get(f"/v1/nominals/{nominal_id}"))["id"] == nominal_id
    read = await world[MENTAL_HEALTH].refused("GET", f"/v1/actions/{action_id}")
    moved = await world[MENTAL_HEALTH].refused(
        "POST", f"/v1/actions/{action_id}/status", {"status": "done"}
    )
    absent = await world[MENTAL_HEALTH].refused(
        "POST", f"/v1/actions/{uuid.uuid4()}/status", {"status": "done"}
    )
    assert read.status == moved.status == absent.status == 404
    assert {**moved.problem, "request_id": 0} == {**absent.problem, "request_id": 0}
    assert await _status(world, action_id) is S.OPEN
    assert await world.count(ActionUpdate) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"status": "finished"},  # not a status
        {"status": "DONE"},  # statuses are lower case
        {},  # no status
        {"status": "done", "extra": 1},  # unknown field
        {"status": "done", "note": ""},  # an empty note
        {"status": "done", "note": "x" * 2001},  # a note too long
        {"status": ["done"]},  # not a string
    ],
)
async def test_bad_status_body_is_422_and_stores_nothing(
    world: World, body: dict[str, Any]
) -> None:
    _, action_id = await _action(world)
    refused = await world[HOUSING].refused("POST", f"/v1/actions/{action_id}/status", body)
    assert refused.status == 422, refused.problem
    assert await _status(world, action_id) is S.OPEN
    assert await world.count(ActionUpdate) == 0


async def test_unknown_action_plain_json_and_missing_key(world: World) -> None:
    """An unknown or malformed id is 404; plain JSON 415; no Idempotency-Key 400."""
    _, action_id = await _action(world)
    for unknown in ("00000000-0000-4000-8000-000000000000", "x'--"):
        refused = await world[HOUSING].refused(
            "POST", f"/v1/actions/{unknown}/status", {"status": "done"}
        )
        assert refused.status == 404
    response = await world[HOUSING].raw(
        "POST",
        f"/v1/actions/{action_id}/status",
        content=b'{"status": "done"}',
        content_type="application/json",
    )
    assert response.status_code == 415
    sealed = await world[HOUSING].client.seal({"status": "done"})
    response = await world[HOUSING].raw(
        "POST", f"/v1/actions/{action_id}/status", content=sealed, key=None
    )
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_missing"
    assert await world.count(ActionUpdate) == 0


async def test_owner_keeps_access_while_in_progress_and_loses_it_once_done(world: World) -> None:
    """An owner tied to the case only by its action sees it while the action is open or in
    progress, not once it is done."""
    mh = await world.register("barnet-yot", "youth_offending", "duty_to_cooperate")
    nominal_id, action_id = await _action(world, owner=mh.id)
    assert (await mh.raw("GET", f"/v1/nominals/{nominal_id}")).status_code == 200
    await mh.post(f"/v1/actions/{action_id}/status", {"status": "in_progress"})
    assert (await mh.raw("GET", f"/v1/nominals/{nominal_id}")).status_code == 200
    await mh.post(f"/v1/actions/{action_id}/status", {"status": "done"})
    assert (await mh.raw("GET", f"/v1/nominals/{nominal_id}")).status_code == 404
