"""Seed 004, Barnet's MAPPA flow, walked through the API by each agency's own case system.

Screening sets level 2; the level 2 meeting (chaired by police, attended by probation, mental
health, Barnet Housing and children's services' Conference & Review Team Manager); minutes to
the attendees and to Jobcentre Plus, which receives minutes without attending, and to nobody
else; a hazard flag on the children's services record with no details; and the conclusions and
action points, with no third party, to a child protection conference once the chair approves.
Jobcentre Plus reads back the meeting, children's services the action it owns and, pending then
approved by the chair, its request to share the minutes with the conference.
"""

from __future__ import annotations

import datetime as dt

from tests.gateway.cases.scenario import (
    ACTION_TEXT,
    CHILD_REF,
    CONCLUSION_TEXT,
    CP_CONFERENCE,
    CS,
    DATE_OF_BIRTH,
    DISCUSSION_TEXT,
    FAMILY_NAME,
    HOUSING,
    JCP,
    MENTAL_HEALTH,
    POLICE,
    PROBATION,
    THIRD_PARTY,
    minutes,
    referral,
)
from tests.gateway.cases.support import TODAY, World

EDUCATION = "barnet-education"
CP_CONTEXT = ("CA1989-s47", "child-protection")
CS_FLAG_CONTEXT = ("CA2004-s11", "safeguarding")


