"""Onward disclosure of minutes (THREATS.md, "Lawful basis and need-to-know"): a recipient
outside the meeting gets what the chair approved, and only that, on both backends."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from alembic import command
from sqlalchemy import update

from adapters.client import ContextHeaders
from gateway.store.migrate import alembic_config, upgrade
from gateway.store.models import AuditEntry, HeldNotification, OnwardDisclosureRequest
from tests.gateway.cases.scenario import (
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
    THIRD_PARTY_CONCLUSION,
    THIRD_PARTY_SOURCE,
    THIRD_PARTY_TEXT,
    VICTIM_SUPPORT,
    at_level_2,
    disclosure_request,
    level_2_meeting,
    minutes,
)
from tests.gateway.cases.support import TODAY, World

CP_CONTEXT = ("CA1989-s47", "child-protection")
#: What the chair adds to the meeting after an approval: never for the conference.
LATER_ACTION = "Covert deployment near the family home, not for disclosure"


async def _action(world: World, meeting_id: str, owner: str, description: str) -> str:
    made = await world[POLICE].post(
        f"/v1/meetings/{meeting_id}/actions",
        {"owner_agency_id": owner, "description": description, "due_date": TODAY.isoformat()},
    )
    action_id = made["id"]
    assert isinstance(action_id, str)
    return action_id


async def _asked(world: World, meeting_id: str, parts: list[str]) -> str:
    asked = await world[CS].post(
        "/v1/disclosures", disclosure_request(meeting_id, CP_CONFERENCE, parts=parts)
    )
    request_id = asked["id"]
    assert isinstance(request_id, str)
    return request_id


def _approve(parts: list[str]) -> dict[str, Any]:
    return {"decision": "approve", "approved_parts": parts, "reason": "s.47 enquiry"}


async def _refused_approval(
    world: World, decider: str, request_id: str, parts: list[str], reason: str
) -> AuditEntry:
    """``decider``'s approval of ``parts`` refused (409); its audit entry, by the reason."""
    refused = await world[decider].refused(
        "POST", f"/v1/disclosures/{request_id}/decision", _approve(parts)
    )
    assert refused.status == 409
    [entry] = [
        e
        for e in await world.audit(agency_id=decider, outcome="refused")
        if e.detail.get("reason") == reason
    ]
    return entry


async def _read(world: World, meeting_id: str) -> dict[str, Any]:
    conference = world[CP_CONFERENCE]
    return await conference.get(
        f"/v1/meetings/{meeting_id}/minutes", context=conference.with_context(*CP_CONTEXT)
    )


async def _actions_approved(world: World) -> tuple[str, str, str]:
    """A level 2 meeting with its minutes and one action point, and an approval of its
    conclusions and whole "actions" to the conference: the meeting, the action, the request."""
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    first = await _action(world, meeting_id, CS, "Children's services to check ICS")
    request_id = await _asked(world, meeting_id, ["conclusions", "actions"])
    await world[POLICE].post(
        f"/v1/disclosures/{request_id}/decision", _approve(["conclusions", "actions"])
    )
    return meeting_id, first, request_id


async def test_approved_actions_are_those_of_the_decision_not_later_ones(any_world: World) -> None:
    """The chair approves "actions" when the meeting has one; an action added afterwards is
    neither pushed nor readable by the recipient: the approval is recorded as the actions it
    covered then, and the push and every later read agree."""
    world = any_world
    meeting_id, first, _ = await _actions_approved(world)
    [pushed] = await world.pushed(CP_CONFERENCE, "onward_disclosure")
    shared = pushed["onward_disclosure"]
    assert [a["id"] for a in shared["actions"]] == [first]
    assert [c["text"] for c in shared["conclusions"]] == [CONCLUSION_TEXT]

    world.clock.advance(minutes=5)
    later = await _action(world, meeting_id, POLICE, LATER_ACTION)
    read = await _read(world, meeting_id)
    assert read == shared
    assert later not in repr(read) and LATER_ACTION not in repr(read)
    assert await world.pushed(CP_CONFERENCE, "onward_disclosure") == [pushed]
    # The audit of the decision names what the recipient may see: the action, by id.
    [entry] = [
        e
        for e in await world.audit(operation="disclosure")
        if e.recipients == [CP_CONFERENCE] and e.detail.get("delivery") == "outbox"
    ]
    assert entry.detail["approved_parts"] == ["conclusions", f"actions/{first}"]


