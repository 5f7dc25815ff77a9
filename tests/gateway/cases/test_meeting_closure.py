"""Ending what a meeting grants: the chair or co-ordinator closes its need, or takes one agency
off it.

A row table of who reads what once the meeting's need is closed (each agency that took part gets
the opaque 404 of an unknown id on the nominal, the records, the minutes, the meeting and its
action points; the Responsible Authority and the lead agency still see the nominal), then who
may close it (403 to an agency that knows the meeting, 404 to one that may not know it, nothing
stored either way), closing twice, the stored closure (who, when, the reason sealed), hostile
bodies, and an agency taken off the meeting while the others keep what the meeting grants them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from gateway.store.models import Meeting, MeetingAgency
from tests.gateway.cases.scenario import (
    ACTION_TEXT,
    CP_CONFERENCE,
    CS,
    HOUSING,
    JCP,
    MAPPA,
    MENTAL_HEALTH,
    POLICE,
    PROBATION,
    WILTS_POLICE,
    at_level_2,
    disclosure_request,
    level_2_meeting,
    minutes,
    record,
)
from tests.gateway.cases.support import TODAY, World, new_key

#: Why the chair closed the meeting's need: free text that may name people (sealed at rest).
REASON = "Mr Ravenscroft moved to Leeds; West Yorkshire MAPPA took the case on 4 December"
DUE = (TODAY + dt.timedelta(days=14)).isoformat()
CP_CONTEXT = ("CA1989-s47", "child-protection")


@dataclass(frozen=True)
class Case:
    nominal_id: str
    meeting_id: str
    action_id: str
    request_id: str

    def path(self, what: str) -> str:
        return {
            "nominal": f"/v1/nominals/{self.nominal_id}",
            "records": f"/v1/nominals/{self.nominal_id}/records",
            "minutes": f"/v1/meetings/{self.meeting_id}/minutes",
            "meeting": f"/v1/meetings/{self.meeting_id}",
            "action": f"/v1/actions/{self.action_id}",
        }[what]


async def _case(world: World) -> Case:
    """Barnet's level 2 meeting (seed 004: police chair; probation, children's services and
    housing attend; Jobcentre Plus receives minutes only; mental health is invited), a record
    from probation, an open action point owned by housing, the minutes, and an onward disclosure
    of the conclusions to the child protection conference, approved."""
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    await world[PROBATION].post(f"/v1/nominals/{nominal_id}/records", record())
    action = await world[POLICE].post(
        f"/v1/meetings/{meeting_id}/actions",
        {"owner_agency_id": HOUSING, "description": ACTION_TEXT, "due_date": DUE},
    )
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    asked = await world[CS].post(
        "/v1/disclosures", disclosure_request(meeting_id, CP_CONFERENCE, parts=["conclusions"])
    )
    await world[POLICE].post(
        f"/v1/disclosures/{asked['id']}/decision",
        {"decision": "approve", "approved_parts": ["conclusions"], "reason": "s.47 enquiry"},
    )
    return Case(nominal_id, meeting_id, action["id"], asked["id"])


async def _close(world: World, case: Case, closer: str = POLICE, **body: Any) -> dict[str, Any]:
    return await world[closer].post(
        f"/v1/meetings/{case.meeting_id}/closure", {"reason": REASON, **body}
    )


async def _stored(world: World, meeting_id: str) -> Meeting:
    async with world.state.db.read() as session:
        meeting = await session.get(Meeting, meeting_id)
    assert meeting is not None
    return meeting


async def _reads(world: World, asker: str, path: str, status: int, rule: str) -> dict[str, Any]:
    """The asker's read: the body (200) or the opaque 404; the audit entry names ``rule``."""
    agent = world[asker]
    context = agent.with_context(*CP_CONTEXT) if asker == CP_CONFERENCE else None
    body: dict[str, Any] = {}
    if status == 200:
        body = await agent.get(path, context=context)
        entry = (await world.audit(agency_id=asker, outcome="allowed", operation="disclosure"))[-1]
    else:
        refused = await agent.refused("GET", path, context=context)
        assert (refused.status, refused.code) == (404, "not_found")
        entry = (await world.audit(agency_id=asker, outcome="refused"))[-1]
    assert entry.rule == rule, (entry.rule, entry.detail)
    return body


