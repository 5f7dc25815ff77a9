"""Reading back a meeting, an action point and an onward-disclosure request's status.

Each row sets a case up through the API, then one agency reads with its own token: the answer
(opened with its key) or the opaque 404, and the audit entry naming the rule either way. Then
the hostile cases: ids of another kind or malformed (the 404 byte for byte that of an unknown
id), involvement that ended, an action point citing a third-party source or withheld by the
minutes' caveat, and audit entries that never hold what was withheld.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from adapters.client import ContextHeaders
from tests.gateway.cases.scenario import (
    ACTION_TEXT,
    CONCLUSION_TEXT,
    CP_CONFERENCE,
    CS,
    DISCUSSION_TEXT,
    HOUSING,
    JCP,
    MAPPA,
    MENTAL_HEALTH,
    POLICE,
    PROBATION,
    THIRD_PARTY,
    THIRD_PARTY_TEXT,
    VICTIM_SUPPORT,
    WILTS_POLICE,
    at_level_2,
    disclosure_request,
    level_2_meeting,
    minutes,
)
from tests.gateway.cases.support import TODAY, World

#: A case set up through the API; the id of the resource the row reads.
Setup = Callable[[World], Awaitable[str]]
OTHER_CONTRIBUTOR = ContextHeaders("CJA2003-s325-4A-c", "risk-assessment", "VS-9")
#: An action point resting on the neighbour the police brought to the meeting (third party).
SOURCED_ACTION = "Ask the neighbour at no. 43 to log sightings near the school gates"
DUE = (TODAY + dt.timedelta(days=14)).isoformat()


async def _meeting(world: World, *, category: str | None = None, minuted: bool = True) -> str:
    """Barnet's usual level 2 meeting (seed 004): police chair; probation, children's services
    and housing attend; Jobcentre Plus receives minutes only; mental health is invited; with
    the minutes, unless not ``minuted``."""
    nominal_id = await (at_level_2(world, category=category) if category else at_level_2(world))
    meeting_id = await level_2_meeting(world, nominal_id)
    if minuted:
        await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    return meeting_id


async def _action(world: World, meeting_id: str, owner: str, **changes: Any) -> str:
    made = await world[POLICE].post(
        f"/v1/meetings/{meeting_id}/actions",
        {"owner_agency_id": owner, "description": ACTION_TEXT, "due_date": DUE, **changes},
    )
    action_id = made["id"]
    assert isinstance(action_id, str)
    return action_id


async def _nominal_of(world: World, meeting_id: str) -> str:
    body = await world[POLICE].get(f"/v1/meetings/{meeting_id}")
    nominal_id = body["nominal_id"]
    assert isinstance(nominal_id, str)
    return nominal_id


async def _deregister(world: World, meeting_id: str) -> None:
    nominal_id = await _nominal_of(world, meeting_id)
    await world[POLICE].post(f"/v1/nominals/{nominal_id}/deregistration", {"reason": "x"})


async def _level_3(world: World, meeting_id: str) -> None:
    nominal_id = await _nominal_of(world, meeting_id)
    await world[POLICE].post(f"/v1/nominals/{nominal_id}/level", {"level": 3, "reason": "x"})


async def _read(
    world: World, asker: str, path: str, context: ContextHeaders | None, status: int, rule: str
) -> dict[str, Any] | None:
    """The asker's read: the body (200) or the opaque 404; the audit entry names ``rule``."""
    if status == 200:
        body = await world[asker].get(path, context=context)
        entry = (await world.audit(agency_id=asker, outcome="allowed", operation="disclosure"))[-1]
        assert entry.recipients == [asker] and entry.payload_digest
    else:
        refused = await world[asker].refused("GET", path, context=context)
        assert (refused.status, refused.code) == (404, "not_found")
        entry = (await world.audit(agency_id=asker, outcome="refused"))[-1]
        body = None
    assert entry.rule == rule, (entry.rule, entry.detail)
    assert entry.operation == "disclosure" and entry.policy_version
    return body


# ------------------------------------------------------------------------------- meetings


async def meeting(world: World) -> str:
    return await _meeting(world)


async def meeting_deregistered(world: World) -> str:
    """The meeting, then the nominal deregistered."""
    meeting_id = await _meeting(world)
    await _deregister(world, meeting_id)
    return meeting_id


async def meeting_level_changed(world: World) -> str:
    """The level 2 meeting, then the RA moved the case to level 3."""
    meeting_id = await _meeting(world)
    await _level_3(world, meeting_id)
    return meeting_id