async def test_an_approval_of_actions_alone_before_any_action_is_refused(any_world: World) -> None:
    """An approval of the whole of "actions" while the meeting has none would approve nothing
    now and everything later: it is refused (409), nothing is decided or sent, and the chair
    may decide again once there are actions."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    request_id = await _asked(world, meeting_id, ["actions"])
    await _refused_approval(world, POLICE, request_id, ["actions"], "nothing_to_disclose")
    assert await world.pushed(CP_CONFERENCE) == []
    conference = world[CP_CONFERENCE]
    unread = await conference.refused(
        "GET", f"/v1/meetings/{meeting_id}/minutes", context=conference.with_context(*CP_CONTEXT)
    )
    assert unread.status == 404

    action_id = await _action(world, meeting_id, CS, "Children's services to check ICS")
    await world[POLICE].post(f"/v1/disclosures/{request_id}/decision", _approve(["actions"]))
    [pushed] = await world.pushed(CP_CONFERENCE, "onward_disclosure")
    assert [a["id"] for a in pushed["onward_disclosure"]["actions"]] == [action_id]
    assert await _read(world, meeting_id) == pushed["onward_disclosure"]


async def _convened(world: World, review_date: dt.date | None = None) -> tuple[str, str]:
    """A level 2 nominal and a meeting about it (police chair, children's services attend)
    with its minutes; the nominal's and the meeting's ids."""
    nominal_id = await at_level_2(world)
    convened = await world[POLICE].post(
        "/v1/meetings",
        {
            "nominal_id": nominal_id,
            "meeting_type": "level_2",
            "held_on": TODAY.isoformat(),
            "review_date": review_date.isoformat() if review_date else None,
            "chair_officer": "DI-2231",
            "participants": [
                {"agency_id": PROBATION, "participation": "attended"},
                {"agency_id": CS, "participation": "attended"},
                {"agency_id": HOUSING, "participation": "attended"},
            ],
            "confidentiality_statement_signed": True,
        },
    )
    meeting_id = convened["id"]
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    return nominal_id, meeting_id


async def _refusal_of_read(world: World, meeting_id: str) -> str:
    """The conference's read of the minutes is 404; the audit's reasons for it, as text."""
    conference = world[CP_CONFERENCE]
    refused = await conference.refused(
        "GET", f"/v1/meetings/{meeting_id}/minutes", context=conference.with_context(*CP_CONTEXT)
    )
    assert refused.status == 404
    entries = await world.audit(agency_id=CP_CONFERENCE, outcome="refused")
    assert entries and entries[-1].reason_code == "no_need_to_know"
    return repr(entries[-1].detail)


async def test_an_onward_disclosure_ends_when_the_level_changes(any_world: World) -> None:
    """A level change after the meeting ends the participants' access to its minutes, and the
    onward-disclosure recipient's with it: the next read is 404, audited with the reason."""
    world = any_world
    nominal_id, meeting_id = await _convened(world)
    request_id = await _asked(world, meeting_id, ["conclusions"])
    await world[POLICE].post(f"/v1/disclosures/{request_id}/decision", _approve(["conclusions"]))
    assert [c["text"] for c in (await _read(world, meeting_id))["conclusions"]] == [CONCLUSION_TEXT]
    world.clock.advance(minutes=5)
    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/level", {"level": 3, "reason": "Escalated to level 3"}
    )
    assert (await world[HOUSING].refused("GET", f"/v1/meetings/{meeting_id}/minutes")).status == (
        404
    )
    why = await _refusal_of_read(world, meeting_id)
    assert f"onward disclosure {request_id} ended" in why and "level changed" in why