# ----------------------------------------------------------------- who reads what, closed

CLOSED_ROWS = [
    # Housing attended and owns an open action point: the nominal is gone to it...
    (HOUSING, "nominal", 404, "default-deny"),
    # ... and the records the meeting opened to it,
    (HOUSING, "records", 404, "default-deny"),
    # the minutes it received,
    (HOUSING, "minutes", 404, "default-deny"),
    # the meeting itself,
    (HOUSING, "meeting", 404, "default-deny"),
    # and its own open action point (involved-action ends with the meeting's need).
    (HOUSING, "action", 404, "default-deny"),
    # Jobcentre Plus received the minutes without attending: no longer.
    (JCP, "minutes", 404, "default-deny"),
    # Jobcentre Plus: nor the meeting.
    (JCP, "meeting", 404, "default-deny"),
    # Mental health, invited, no longer knows the nominal (the invitation granted it).
    (MENTAL_HEALTH, "nominal", 404, "default-deny"),
    # Mental health: nor the meeting it was invited to.
    (MENTAL_HEALTH, "meeting", 404, "default-deny"),
    # Children's services attended: the nominal is gone to it.
    (CS, "nominal", 404, "default-deny"),
    # Children's services: a participant's read of another agency's action point ends too.
    (CS, "action", 404, "default-deny"),
    # The conference's approved onward disclosure ends with the meeting's need.
    (CP_CONFERENCE, "minutes", 404, "default-deny"),
    # The police chaired it: its own part ended as everyone's did...
    (POLICE, "meeting", 404, "default-deny"),
    # ... but it is the lead agency and still sees the nominal,
    (POLICE, "nominal", 200, "lead-agency"),
    # as probation does, the Responsible Authority of the area, with its records.
    (PROBATION, "records", 200, "responsible-authority-of-area"),
    # Probation (RA) sees the nominal too.
    (PROBATION, "nominal", 200, "responsible-authority-of-area"),
    # The co-ordinator keeps the area's meetings: it reads the closed one.
    (MAPPA, "meeting", 200, "minutes-mappa-coordinator"),
    # The co-ordinator keeps the minutes too.
    (MAPPA, "minutes", 200, "minutes-mappa-coordinator"),
]


@pytest.mark.parametrize(
    ("asker", "what", "status", "rule"),
    CLOSED_ROWS,
    ids=[f"{a}-{w}-{s}" for a, w, s, _ in CLOSED_ROWS],
)
async def test_after_closure_who_reads_what(
    world: World, asker: str, what: str, status: int, rule: str
) -> None:
    """Each agency read before the closure (200 through the meeting); after it, the row."""
    case = await _case(world)
    if asker not in (POLICE, PROBATION, MAPPA):
        granted = await _reads(world, asker, case.path(what), 200, _before(asker, what))
        assert granted
    await _close(world, case)
    body = await _reads(world, asker, case.path(what), status, rule)
    if what == "meeting" and status == 200:
        assert body["status"] == "need_closed"


def _before(asker: str, what: str) -> str:
    """The rule that let ``asker`` read ``what`` before the closure."""
    if asker == CP_CONFERENCE:
        return "onward-disclosure-approved"
    if what in ("minutes",) or (what == "action" and asker != HOUSING):
        return "minutes-participant"
    if what == "action":
        return "involved-action"
    return "involved-meeting"