async def meeting_category_4(world: World) -> str:
    return await _meeting(world, category="M4")


MEETING_ROWS = [
    # The chair agency (police) attends the meeting it convened.
    (meeting, POLICE, None, 200, "involved-meeting"),
    # Probation attended.
    (meeting, PROBATION, None, 200, "involved-meeting"),
    # Mental health was invited and did not attend: it knows of the meeting it was invited to.
    (meeting, MENTAL_HEALTH, None, 200, "involved-meeting"),
    # Jobcentre Plus receives the minutes without attending.
    (meeting, JCP, None, 200, "involved-meeting"),
    # The MAPPA co-ordination unit of the area co-ordinates every meeting.
    (meeting, MAPPA, None, 200, "minutes-mappa-coordinator"),
    # Another area's police have no part in it.
    (meeting, WILTS_POLICE, None, 404, "default-deny"),
    # A children's services agency of the area with no part in it (the CP conference).
    (meeting, CP_CONFERENCE, None, 404, "default-deny"),
    # An other contributor with no s.325(4A)(c) decision for the nominal.
    (meeting, VICTIM_SUPPORT, OTHER_CONTRIBUTOR, 404, "other-contributor-recorded"),
    # Deregistered: housing's part in the meeting ended with the registration.
    (meeting_deregistered, HOUSING, None, 404, "default-deny"),
    # Deregistered: the co-ordinator keeps the area's meetings, as it keeps their minutes.
    (meeting_deregistered, MAPPA, None, 200, "minutes-mappa-coordinator"),
    # The level changed after the meeting: housing's part, granted at the old level, ended.
    (meeting_level_changed, HOUSING, None, 404, "default-deny"),
    # Category 4: housing attended, but only police and probation of the area see anything.
    (meeting_category_4, HOUSING, None, 404, "category-4-named-agencies"),
    # Category 4: police, chair and named, still read it.
    (meeting_category_4, POLICE, None, 200, "involved-meeting"),
]


# ---------------------------------------------------------------------------- action points


async def action_of_jcp(world: World) -> str:
    """An open action point owned by Jobcentre Plus, which takes no part in the meeting
    (probation and children's services attend; mental health is invited)."""
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(
        world, nominal_id, {PROBATION: "attended", CS: "attended", MENTAL_HEALTH: "invited"}
    )
    action_id = await _action(world, meeting_id, JCP)
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    return action_id


async def action_done(world: World) -> str:
    """The same, then the chair marked the action done."""
    action_id = await action_of_jcp(world)
    await world[POLICE].post(f"/v1/actions/{action_id}/status", {"status": "done"})
    return action_id


async def action_past_review(world: World) -> str:
    """The same, open, fifteen days on: past its due date (no review date)."""
    action_id = await action_of_jcp(world)
    world.clock.advance(days=15)
    return action_id


async def action_deregistered(world: World) -> str:
    action_id = await action_of_jcp(world)
    meeting_id = (await world[POLICE].get(f"/v1/actions/{action_id}"))["meeting_id"]
    await _deregister(world, meeting_id)
    return action_id


ACTION_ROWS = [
    # The owner of the open action point, at no part in the meeting.
    (action_of_jcp, JCP, None, 200, "involved-action"),
    # Probation attended: the action point is part of the minutes it receives.
    (action_of_jcp, PROBATION, None, 200, "minutes-participant"),
    # The chair agency attends its meeting.
    (action_of_jcp, POLICE, None, 200, "minutes-participant"),
    # The MAPPA co-ordination unit of the area.
    (action_of_jcp, MAPPA, None, 200, "minutes-mappa-coordinator"),
    # Mental health was invited and did not attend: not a participant of the minutes.
    (action_of_jcp, MENTAL_HEALTH, None, 404, "default-deny"),
    # Housing has no part in this meeting.
    (action_of_jcp, HOUSING, None, 404, "default-deny"),
    # The owner once the action is done: its involvement ended.
    (action_done, JCP, None, 404, "default-deny"),
    # The owner once the due date has passed: its involvement ended.
    (action_past_review, JCP, None, 404, "default-deny"),
    # A participant, once the nominal is deregistered.
    (action_deregistered, PROBATION, None, 404, "default-deny"),
]