async def test_an_onward_disclosure_ends_after_the_meetings_review_date(any_world: World) -> None:
    """The recipient reads the approved parts to the end of the meeting's review date, and not
    the day after, as a participant does."""
    world = any_world
    review = TODAY + dt.timedelta(days=14)
    _, meeting_id = await _convened(world, review_date=review)
    request_id = await _asked(world, meeting_id, ["conclusions"])
    await world[POLICE].post(f"/v1/disclosures/{request_id}/decision", _approve(["conclusions"]))
    world.clock.advance(days=14)  # the review date, in the morning
    assert (await _read(world, meeting_id))["conclusions"]
    world.clock.advance(days=1)
    why = await _refusal_of_read(world, meeting_id)
    assert f"the review date {review.isoformat()} has passed" in why


async def test_an_approval_after_the_meetings_need_ended_is_refused(any_world: World) -> None:
    """Once the meeting's need has ended (here, a level change; the chair, a participant, no
    longer sees the minutes, the MAPPA co-ordinator does) an approval would give the recipient
    what it may not keep: 409, nothing sent, the request still pending."""
    world = any_world
    nominal_id, meeting_id = await _convened(world)
    request_id = await _asked(world, meeting_id, ["conclusions"])
    world.clock.advance(minutes=5)
    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/level", {"level": 3, "reason": "Escalated to level 3"}
    )
    refused = await world[MAPPA].refused(
        "POST", f"/v1/disclosures/{request_id}/decision", _approve(["conclusions"])
    )
    assert refused.status == 409
    assert await world.pushed(CP_CONFERENCE) == []
    [entry] = [
        e
        for e in await world.audit(agency_id=MAPPA, outcome="refused")
        if e.detail.get("reason") == "recipient_may_not_know"
    ]
    assert "level changed" in repr(entry.detail)


async def test_minutes_a_caveat_withholds_are_neither_pushed_nor_read(any_world: World) -> None:
    """Minutes for the Responsible Authority only: the duty-to-co-operate participants are
    pushed nothing (not an empty shell that says the minutes exist) and their read is 404,
    audited with the caveat; probation, of the RA, gets and reads them."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    written = await world[POLICE].post(
        f"/v1/meetings/{meeting_id}/minutes", minutes(caveats=["responsible-authority-only"])
    )
    for agency_id in (CS, HOUSING, JCP):
        assert await world.pushed(agency_id, "minutes") == [], agency_id
        refused = await world[agency_id].refused("GET", f"/v1/meetings/{meeting_id}/minutes")
        assert refused.status == 404
        entry = (await world.audit(agency_id=agency_id, outcome="refused"))[-1]
        assert entry.reason_code == "caveat"
        assert entry.rule == "caveat:responsible-authority-only"
        assert entry.record_refs == [meeting_id, written["id"]]
    [pushed] = await world.pushed(PROBATION, "minutes")
    assert DISCUSSION_TEXT in repr(pushed["minutes"])
    read = await world[PROBATION].get(f"/v1/meetings/{meeting_id}/minutes")
    assert DISCUSSION_TEXT in repr(read)
    [circulated] = [e for e in await world.audit(agency_id=POLICE) if "circulated_to" in e.detail]
    assert circulated.detail["circulated_to"] == [PROBATION]
    # who was sent nothing, and why, is in the write's own entry (it was not)
    not_sent = {item["agency"]: item for item in circulated.detail["not_sent"]}
    assert set(not_sent) == {CS, HOUSING, JCP}
    assert {item["rule"] for item in not_sent.values()} == {"caveat:responsible-authority-only"}


@pytest.mark.parametrize("caveat", ["no-onward-disclosure", "not-for-child-protection-conference"])
async def test_an_approval_of_minutes_a_caveat_keeps_from_the_recipient_is_refused(
    any_world: World, caveat: str
) -> None:
    """Minutes whose caveat forbids this onward disclosure leave nothing to approve: the
    co-ordinator's approval is 409, audited with the caveat; nothing is pushed, the minutes'
    author is not told of a disclosure that did not happen, and the recipient reads nothing."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes(caveats=[caveat]))
    request_id = await _asked(world, meeting_id, ["conclusions"])
    entry = await _refused_approval(world, MAPPA, request_id, ["conclusions"], "withheld_by_caveat")
    assert entry.rule == f"caveat:{caveat}"
    assert await world.pushed(CP_CONFERENCE) == []
    assert await world.pushed(POLICE, "owner_notification") == []
    assert await world.count(HeldNotification) == 0
    conference = world[CP_CONFERENCE]
    unread = await conference.refused(
        "GET", f"/v1/meetings/{meeting_id}/minutes", context=conference.with_context(*CP_CONTEXT)
    )
    assert unread.status == 404