async def test_a_closure_is_one_audited_alteration_on_both_backends(any_world: World) -> None:
    """The chair closes: 200 ``need_closed``; the stored meeting says when, by whom (agency and
    officer) and why, the reason sealed; one allowed alteration names the rule and the parts
    that ended, never the reason. Housing's next read is refused; what it was sent before stays
    in the audit."""
    world = any_world
    case = await _case(world)
    sent_before = [
        e.id for e in await world.audit(outcome="allowed") if HOUSING in (e.recipients or [])
    ]
    assert sent_before  # the minutes pushed to housing, at least
    answer = await _close(world, case)
    assert answer["status"] == "need_closed" and answer["id"] == case.meeting_id
    stored = await _stored(world, case.meeting_id)
    assert stored.need_closed_at == world.clock()
    assert (stored.need_closed_by_agency_id, stored.need_closed_by_officer) == (POLICE, "OFF-1")
    assert stored.need_closure_sealed is not None
    assert REASON.encode() not in bytes(stored.need_closure_sealed)
    opened = world.state.case_sealer.unseal(
        "meetings", case.meeting_id, "need_closure_sealed", stored.need_closure_sealed
    )
    assert opened == {"reason": REASON}
    entries = await world.audit(agency_id=POLICE, operation="alteration", outcome="allowed")
    entry = entries[-1]
    assert entry.rule == "involved-meeting" and entry.policy_version
    assert entry.record_refs == [case.meeting_id]
    assert entry.detail["need_closed_at"] == world.clock().isoformat()
    assert entry.detail["participants"][HOUSING] == "attended"
    assert REASON not in repr(entry.detail)
    await _reads(world, HOUSING, case.path("nominal"), 404, "default-deny")
    still = [e.id for e in await world.audit(outcome="allowed") if HOUSING in (e.recipients or [])]
    assert still == sent_before


async def test_closure_takes_effect_with_a_still_valid_token(world: World) -> None:
    """Housing read with its token a moment before; the same token is refused after."""
    case = await _case(world)
    await world[HOUSING].get(case.path("nominal"))
    await _close(world, case, MAPPA)
    await _reads(world, HOUSING, case.path("nominal"), 404, "default-deny")


# --------------------------------------------------------------------------- who may close


@pytest.mark.parametrize(
    ("closer", "status", "code", "rule"),
    [
        # Probation attended and knows the meeting, but neither chairs nor co-ordinates.
        (PROBATION, 403, "forbidden", "chair-or-coordinator"),
        # Housing attended: the same.
        (HOUSING, 403, "forbidden", "chair-or-coordinator"),
        # Mental health, only invited, knows the meeting: the same.
        (MENTAL_HEALTH, 403, "forbidden", "chair-or-coordinator"),
        # Another area's police may not know the meeting at all: the 404 of an unknown id.
        (WILTS_POLICE, 404, "not_found", "default-deny"),
        # The conference has the approved parts of the minutes, never the meeting: 404.
        (CP_CONFERENCE, 404, "not_found", "default-deny"),
    ],
)
async def test_a_closure_by_anyone_else_is_refused_and_stores_nothing(
    any_world: World, closer: str, status: int, code: str, rule: str
) -> None:
    world = any_world
    case = await _case(world)
    agent = world[closer]
    context = agent.with_context(*CP_CONTEXT) if closer == CP_CONFERENCE else None
    path = f"/v1/meetings/{case.meeting_id}/closure"
    refused = await agent.refused("POST", path, {"reason": REASON}, context=context)
    assert (refused.status, refused.code) == (status, code)
    entry = (await world.audit(agency_id=closer, outcome="refused"))[-1]
    assert entry.rule == rule
    if status == 404:  # byte for byte the unknown id's problem, the request id apart
        unknown = await agent.refused(
            "POST", f"/v1/meetings/{uuid.uuid4()}/closure", {"reason": REASON}, context=context
        )
        assert {**unknown.problem, "request_id": None} == {**refused.problem, "request_id": None}
    stored = await _stored(world, case.meeting_id)
    assert stored.need_closed_at is None and stored.need_closure_sealed is None
    await _reads(world, HOUSING, case.path("meeting"), 200, "involved-meeting")


async def test_closing_twice_is_a_conflict_and_a_retry_its_first_answer(world: World) -> None:
    """The co-ordinator closes; a retry with the same Idempotency-Key answers the same, closing
    nothing again; a new closure is 409 (``need_closed``), audited, the first closure kept. The
    chair, whose part ended with the closure, no longer knows the meeting: 404."""
    case = await _case(world)
    key = new_key()
    path = f"/v1/meetings/{case.meeting_id}/closure"
    answer = await world[MAPPA].post(path, {"reason": REASON}, key=key)
    closed_at = (await _stored(world, case.meeting_id)).need_closed_at
    world.clock.advance(minutes=5)
    again = await world[MAPPA].post(path, {"reason": REASON}, key=key)
    assert again == answer
    conflict = await world[MAPPA].refused("POST", path, {"reason": "once more"})
    assert (conflict.status, conflict.code) == (409, "conflict")
    entry = (await world.audit(agency_id=MAPPA, outcome="refused"))[-1]
    assert entry.detail.get("reason") == "need_closed"
    stored = await _stored(world, case.meeting_id)
    assert stored.need_closed_at == closed_at and stored.need_closed_by_agency_id == MAPPA
    closures = [
        e
        for e in await world.audit(operation="alteration", outcome="allowed")
        if e.detail.get("need_closed_at")
    ]
    assert len(closures) == 1
    chair = await world[POLICE].refused("POST", path, {"reason": "again"})
    assert (chair.status, chair.code) == (404, "not_found")