async def test_a_third_party_sourced_action_reaches_only_the_sources_originator(
    world: World,
) -> None:
    """An action point citing the neighbour the police brought is, to probation and to its own
    owner, one that does not exist (404, audited as third-party-source, without the text);
    the police, the source's originator, read it whole."""
    meeting_id = await _meeting(world)
    action_id = await _action(
        world, meeting_id, CS, description=SOURCED_ACTION, source="s-neighbour"
    )
    path = f"/v1/actions/{action_id}"
    whole = await _read(world, POLICE, path, None, 200, "minutes-participant")
    assert whole is not None
    assert (whole["description"], whole["source"]) == (SOURCED_ACTION, "s-neighbour")
    for asker in (PROBATION, CS):
        refused = await world[asker].raw("GET", path)
        assert refused.status_code == 404
        assert SOURCED_ACTION.encode() not in refused.content
        [entry] = await world.audit(agency_id=asker, outcome="refused")
        assert (entry.rule, entry.reason_code) == ("third-party-source", "withheld")
    # Probation, neither owner nor chair, moving it: the same 404 as for no action (a 403
    # would say that the action it cannot read exists)
    done = {"status": "done"}
    moved = await world[PROBATION].refused("POST", f"{path}/status", done)
    absent = await world[PROBATION].refused("POST", f"/v1/actions/{uuid.uuid4()}/status", done)
    assert moved.status == absent.status == 404
    assert {**moved.problem, "request_id": 0} == {**absent.problem, "request_id": 0}
    everything = repr([(e.detail, e.withheld) for e in await world.audit()])
    for needle in (SOURCED_ACTION, *THIRD_PARTY):
        assert needle not in everything


async def test_an_action_of_minutes_a_caveat_withholds_is_not_read(world: World) -> None:
    """Minutes for the Responsible Authority only: their action point is, to children's
    services (attended, and its owner), one that does not exist; to police it is read."""
    meeting_id = await _meeting(world, minuted=False)
    action_id = await _action(world, meeting_id, CS)
    caveated = minutes(caveats=["responsible-authority-only"])
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", caveated)
    path = f"/v1/actions/{action_id}"
    await _read(world, CS, path, None, 404, "caveat:responsible-authority-only")
    assert await _read(world, PROBATION, path, None, 200, "minutes-participant")


async def test_an_action_before_the_minutes_citing_a_source_is_withheld(world: World) -> None:
    """Before the minutes exist, a source an action cites is unknown: withheld (fail closed),
    even from the chair that wrote it; an action citing nothing is read."""
    meeting_id = await _meeting(world, minuted=False)
    sourced = await _action(world, meeting_id, CS, description=SOURCED_ACTION, source="s-x")
    plain = await _action(world, meeting_id, CS)
    await _read(world, POLICE, f"/v1/actions/{sourced}", None, 404, "third-party-source")
    assert await _read(world, CS, f"/v1/actions/{plain}", None, 200, "involved-action")


# ------------------------------------------------------------------- onward-disclosure requests


async def requested(world: World) -> str:
    """Children's services (attended) ask to share the conclusions with the CP conference."""
    meeting_id = await _meeting(world)
    asked = await world[CS].post(
        "/v1/disclosures", disclosure_request(meeting_id, CP_CONFERENCE, parts=["conclusions"])
    )
    request_id = asked["id"]
    assert isinstance(request_id, str)
    return request_id


async def approved(world: World) -> str:
    """The same, approved by the chair."""
    request_id = await requested(world)
    await world[POLICE].post(
        f"/v1/disclosures/{request_id}/decision",
        {"decision": "approve", "approved_parts": ["conclusions"], "reason": "s.47"},
    )
    return request_id


async def requested_level_changed(world: World) -> str:
    """Requested, then the level changed: the meeting's need ended for its participants."""
    request_id = await requested(world)
    meeting_id = (await world[POLICE].get(f"/v1/disclosures/{request_id}"))["meeting_id"]
    await _level_3(world, meeting_id)
    return request_id


CP_CONTEXT = ContextHeaders("CA1989-s47", "child-protection", "CP-1")
REQUESTER_OR_DECIDER = "onward-disclosure-requester-or-chair-or-coordinator"
DISCLOSURE_ROWS = [
    # The agency that asked reads its request while it takes part in the meeting.
    (requested, CS, None, 200, "minutes-participant", "onward-disclosure-requester"),
    # The chair agency may decide it.
    (requested, POLICE, None, 200, "minutes-participant", "chair-or-coordinator"),
    # The area's co-ordinator may decide it.
    (requested, MAPPA, None, 200, "minutes-mappa-coordinator", "chair-or-coordinator"),
    # Probation attended but neither asked nor decides.
    (requested, PROBATION, None, 404, REQUESTER_OR_DECIDER, None),
    # The recipient, once approved, is pushed what was approved; the request is not its.
    (approved, CP_CONFERENCE, CP_CONTEXT, 404, REQUESTER_OR_DECIDER, None),
    # The recipient before any approval may not know of the meeting at all.
    (requested, CP_CONFERENCE, CP_CONTEXT, 404, "default-deny", None),
    # Mental health was invited, not a participant of the minutes.
    (requested, MENTAL_HEALTH, None, 404, "default-deny", None),
    # The agency that asked, once the level changed: its part in the meeting ended.
    (requested_level_changed, CS, None, 404, "default-deny", None),
]