async def test_a_purpose_no_legal_basis_opens_to_the_recipient_is_refused(
    any_world: World,
) -> None:
    """s.327A public disclosure to a mental health trust: no basis in the register lets a mental
    health trust receive information for that purpose, so the request is 422 and nothing is
    stored (it was approved and pushed, audited as that purpose under the chair's basis)."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    before = await world.count(OnwardDisclosureRequest)
    refused = await world[CS].refused(
        "POST",
        "/v1/disclosures",
        disclosure_request(meeting_id, recipient=MENTAL_HEALTH, purpose="public-disclosure"),
    )
    assert refused.status == 422
    assert refused.problem["errors"] == [
        {"loc": ["purpose"], "type": "purpose_not_open_to_recipient"}
    ]
    assert await world.count(OnwardDisclosureRequest) == before
    assert await world.pushed(MENTAL_HEALTH, "onward_disclosure") == []


# -- to an s.325(4A)(c) contributor: only for the purposes the RA recorded -------------------

#: Victim support's own call under s.325(4A)(c), for the purpose the RA's decision names.
CONTRIBUTING = ContextHeaders("CJA2003-s325-4A-c", "risk-assessment", "VS-1")


async def _contributor_case(world: World, purposes: list[str] | None) -> tuple[str, str, str]:
    """A level 2 nominal, the RA's decision that victim support could contribute on it for
    ``purposes`` (None: no decision), and a meeting victim support takes no part in, with its
    minutes: the nominal's, the meeting's and the decision's ids."""
    nominal_id = await at_level_2(world)
    decision_id = ""
    if purposes is not None:
        recorded = await world[POLICE].post(
            f"/v1/nominals/{nominal_id}/contributors",
            {
                "agency_id": VICTIM_SUPPORT,
                "purposes": purposes,
                "reason": "Victim liaison for the former partner",
                "ends_on": (TODAY + dt.timedelta(days=30)).isoformat(),
            },
        )
        decision_id = recorded["id"]
    meeting_id = await level_2_meeting(world, nominal_id)
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    return nominal_id, meeting_id, decision_id


def _to_victim_support(meeting_id: str, purpose: str) -> dict[str, Any]:
    return disclosure_request(
        meeting_id,
        VICTIM_SUPPORT,
        purpose=purpose,
        parts=["conclusions"],
        recipient_description="Victim liaison",
        reasons="Safety planning for the former partner",
    )


