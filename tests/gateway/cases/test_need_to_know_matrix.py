"""Need-to-know through the HTTP API: agency type x role x involvement x category x level.

Each row sets a case up through the API (referral, screening, meetings, actions, level changes),
then one agency asks for the nominal with its own token. The answer is the nominal (opened with
the asker's key) or the opaque 404, and the audit entry names the rule either way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

import pytest

from adapters.client import ContextHeaders
from tests.gateway.cases.scenario import (
    CS,
    HOUSING,
    JCP,
    MAPPA,
    MENTAL_HEALTH,
    POLICE,
    PROBATION,
    VICTIM_SUPPORT,
    WILTS_POLICE,
    at_level_2,
    level_2_meeting,
    referred,
)
from tests.gateway.cases.support import TODAY, World

Setup = Callable[[World], Awaitable[str]]


async def level2_bare(world: World) -> str:
    """Screened to level 2; the referral closed at screening; no meeting yet."""
    return await at_level_2(world)


async def level2_open_referral(world: World) -> str:
    """Level 2 set by a level change, so the referral (naming probation and CS) is still open."""
    nominal_id = await referred(world)
    await world[POLICE].post(f"/v1/nominals/{nominal_id}/level", {"level": 2, "reason": "x"})
    return nominal_id


async def level2_meeting(world: World) -> str:
    """Level 2 with Barnet's usual meeting: probation, CS, housing attend; JCP minutes only;
    mental health invited."""
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    return nominal_id


async def level1_meeting(world: World) -> str:
    """Level 1 (screened out) with a level 1 professionals meeting that housing attended."""
    nominal_id = await referred(world)
    await world[POLICE].post(
        "/v1/meetings",
        {
            "nominal_id": nominal_id,
            "meeting_type": "level_1_professionals",
            "held_on": TODAY.isoformat(),
            "chair_officer": "DS-1",
            "participants": [{"agency_id": HOUSING, "participation": "attended"}],
            "confidentiality_statement_signed": True,
        },
    )
    return nominal_id


async def category4_meeting(world: World) -> str:
    """A category 4 (terrorism) nominal at level 2 whose meeting housing attended."""
    nominal_id = await at_level_2(world, category="M4")
    await level_2_meeting(world, nominal_id, {HOUSING: "attended"})
    return nominal_id


async def deregistered(world: World) -> str:
    nominal_id = await level2_meeting(world)
    await world[POLICE].post(f"/v1/nominals/{nominal_id}/deregistration", {"reason": "x"})
    return nominal_id


async def level_changed(world: World) -> str:
    """Level 2 meeting, then the RA moved the case to level 3."""
    nominal_id = await level2_meeting(world)
    await world[POLICE].post(f"/v1/nominals/{nominal_id}/level", {"level": "M3", "reason": "x"})
    return nominal_id


async def review_passed(world: World) -> str:
    """Level 2 meeting with a review date a week out; then nine days pass."""
    nominal_id = await at_level_2(world)
    await world[POLICE].post(
        "/v1/meetings",
        {
            "nominal_id": nominal_id,
            "meeting_type": "level_2",
            "held_on": TODAY.isoformat(),
            "review_date": (TODAY + dt.timedelta(days=7)).isoformat(),
            "chair_officer": "DI-1",
            "participants": [{"agency_id": HOUSING, "participation": "attended"}],
            "confidentiality_statement_signed": True,
        },
    )
    world.clock.advance(days=9)
    return nominal_id


async def action_owner_only(world: World) -> str:
    """JCP takes no part in the meeting but owns an open action point from it."""
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id, {PROBATION: "attended"})
    await world[POLICE].post(
        f"/v1/meetings/{meeting_id}/actions",
        {
            "owner_agency_id": JCP,
            "description": "Confirm benefit address",
            "due_date": (TODAY + dt.timedelta(days=14)).isoformat(),
        },
    )
    return nominal_id


OTHER_CONTRIBUTOR = ContextHeaders("CJA2003-s325-4A-c", "risk-assessment", "VS-9")

ROWS = [
    # The lead agency (the referring police force) sees its case.
    (level2_bare, POLICE, None, 200, "lead-agency"),
    # Probation is a Responsible Authority agency of the nominal's area.
    (level2_bare, PROBATION, None, 200, "responsible-authority-of-area"),
    # The MAPPA co-ordination unit counts as the Responsible Authority of its area.
    (level2_bare, MAPPA, None, 200, "responsible-authority-of-area"),
    # The Responsible Authority of another area has no need to know.
    (level2_bare, WILTS_POLICE, None, 404, "default-deny"),
    # A duty-to-co-operate agency with no involvement sees nothing.
    (level2_bare, HOUSING, None, 404, "default-deny"),
    # Named in the referral, but screening closed it: the involvement ended.
    (level2_bare, CS, None, 404, "default-deny"),
    # Named in a referral that is still open, at level 2.
    (level2_open_referral, CS, None, 200, "involved-referral"),
    # Attended the level 2 meeting.
    (level2_meeting, HOUSING, None, 200, "involved-meeting"),
    # Invited to the meeting (did not attend): still involved in the case.
    (level2_meeting, MENTAL_HEALTH, None, 200, "involved-meeting"),
    # Receives the minutes without attending (Jobcentre Plus in Barnet).
    (level2_meeting, JCP, None, 200, "involved-meeting"),
    # Level 1: other agencies see it through the monthly list only, meeting or not.
    (level1_meeting, HOUSING, None, 404, "default-deny"),
    # Level 1: the lead agency manages it and sees it.
    (level1_meeting, POLICE, None, 200, "lead-agency"),
    # Category 4: an agency type the policy does not name sees nothing, involved or not.
    (category4_meeting, HOUSING, None, 404, "category-4-named-agencies"),
    # Category 4: the MAPPA unit is not named either.
    (category4_meeting, MAPPA, None, 404, "category-4-named-agencies"),
    # Category 4: police of the nominal's area are named.
    (category4_meeting, POLICE, None, 200, "lead-agency"),
    # Deregistered: meeting involvement ends with the registration.
    (deregistered, HOUSING, None, 404, "default-deny"),
    # Deregistered: the lead-agency rule ends too; police see it as RA of the area.
    (deregistered, POLICE, None, 200, "responsible-authority-of-area"),
    # Level changed after the meeting: involvement granted at the old level ended.
    (level_changed, HOUSING, None, 404, "default-deny"),
    # The meeting's review date has passed: the involvement ended.
    (review_passed, HOUSING, None, 404, "default-deny"),
    # Owns an open action point of a meeting about the nominal.
    (action_owner_only, JCP, None, 200, "involved-action"),
    # s.325(4A)(c) contributor, but the RA recorded no such decision for this nominal.
    (level2_meeting, VICTIM_SUPPORT, OTHER_CONTRIBUTOR, 404, "other-contributor-recorded"),
]


@pytest.mark.parametrize(
    ("setup", "asker", "context", "status", "rule"),
    ROWS,
    ids=[f"{row[0].__name__}-{row[1]}-{row[3]}" for row in ROWS],
)
async def test_need_to_know_for_a_nominal(
    any_world: World,
    setup: Setup,
    asker: str,
    context: ContextHeaders | None,
    status: int,
    rule: str,
) -> None:
    """The asker sees the nominal (200) or gets the opaque 404; the audit names the rule."""
    world = any_world
    nominal_id = await setup(world)
    path = f"/v1/nominals/{nominal_id}"
    if status == 200:
        body = await world[asker].get(path, context=context)
        assert body["id"] == nominal_id
        entry = (await world.audit(agency_id=asker, outcome="allowed", operation="disclosure"))[-1]
    else:
        refused = await world[asker].refused("GET", path, context=context)
        assert refused.status == 404
        assert refused.code == "not_found"
        entry = (await world.audit(agency_id=asker, outcome="refused"))[-1]
        assert entry.reason_code == "no_need_to_know"
    assert entry.rule == rule
    assert entry.nominal_ref == nominal_id
    assert entry.policy_version


async def level2_open_referral_91_days_on(world: World) -> str:
    """Level 2 set by a level change, the referral never screened, 91 days later."""
    nominal_id = await level2_open_referral(world)
    world.clock.advance(days=91)
    return nominal_id


async def test_an_unscreened_referral_s_involvement_ends_after_ninety_days(
    any_world: World,
) -> None:
    """Children's services, named in a referral the RA never screened, saw the nominal for
    ever (a year on, still); its involvement now ends with the 90th day after the referral."""
    world = any_world
    nominal_id = await level2_open_referral_91_days_on(world)
    refused = await world[CS].refused("GET", f"/v1/nominals/{nominal_id}")
    assert refused.status == 404
    entry = (await world.audit(agency_id=CS, outcome="refused"))[-1]
    assert "open more than 90 days unscreened" in str(entry.detail)


RECORD_ROWS = [
    # The owner sees its own record whole, third-party source included.
    (PROBATION, "case_note", {"summary", "content", "sources", "risk", "officer"}, True),
    # The lead agency (police, RA) sees content but not the owner's third-party source.
    (POLICE, "case_note", {"summary", "content", "sources", "risk", "officer"}, False),
    # Housing (attended) gets the housing allow-list: no content, no sources, no officer.
    (HOUSING, "case_note", {"summary", "risk"}, False),
    # Children's services see content of a case note, without the third party.
    (CS, "case_note", {"summary", "content", "sources", "risk"}, False),
    # Children's services see only the summary of intelligence.
    (CS, "intelligence", {"summary"}, False),
    # Jobcentre Plus (minutes only) gets the minimal allow-list.
    (JCP, "case_note", {"summary", "risk"}, False),
]


@pytest.mark.parametrize(
    ("asker", "kind", "visible", "sees_third_party"),
    RECORD_ROWS,
    ids=[f"{r[0]}-{r[1]}" for r in RECORD_ROWS],
)
async def test_record_fields_per_recipient(
    any_world: World, asker: str, kind: str, visible: set[str], sees_third_party: bool
) -> None:
    """Each recipient gets its allow-list of a record; a third party only to the owner."""
    world = any_world
    from tests.gateway.cases.scenario import THIRD_PARTY_SOURCE, THIRD_PARTY_TEXT, record

    nominal_id = await level2_meeting(world)
    created = await world[PROBATION].post(f"/v1/nominals/{nominal_id}/records", record(kind=kind))
    body = await world[asker].get(f"/v1/nominals/{nominal_id}/records/{created['id']}")
    content_fields = {"summary", "content", "sources", "risk", "officer"}
    assert set(body) & content_fields == visible
    text = repr(body)
    assert (THIRD_PARTY_SOURCE in text) is sees_third_party
    assert (THIRD_PARTY_TEXT in text) is sees_third_party
    entry = (await world.audit(agency_id=asker, operation="disclosure"))[-1]
    withheld = {(w["field"], w["rule"]) for w in entry.withheld}
    if not sees_third_party and "sources" in visible:
        assert ("sources[#2]", "third-party-source") in withheld
        assert ("content[#2]", "third-party-source") in withheld