async def test_barnet_flow_from_referral_to_child_protection_conference(world: World) -> None:
    """Seed 004 end to end: who receives what, and what each receipt leaves out."""
    await world.register(EDUCATION, "education", "duty_to_cooperate")
    police, probation, cs, jcp = world[POLICE], world[PROBATION], world[CS], world[JCP]

    # Probation refers; police (the Responsible Authority for the case) will lead.
    referred = await probation.post(
        "/v1/referrals", referral(lead_agency_id=POLICE, agencies_involved=[CS])
    )
    nominal_id = referred["nominal_id"]
    assert referred["status"] == "received"
    assert (await police.get(f"/v1/nominals/{nominal_id}"))["level"] == 1

    # Monthly screening: DI (police) and senior probation officer; it sets level 2.
    screening = await police.post(
        "/v1/meetings",
        {
            "nominal_id": nominal_id,
            "meeting_type": "screening",
            "held_on": TODAY.isoformat(),
            "chair_officer": "DI-0412",
            "participants": [{"agency_id": PROBATION, "participation": "attended"}],
            "confidentiality_statement_signed": True,
        },
    )
    screened = await police.post(
        f"/v1/nominals/{nominal_id}/screening",
        {"outcome": "level_2", "meeting_id": screening["id"], "reasons": "Active risk to children"},
    )
    assert screened["level"] == 2

    # The level 2 meeting, second Thursday at Hendon.
    held_on = TODAY + dt.timedelta(days=(3 - TODAY.weekday()) % 7 + 7)
    world.clock.now = dt.datetime.combine(held_on, dt.time(14), dt.UTC)
    meeting = await police.post(
        "/v1/meetings",
        {
            "nominal_id": nominal_id,
            "meeting_type": "level_2",
            "held_on": held_on.isoformat(),
            "review_date": (held_on + dt.timedelta(days=28)).isoformat(),
            "chair_officer": "DI-0412",
            "participants": [
                {"agency_id": PROBATION, "participation": "attended"},
                {"agency_id": MENTAL_HEALTH, "participation": "attended"},
                {"agency_id": HOUSING, "participation": "attended"},
                {"agency_id": CS, "participation": "attended"},
                {"agency_id": JCP, "participation": "minutes_only"},
            ],
            "confidentiality_statement_signed": True,
        },
    )
    meeting_id = meeting["id"]
    action = await police.post(
        f"/v1/meetings/{meeting_id}/actions",
        {
            "owner_agency_id": CS,
            "description": ACTION_TEXT,
            "due_date": (held_on + dt.timedelta(days=7)).isoformat(),
        },
    )
    circulated = await police.post(f"/v1/meetings/{meeting_id}/minutes", minutes(apologies=[]))
    assert circulated["status"] == "circulated"

    # Jobcentre Plus reads back the meeting it receives minutes of; children's services the
    # action point it owns; neither meeting nor action says anything of the minutes' content.
    read_back = await jcp.get(f"/v1/meetings/{meeting_id}")
    assert (read_back["status"], read_back["chair_agency_id"]) == ("minuted", POLICE)
    assert {"agency_id": JCP, "participation": "minutes_only"} in read_back["participants"]
    own_action = await cs.get(f"/v1/actions/{action['id']}")
    assert (own_action["description"], own_action["owner_agency_id"]) == (ACTION_TEXT, CS)
    for needle in (DISCUSSION_TEXT, CONCLUSION_TEXT, *THIRD_PARTY):
        assert needle not in repr([read_back, own_action])

    # Minutes to attendees and to Jobcentre Plus only.
    minutes_to = {row.recipient_agency_id for row in await world.outbox() if row.kind == "minutes"}
    assert minutes_to == {PROBATION, MENTAL_HEALTH, HOUSING, CS, JCP}
    [jcp_copy] = await world.pushed(JCP, "minutes")
    assert DISCUSSION_TEXT in repr(jcp_copy["minutes"])
    assert JCP in jcp_copy["minutes"]["minutes_only_recipients"]
    assert (await jcp.get(f"/v1/meetings/{meeting_id}/minutes"))["meeting_id"] == meeting_id
    assert (
        await world[EDUCATION].refused("GET", f"/v1/meetings/{meeting_id}/minutes")
    ).status == 404
    for recipient in minutes_to:
        for copy in await world.pushed(recipient, "minutes"):
            for needle in THIRD_PARTY:
                assert needle not in repr(copy), (recipient, needle)
    disclosures = [
        e
        for e in await world.audit(operation="disclosure")
        if e.detail.get("resource") == "minutes"
    ]
    assert {e.recipients[0] for e in disclosures} == minutes_to
    assert all(len(e.recipients) == 1 and e.payload_digest for e in disclosures)

    # Children's services: the HZD flag on the family's ICS record, with no details.
    flagged = await police.post(
        "/v1/hazard-flags",
        {
            "nominal_id": nominal_id,
            "recipient_agency_id": CS,
            "child_or_family_ref": CHILD_REF,
            "relationship": "father",
            "contact": {"role": "mappa_unit", "telephone": "020 8000 0000"},
        },
    )
    [flag] = await world.pushed(CS, "hazard_flag")
    assert flag["flag_id"] == flagged["id"]
    assert set(flag["hazard_flag"]) == {
        "child_or_family_ref",
        "flag",
        "relationship",
        "statement",
        "contact",
    }
    assert flag["hazard_flag"]["statement"] == "known to MAPPA"
    for needle in (FAMILY_NAME, DATE_OF_BIRTH, ACTION_TEXT, DISCUSSION_TEXT, *THIRD_PARTY):
        assert needle not in repr(flag)

    # Onward disclosure: children's services ask for the conclusions and action points to go
    # to the child protection conference; the chair (police) approves.
    asked = await cs.post(
        "/v1/disclosures",
        {
            "meeting_id": meeting_id,
            "recipient_agency_id": CP_CONFERENCE,
            "purpose": "child-protection",
            "parts": ["conclusions", "actions"],
            "recipient_description": "Initial child protection conference, household of ICS-FAM",
            "reasons": "The household's children are subject to a s.47 enquiry",
        },
    )
    assert asked["status"] == "pending"
    assert await world.pushed(CP_CONFERENCE) == []
    assert (await cs.get(f"/v1/disclosures/{asked['id']}"))["status"] == "pending"
    # Only the chair or the co-ordinator decides: probation, which did not ask, may not even
    # know of the request (the 404 of its read); children's services, which asked, is refused.
    for agent, status in ((probation, 404), (cs, 403)):
        assert (
            await agent.refused(
                "POST",
                f"/v1/disclosures/{asked['id']}/decision",
                {"decision": "approve", "approved_parts": ["conclusions"], "reason": "x"},
            )
        ).status == status
    # Never more than was asked for.
    assert (
        await police.refused(
            "POST",
            f"/v1/disclosures/{asked['id']}/decision",
            {"decision": "approve", "approved_parts": ["conclusions", "discussion"], "reason": "x"},
        )
    ).status == 422
    decided = await police.post(
        f"/v1/disclosures/{asked['id']}/decision",
        {"decision": "approve", "approved_parts": ["conclusions", "actions"], "reason": "s.47"},
    )
    assert decided["status"] == "approved"
    # Children's services read their request back: approved by the chair's officer, exactly
    # what was approved, never the minutes themselves.
    status = await cs.get(f"/v1/disclosures/{asked['id']}")
    assert status["status"] == "approved"
    assert status["approved_parts"] == ["conclusions", f"actions/{action['id']}"]
    assert status["decided_by"] == police.context.officer and status["decided_at"]
    assert status["recipient_agency_id"] == CP_CONFERENCE
    for needle in (CONCLUSION_TEXT, ACTION_TEXT, DISCUSSION_TEXT):
        assert needle not in repr(status)
    [onward] = await world.pushed(CP_CONFERENCE, "onward_disclosure")
    shared = onward["onward_disclosure"]
    assert set(shared) == {"meeting_id", "held_on", "marking", "conclusions", "actions"}
    assert [c["text"] for c in shared["conclusions"]] == [CONCLUSION_TEXT]
    assert [a["id"] for a in shared["actions"]] == [action["id"]]
    for needle in (*THIRD_PARTY, DISCUSSION_TEXT, FAMILY_NAME, DATE_OF_BIRTH):
        assert needle not in repr(onward)
    conference = world[CP_CONFERENCE]
    again = await conference.get(
        f"/v1/meetings/{meeting_id}/minutes", context=conference.with_context(*CP_CONTEXT)
    )
    assert again == shared
    [entry] = [
        e
        for e in await world.audit(operation="disclosure")
        if e.recipients == [CP_CONFERENCE] and e.detail.get("delivery") == "outbox"
    ]
    assert entry.rule == "onward-disclosure-approved"
    assert entry.purpose == "child-protection"
    assert ("discussion", "onward-disclosure-approved-parts") in {
        (w["field"], w["rule"]) for w in entry.withheld
    }
    # The decision cannot be taken twice.
    assert (
        await police.refused(
            "POST",
            f"/v1/disclosures/{asked['id']}/decision",
            {"decision": "refuse", "reason": "changed mind"},
        )
    ).status == 409
    # The flag's recipient reads the flag; nobody else learns of it.
    seen = await cs.get(
        f"/v1/hazard-flags/{flagged['id']}", context=cs.with_context(*CS_FLAG_CONTEXT)
    )
    assert seen == flag["hazard_flag"]
    assert (await world[HOUSING].refused("GET", f"/v1/hazard-flags/{flagged['id']}")).status == 404