@pytest.mark.parametrize(
    ("purposes", "asked_for"),
    [
        (["risk-assessment"], "mappa-meeting"),  # a purpose of the basis, not of the decision
        (["risk-assessment"], "risk-management"),
        (None, "risk-assessment"),  # no decision names victim support
    ],
    ids=["mappa-meeting", "risk-management", "no-decision"],
)
async def test_a_request_to_a_contributor_beyond_its_recorded_purposes_is_refused(
    any_world: World, purposes: list[str] | None, asked_for: str
) -> None:
    """An onward disclosure to an s.325(4A)(c) contributor for a purpose the RA's decision
    does not name (or with no decision at all) has no lawful basis. Police, the RA, which sees
    the decisions, is told so at once: 422, nothing stored. Children's services, which may not
    see them, is answered as for a purpose a decision covers (its answer would otherwise say
    whether the RA recorded one, and what for): the request is pending, and the chair's
    approval is refused, 409. Either way nothing is pushed, and victim support reads nothing
    of the minutes."""
    world = any_world
    _, meeting_id, _ = await _contributor_case(world, purposes)
    before = await world.count(OnwardDisclosureRequest)
    refused = await world[POLICE].refused(
        "POST", "/v1/disclosures", _to_victim_support(meeting_id, asked_for)
    )
    assert refused.status == 422
    assert refused.problem["errors"] == [
        {"loc": ["purpose"], "type": "purpose_not_open_to_recipient"}
    ]
    assert await world.count(OnwardDisclosureRequest) == before
    asked = await world[CS].post("/v1/disclosures", _to_victim_support(meeting_id, asked_for))
    assert asked["status"] == "pending"
    await _refused_approval(
        world, POLICE, asked["id"], ["conclusions"], "purpose_not_open_to_recipient"
    )
    assert await world.pushed(VICTIM_SUPPORT, "onward_disclosure") == []
    unread = await world[VICTIM_SUPPORT].refused(
        "GET", f"/v1/meetings/{meeting_id}/minutes", context=CONTRIBUTING
    )
    assert unread.status == 404


async def test_a_request_to_a_contributor_does_not_say_whether_the_ra_recorded_a_decision(
    any_world: World,
) -> None:
    """Children's services (a participant, which may not see the RA's s.325(4A)(c) decisions:
    403 on their list) asks to share with victim support for a purpose the RA's decision
    covers and for one it does not: the two answers are alike. The requests' audit entries,
    for IG, say which one a decision covered."""
    world = any_world
    nominal_id, meeting_id, _ = await _contributor_case(world, ["risk-assessment"])
    listed = await world[CS].refused("GET", f"/v1/nominals/{nominal_id}/contributors")
    assert listed.status == 403
    covered = await world[CS].post(
        "/v1/disclosures", _to_victim_support(meeting_id, "risk-assessment")
    )
    uncovered = await world[CS].post(
        "/v1/disclosures", _to_victim_support(meeting_id, "mappa-meeting")
    )
    assert {**covered, "id": 0} == {**uncovered, "id": 0}
    entries = [
        entry
        for entry in await world.audit(agency_id=CS, outcome="allowed")
        if entry.detail.get("resource") == "onward_disclosure_request"
    ]
    assert [("recipient_contributor_decision" in e.detail) for e in entries] == [True, False]


@pytest.mark.parametrize("change", ["revoked", "purpose-changed"])
async def test_an_approval_to_a_contributor_whose_decision_no_longer_covers_it_is_refused(
    any_world: World, change: str
) -> None:
    """Asked while the RA's decision covers the purpose; by the chair's decision it does not
    (the RA revoked it, or the request's purpose is one the decision does not name): 409
    audited as such, nothing pushed, the request still pending."""
    world = any_world
    nominal_id, meeting_id, decision_id = await _contributor_case(world, ["risk-assessment"])
    asked = await world[CS].post(
        "/v1/disclosures", _to_victim_support(meeting_id, "risk-assessment")
    )
    if change == "revoked":
        await world[POLICE].post(
            f"/v1/nominals/{nominal_id}/contributors/{decision_id}/revocation",
            {"reason": "Safety plan closed"},
        )
    else:
        async with world.state.db.write() as session:
            await session.execute(
                update(OnwardDisclosureRequest)
                .where(OnwardDisclosureRequest.id == asked["id"])
                .values(purpose="mappa-meeting")
            )
    await _refused_approval(
        world, POLICE, asked["id"], ["conclusions"], "purpose_not_open_to_recipient"
    )
    assert await world.pushed(VICTIM_SUPPORT, "onward_disclosure") == []
    async with world.state.db.read() as session:
        row = await session.get(OnwardDisclosureRequest, asked["id"])
        assert row is not None and str(row.status) == "pending"