HOSTILE = [
    # A field the contract does not have.
    {"reason": REASON, "closed_by": "someone else"},
    # No reason.
    {},
    # An empty reason.
    {"reason": ""},
    # A reason longer than a reason may be.
    {"reason": "x" * 2001},
    # A control character (an escape sequence for a terminal) in the reason.
    {"reason": "closed\x1b[2J"},
    # Not text.
    {"reason": 42},
]


@pytest.mark.parametrize("body", HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_closure_bodies_are_422_and_store_nothing(
    any_world: World, body: dict[str, Any]
) -> None:
    world = any_world
    case = await _case(world)
    path = f"/v1/meetings/{case.meeting_id}/closure"
    refused = await world[POLICE].refused("POST", path, body)
    assert (refused.status, refused.code) == (422, "validation_failed")
    stored = await _stored(world, case.meeting_id)
    assert stored.need_closed_at is None and stored.need_closure_sealed is None
    await _reads(world, HOUSING, case.path("nominal"), 200, "involved-meeting")


async def test_participants_of_a_closed_meeting_are_not_changed(world: World) -> None:
    """Re-inviting an agency to a closed meeting would grant nothing: 409, nothing stored."""
    case = await _case(world)
    await _close(world, case, MAPPA)
    path = f"/v1/meetings/{case.meeting_id}/participants"
    body = {"participants": [{"agency_id": HOUSING, "participation": "attended"}]}
    refused = await world[MAPPA].refused("POST", path, body)
    assert (refused.status, refused.code) == (409, "conflict")
    await _reads(world, HOUSING, case.path("nominal"), 404, "default-deny")


async def test_onward_disclosure_of_a_closed_meeting_is_not_approved(world: World) -> None:
    """A request pending when the need closed: the co-ordinator's approval is refused (409,
    the recipient may not know), nothing sent."""
    case = await _case(world)
    asked = await world[CS].post(
        "/v1/disclosures", disclosure_request(case.meeting_id, CP_CONFERENCE, parts=["actions"])
    )
    await _close(world, case, MAPPA)
    refused = await world[MAPPA].refused(
        "POST",
        f"/v1/disclosures/{asked['id']}/decision",
        {"decision": "approve", "approved_parts": ["actions"], "reason": "s.47 enquiry"},
    )
    assert (refused.status, refused.code) == (409, "conflict")


# ------------------------------------------------------------------ taking one agency off


async def _remove(world: World, case: Case, agency_id: str, by: str = POLICE) -> dict[str, Any]:
    return await world[by].post(
        f"/v1/meetings/{case.meeting_id}/participants",
        {"participants": [{"agency_id": agency_id, "participation": "removed"}]},
    )


REMOVED_ROWS = [
    # Housing, taken off: the nominal,
    (HOUSING, "nominal", 404, "default-deny"),
    # the records,
    (HOUSING, "records", 404, "default-deny"),
    # the minutes,
    (HOUSING, "minutes", 404, "default-deny"),
    # the meeting,
    (HOUSING, "meeting", 404, "default-deny"),
    # and its own open action point of that meeting.
    (HOUSING, "action", 404, "default-deny"),
    # Children's services, still attending, keeps the nominal,
    (CS, "nominal", 200, "involved-meeting"),
    # the minutes,
    (CS, "minutes", 200, "minutes-participant"),
    # and housing's action point, part of the minutes.
    (CS, "action", 200, "minutes-participant"),
    # Jobcentre Plus keeps its minutes.
    (JCP, "minutes", 200, "minutes-participant"),
    # Mental health, invited, keeps the meeting.
    (MENTAL_HEALTH, "meeting", 200, "involved-meeting"),
    # The conference keeps its approved onward disclosure.
    (CP_CONFERENCE, "minutes", 200, "onward-disclosure-approved"),
]


@pytest.mark.parametrize(
    ("asker", "what", "status", "rule"),
    REMOVED_ROWS,
    ids=[f"{a}-{w}-{s}" for a, w, s, _ in REMOVED_ROWS],
)
async def test_after_removing_housing_who_reads_what(
    world: World, asker: str, what: str, status: int, rule: str
) -> None:
    case = await _case(world)
    await _remove(world, case, HOUSING)
    body = await _reads(world, asker, case.path(what), status, rule)
    if what == "meeting" and status == 200:
        parts = {p["agency_id"]: p["participation"] for p in body["participants"]}
        assert parts[HOUSING] == "removed" and body["status"] == "minuted"


async def test_a_removal_is_audited_and_what_was_sent_stays(any_world: World) -> None:
    """The chair's removal: one allowed alteration naming its rule and the new participation;
    the row stays (``removed``); the audit entries of what housing was sent are unchanged;
    housing is refused from then on, and sent nothing more (new minutes are not pushed)."""
    world = any_world
    case = await _case(world)
    sent_before = [
        e.id for e in await world.audit(outcome="allowed") if HOUSING in (e.recipients or [])
    ]
    answer = await _remove(world, case, HOUSING)
    assert answer["status"] == "participants_set"
    entry = (await world.audit(agency_id=POLICE, operation="alteration", outcome="allowed"))[-1]
    assert entry.rule == "minutes-participant" and entry.policy_version
    assert entry.detail["participants"] == {HOUSING: "removed"}
    async with world.state.db.read() as session:
        part = await session.scalar(
            select(MeetingAgency.participation).where(
                MeetingAgency.meeting_id == case.meeting_id, MeetingAgency.agency_id == HOUSING
            )
        )
    assert part == "removed"
    await _reads(world, HOUSING, case.path("nominal"), 404, "default-deny")
    still = [e.id for e in await world.audit(outcome="allowed") if HOUSING in (e.recipients or [])]
    assert still == sent_before
    reports = await world[HOUSING].refused("GET", f"/v1/meetings/{case.meeting_id}/reports")
    assert reports.status == 404


async def test_a_removed_agency_gets_no_minutes_of_a_later_meeting_write(world: World) -> None:
    """Removed before the minutes: they are pushed to the others, not to housing."""
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    case = Case(nominal_id, meeting_id, "", "")
    await _remove(world, case, HOUSING)
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    assert await world.pushed(HOUSING, "minutes") == []
    assert await world.pushed(CS, "minutes")


@pytest.mark.parametrize(
    ("by", "agency_id", "status", "code"),
    [
        # Probation attends but does not chair: 403, housing keeps its part.
        (PROBATION, HOUSING, 403, "forbidden"),
        # The chair agency is not taken off its own meeting: it closes the need instead.
        (POLICE, POLICE, 422, "validation_failed"),
        # An agency that does not exist.
        (POLICE, "no-such-agency", 422, "validation_failed"),
    ],
)
async def test_a_removal_refused_changes_nothing(
    world: World, by: str, agency_id: str, status: int, code: str
) -> None:
    case = await _case(world)
    path = f"/v1/meetings/{case.meeting_id}/participants"
    body = {"participants": [{"agency_id": agency_id, "participation": "removed"}]}
    refused = await world[by].refused("POST", path, body)
    assert (refused.status, refused.code) == (status, code)
    await _reads(world, HOUSING, case.path("nominal"), 200, "involved-meeting")
    await _reads(world, POLICE, case.path("meeting"), 200, "involved-meeting")


async def test_a_meeting_is_not_convened_with_an_agency_removed(world: World) -> None:
    nominal_id = await at_level_2(world)
    refused = await world[POLICE].refused(
        "POST",
        "/v1/meetings",
        {
            "nominal_id": nominal_id,
            "meeting_type": "level_2",
            "held_on": TODAY.isoformat(),
            "chair_officer": "DI-2231",
            "participants": [{"agency_id": HOUSING, "participation": "removed"}],
            "confidentiality_statement_signed": True,
        },
    )
    assert (refused.status, refused.code) == (422, "validation_failed")
    async with world.state.db.read() as session:
        assert (await session.scalars(select(Meeting.id))).all() == []