def _meeting_read(body: dict[str, Any], meeting_id: str) -> None:
    """The meeting and its participants, never the minutes."""
    assert set(body) == {
        "id", "nominal_id", "meeting_type", "level", "held_on", "status", "chair_agency_id",
        "participants",
    }  # fmt: skip
    assert (body["id"], body["meeting_type"], body["level"]) == (meeting_id, "level_2", 2)
    assert (body["held_on"], body["status"], body["chair_agency_id"]) == (
        TODAY.isoformat(),
        "minuted",
        POLICE,
    )
    assert {(p["agency_id"], p["participation"]) for p in body["participants"]} == {
        (POLICE, "attended"),
        (PROBATION, "attended"),
        (CS, "attended"),
        (HOUSING, "attended"),
        (JCP, "minutes_only"),
        (MENTAL_HEALTH, "invited"),
    }
    for needle in (DISCUSSION_TEXT, CONCLUSION_TEXT, "DI-2231", *THIRD_PARTY):
        assert needle not in repr(body)


def _action_read(body: dict[str, Any], action_id: str) -> None:
    """The action point: its meeting, owner, text, dates and status."""
    assert set(body) == {
        "id", "meeting_id", "nominal_id", "owner_agency_id", "description", "due_date", "status",
    }  # fmt: skip
    assert (body["id"], body["owner_agency_id"], body["description"]) == (
        action_id,
        JCP,
        ACTION_TEXT,
    )
    assert (body["due_date"], body["status"]) == (DUE, "open")


def _request_read(body: dict[str, Any], request_id: str) -> None:
    """The request's status; never the minutes, nor its reasons or recipient's description."""
    assert set(body) == {
        "id", "meeting_id", "nominal_id", "requesting_agency_id", "recipient_agency_id",
        "purpose", "requested_parts", "requested_at", "status",
    }  # fmt: skip
    assert (body["id"], body["status"], body["requesting_agency_id"]) == (request_id, "pending", CS)
    assert (body["recipient_agency_id"], body["purpose"], body["requested_parts"]) == (
        CP_CONFERENCE,
        "child-protection",
        ["conclusions"],
    )
    for needle in (CONCLUSION_TEXT, "s.47 enquiry", "Initial child protection conference"):
        assert needle not in repr(body)


READS = {"meetings": _meeting_read, "actions": _action_read, "disclosures": _request_read}
ROWS = [
    *[("meetings", *row, None) for row in MEETING_ROWS],
    *[("actions", *row, None) for row in ACTION_ROWS],
    *[("disclosures", *row) for row in DISCLOSURE_ROWS],
]


@pytest.mark.parametrize(
    ("kind", "setup", "asker", "context", "status", "rule", "reader"),
    ROWS,
    ids=[f"{row[0]}-{row[1].__name__}-{row[2]}-{row[4]}" for row in ROWS],
)
async def test_who_reads_what(
    any_world: World,
    kind: str,
    setup: Setup,
    asker: str,
    context: ContextHeaders | None,
    status: int,
    rule: str,
    reader: str | None,
) -> None:
    """The asker reads the meeting, action point or request (200) or gets the opaque 404; the
    audit entry names the rule either way (a request's read, who asked or decides, too)."""
    world = any_world
    ident = await setup(world)
    body = await _read(world, asker, f"/v1/{kind}/{ident}", context, status, rule)
    if body is None:
        return
    READS[kind](body, ident)
    entry = (await world.audit(agency_id=asker, outcome="allowed", operation="disclosure"))[-1]
    assert entry.detail.get("reader_rule") == reader


async def test_a_refused_request_reads_refused_with_nothing_approved(world: World) -> None:
    request_id = await requested(world)
    await world[MAPPA].post(
        f"/v1/disclosures/{request_id}/decision", {"decision": "refuse", "reason": "not needed"}
    )
    body = await world[CS].get(f"/v1/disclosures/{request_id}")
    assert (body["status"], body["approved_parts"]) == ("refused", [])
    assert body["decided_by"] == world[MAPPA].context.officer and body["decided_at"]