async def test_a_contributor_receives_only_the_approved_parts_for_its_recorded_purpose(
    any_world: World,
) -> None:
    """The RA's decision names risk assessment; the conclusions are asked for and approved
    for it: victim support is pushed the conclusions (not the one citing the victim), never
    the discussion, sources or plan; reads the same under its decision; the decision's audit
    entry names the s.325(4A)(c) decision it received under."""
    world = any_world
    _, meeting_id, decision_id = await _contributor_case(world, ["risk-assessment"])
    asked = await world[CS].post(
        "/v1/disclosures", _to_victim_support(meeting_id, "risk-assessment")
    )
    [request_entry] = [
        e
        for e in await world.audit(agency_id=CS, outcome="allowed")
        if e.detail.get("resource") == "onward_disclosure_request"
    ]
    assert request_entry.detail["recipient_contributor_decision"] == decision_id
    await world[POLICE].post(f"/v1/disclosures/{asked['id']}/decision", _approve(["conclusions"]))
    [pushed] = await world.pushed(VICTIM_SUPPORT, "onward_disclosure")
    shared = pushed["onward_disclosure"]
    assert [c["text"] for c in shared["conclusions"]] == [CONCLUSION_TEXT]
    assert set(shared) <= {"meeting_id", "held_on", "marking", "conclusions"}
    for absent in (DISCUSSION_TEXT, THIRD_PARTY_CONCLUSION, THIRD_PARTY_SOURCE, THIRD_PARTY_TEXT):
        assert absent not in repr(shared)
    read = await world[VICTIM_SUPPORT].get(
        f"/v1/meetings/{meeting_id}/minutes", context=CONTRIBUTING
    )
    assert read == shared
    [entry] = [
        e
        for e in await world.audit(operation="disclosure", agency_id=POLICE)
        if e.recipients == [VICTIM_SUPPORT] and e.detail.get("resource") == "minutes"
    ]
    assert entry.purpose == "risk-assessment"
    assert "CJA2003-s325-4A-c" in entry.detail["recipient_bases"]
    assert entry.detail["recipient_contributor_decision"] == decision_id


async def test_migration_0013_names_the_actions_an_old_approval_covered(
    any_world: World,
) -> None:
    """An approval stored before the fix says "actions" and released later actions on every
    read; migration 0013 rewrites it as the actions the meeting had when the chair decided, so
    the later one is no longer read."""
    world = any_world
    meeting_id, first, request_id = await _actions_approved(world)
    async with world.state.db.write() as session:  # as the gateway stored it before the fix
        await session.execute(
            update(OnwardDisclosureRequest)
            .where(OnwardDisclosureRequest.id == request_id)
            .values(approved_parts=["conclusions", "actions"])
        )
    world.clock.advance(minutes=5)
    later = await _action(world, meeting_id, POLICE, LATER_ACTION)
    assert later in repr(await _read(world, meeting_id))  # the old approval's leak

    url = world.state.settings.database_url
    await asyncio.to_thread(command.downgrade, alembic_config(url), "0012")
    await asyncio.to_thread(upgrade, url)

    async with world.state.db.read() as session:
        stored = await session.get(OnwardDisclosureRequest, request_id)
        assert stored is not None
        assert stored.approved_parts == ["conclusions", f"actions/{first}"]
    read = await _read(world, meeting_id)
    assert [a["id"] for a in read["actions"]] == [first]
    assert later not in repr(read)