# ---------------------------------------------------------------------------------- hostile


def _without_request_id(response: httpx.Response) -> bytes:
    request_id = response.json()["request_id"]
    return response.content.replace(request_id.encode(), b"")


async def test_ids_of_another_kind_and_malformed_ids_are_404_as_an_unknown_id(
    world: World,
) -> None:
    """A meeting id where an action or a request goes, an action id where a meeting goes, a
    malformed id: the same bytes as an unknown id (the request id apart), audited as no such
    resource."""
    meeting_id = await _meeting(world)
    action_id = await _action(world, meeting_id, CS)
    police = world[POLICE]
    unknown = await police.raw("GET", f"/v1/meetings/{uuid.uuid4()}")
    assert unknown.status_code == 404
    expected = _without_request_id(unknown)
    for path in (
        f"/v1/actions/{meeting_id}",
        f"/v1/disclosures/{meeting_id}",
        f"/v1/meetings/{action_id}",
        f"/v1/disclosures/{action_id}",
        f"/v1/actions/{uuid.uuid4()}",
        f"/v1/disclosures/{uuid.uuid4()}",
        "/v1/meetings/" + "a" * 300,
        "/v1/actions/-bad-",
        "/v1/disclosures/%2e%2e",
    ):
        response = await police.raw("GET", path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == unknown.headers["content-type"]
        assert _without_request_id(response) == expected, path
    refusals = await world.audit(agency_id=POLICE, outcome="refused")
    assert len(refusals) == 10
    assert {e.rule for e in refusals} == {"resource-exists"}


async def test_a_404_for_a_meeting_one_may_not_know_is_that_of_an_unknown_one(
    world: World,
) -> None:
    """Housing, at no part in a meeting, gets exactly the unknown id's bytes for the meeting,
    its action point and its request; the audit names the refusing rules, never content."""
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id, {CS: "attended"})
    action_id = await _action(world, meeting_id, CS)
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    asked = await world[CS].post("/v1/disclosures", disclosure_request(meeting_id, CP_CONFERENCE))
    housing = world[HOUSING]
    for kind, known in (
        ("meetings", meeting_id),
        ("actions", action_id),
        ("disclosures", asked["id"]),
    ):
        unknown = await housing.raw("GET", f"/v1/{kind}/{uuid.uuid4()}")
        refused = await housing.raw("GET", f"/v1/{kind}/{known}")
        assert refused.status_code == unknown.status_code == 404
        assert _without_request_id(refused) == _without_request_id(unknown)
    entries = await world.audit(agency_id=HOUSING, outcome="refused")
    assert [e.rule for e in entries] == ["resource-exists", "default-deny"] * 3
    assert all(e.nominal_ref == nominal_id for e in entries[1::2])
    text = repr([(e.detail, e.withheld) for e in entries])
    for needle in (ACTION_TEXT, CONCLUSION_TEXT, THIRD_PARTY_TEXT):
        assert needle not in text


async def test_each_read_is_one_audited_disclosure_that_names_what_it_released(
    world: World,
) -> None:
    """One entry per read: a disclosure to the reader, its rule, the ids read, the answer's
    digest; the redaction's withheld fields by name and rule, never their values."""
    meeting_id = await _meeting(world)
    action_id = await _action(world, meeting_id, CS)
    asked = await world[CS].post("/v1/disclosures", disclosure_request(meeting_id, CP_CONFERENCE))
    before = len(await world.audit())
    cs = world[CS]
    await cs.get(f"/v1/meetings/{meeting_id}")
    await cs.get(f"/v1/actions/{action_id}")
    await cs.get(f"/v1/disclosures/{asked['id']}")
    entries = (await world.audit())[before:]
    assert [(e.agency_id, e.outcome, e.operation) for e in entries] == [
        (CS, "allowed", "disclosure")
    ] * 3
    meeting_read, action_read, request_read = entries
    assert (meeting_read.rule, meeting_read.record_refs) == ("involved-meeting", [meeting_id])
    assert meeting_read.detail["resource"] == "meeting"
    assert (action_read.rule, action_read.record_refs) == (
        "involved-action",
        [meeting_id, action_id],
    )
    assert ("sources[#2]", "third-party-source") in {
        (w["field"], w["rule"]) for w in action_read.withheld
    }
    assert request_read.record_refs == [meeting_id, asked["id"]]
    assert all(e.recipients == [CS] and e.payload_digest for e in entries)
    text = repr([(e.detail, e.withheld) for e in entries])
    for needle in (ACTION_TEXT, *THIRD_PARTY):
        assert needle not in text
