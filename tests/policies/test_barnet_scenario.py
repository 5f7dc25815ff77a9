"""Seed 004's Barnet flow through the policy core, from referral to child protection conference.

Referral, screening to level 2, the level 2 meeting, minutes to attendees and to Jobcentre Plus,
the children's services hazard flag, and an onward disclosure approved by the chair.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.domain import AgencyType, Level, MeetingType, Participation, Role
from policies import (
    HazardFlagTarget,
    MinutesTarget,
    NoNeedToKnow,
    Resource,
    View,
    approved_view,
    check,
    decide,
    redact,
)
from tests.policies.policies_support import (
    NOW,
    agency,
    context,
    disclosure,
    facts,
    meeting,
    nominal,
    referral,
)

PROBATION = agency(AgencyType.PROBATION, agency_id="probation-barnet")
POLICE = agency(AgencyType.POLICE)
HOUSING = agency(AgencyType.HOUSING)
MENTAL_HEALTH = agency(AgencyType.MENTAL_HEALTH)
CSC = agency(AgencyType.CHILDRENS_SERVICES)
JCP = agency(AgencyType.JOBCENTRE_PLUS)
SCREENED_AT = NOW - dt.timedelta(days=20)
L2_HELD = (NOW - dt.timedelta(days=10)).date()
L2_REVIEW = L2_HELD + dt.timedelta(days=90)
REFERRED = nominal(1, 1, lead=PROBATION.id)
LEVEL_2 = nominal(1, 2, lead=PROBATION.id, level_changed_at=SCREENED_AT)
THIRD_PARTY = "the neighbour at No 4 saw the children visiting"
MINUTES: dict[str, Any] = {
    "meeting_id": "meet-1", "nominal_id": "nom-1", "meeting_type": "level_2",
    "held_on": L2_HELD.isoformat(), "chair": PROBATION.id, "marking": "OFFICIAL-SENSITIVE",
    "attendees": [POLICE.id, PROBATION.id, HOUSING.id, CSC.id, MENTAL_HEALTH.id],
    "minutes_only_recipients": [JCP.id],
    "sources": [{"id": "s1", "third_party": True, "originator_agency_id": POLICE.id,
                 "text": THIRD_PARTY}],
    "discussion": [{"id": "d1", "text": "Police intelligence discussed", "source": "s1"}],
    "conclusions": [{"id": "c1", "text": "Risk to children high; contact supervised"}],
    "actions": [{"id": "a1", "owner_agency_id": PROBATION.id, "text": "Add licence condition",
                 "due_date": "2026-12-01", "review_date": L2_REVIEW.isoformat()}],
}  # fmt: skip


def _l2(caller: Any, participation: Participation = Participation.ATTENDED) -> Any:
    return meeting(caller, participation, held_on=L2_HELD, review_date=L2_REVIEW)


def test_referral_gives_the_named_agency_sight_until_screening() -> None:
    """Housing named in probation's referral sees the case while the referral is open."""
    check("CJA2003-s325-4", "risk-assessment", Role.DUTY_TO_COOPERATE, AgencyType.HOUSING, None)
    open_ref = facts(HOUSING, nominal(1, 2, lead=PROBATION.id), referrals=(referral(HOUSING),))
    assert decide(open_ref).rule == "involved-referral"
    screened = facts(HOUSING, LEVEL_2, referrals=(referral(HOUSING, closed_at=SCREENED_AT),))
    with pytest.raises(NoNeedToKnow):
        decide(screened)


def test_screening_attendees_lose_their_meeting_tie_when_the_level_changes() -> None:
    """The screening set level 2: a screening held before that change no longer ties housing."""
    screening = meeting(
        HOUSING,
        meeting_type=MeetingType.SCREENING,
        held_on=(SCREENED_AT - dt.timedelta(days=2)).date(),
        level_at_meeting=Level.LEAD_AGENCY,
    )
    with pytest.raises(NoNeedToKnow):
        decide(facts(HOUSING, LEVEL_2, meetings=(screening,)))
    assert decide(facts(POLICE, LEVEL_2)).rule == "responsible-authority-of-area"


@pytest.mark.parametrize("attendee", [POLICE, PROBATION, HOUSING, CSC, MENTAL_HEALTH])
def test_level_2_attendees_receive_the_minutes(attendee: Any) -> None:
    """Every attendee of the level 2 meeting receives its minutes."""
    row = facts(attendee, LEVEL_2, MinutesTarget("meet-1"), meetings=(_l2(attendee),))
    assert decide(row).rule == "minutes-participant"


def test_jobcentre_plus_receives_minutes_without_attending() -> None:
    """JCP is a named minutes-only recipient: it gets the minutes, redacted for its type."""
    row = facts(
        JCP, LEVEL_2, MinutesTarget("meet-1"), meetings=(_l2(JCP, Participation.MINUTES_ONLY),)
    )
    decision = decide(row)
    assert decision.view is View.FULL
    ctx = context(JCP, resource=Resource.MINUTES, record_kind=None, originator=PROBATION.id)
    result = redact(ctx, MINUTES)
    assert THIRD_PARTY.encode() not in result.to_json()
    assert [c["id"] for c in result.document["conclusions"]] == ["c1"]
    assert result.document["discussion"] == ()


def test_agency_invited_but_absent_does_not_receive_the_minutes() -> None:
    """Health was invited and sent no one: the minutes need the chair's approval."""
    health = agency(AgencyType.HEALTH)
    row = facts(health, LEVEL_2, MinutesTarget("meet-1"),
                meetings=(_l2(health, Participation.INVITED),))  # fmt: skip
    with pytest.raises(NoNeedToKnow):
        decide(row)


def test_police_as_source_originator_keep_their_source_in_the_minutes() -> None:
    """The police brought the third-party source: their copy of the minutes keeps it."""
    ctx = context(POLICE, resource=Resource.MINUTES, record_kind=None, originator=PROBATION.id)
    assert THIRD_PARTY.encode() in redact(ctx, MINUTES).to_json()


def test_childrens_services_hazard_flag_has_no_details() -> None:
    """The Safeguarding Division's HZD flag on the child's ICS record: no offence, no intel."""
    decision = decide(facts(CSC, LEVEL_2, HazardFlagTarget("flag-1", CSC.id)))
    assert decision.view is View.HAZARD_FLAG_ONLY
    ctx = context(CSC, resource=Resource.HAZARD_FLAG, view=decision.view, record_kind=None)
    source = {
        "child_or_family_ref": "ICS/778812", "relationship": "father",
        "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
        "review_date": L2_REVIEW.isoformat(),
        "offence": "indecent assault", "intelligence": THIRD_PARTY, "level": 2,
    }  # fmt: skip
    flag = redact(ctx, source).to_dict()
    assert flag == {
        "child_or_family_ref": "ICS/778812", "flag": "HZD", "relationship": "father",
        "statement": "known to MAPPA",
        "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
        "review_date": L2_REVIEW.isoformat(),
    }  # fmt: skip


def test_child_protection_conference_receives_what_the_chair_approved() -> None:
    """The case team, outside the meeting, receives the approved conclusions and actions only."""
    case_team = agency(AgencyType.CHILDRENS_SERVICES, agency_id="csc-barnet-case-team")
    check("CA1989-s47", "child-protection", case_team.role, case_team.agency_type, None)
    with pytest.raises(NoNeedToKnow):
        decide(facts(case_team, LEVEL_2, MinutesTarget("meet-1")))
    row = facts(case_team, LEVEL_2, MinutesTarget("meet-1"), disclosures=(disclosure(case_team),))
    decision = decide(row)
    assert decision.view is View.APPROVED_PARTS
    ctx = context(case_team, resource=Resource.MINUTES, view=decision.view, record_kind=None,
                  purpose="child-protection", originator=PROBATION.id)  # fmt: skip
    shared = approved_view(MINUTES, decision.approved_parts, ctx)
    assert set(shared.document) == {"meeting_id", "held_on", "marking", "conclusions", "actions"}
    assert THIRD_PARTY.encode() not in shared.to_json()


def test_after_the_review_date_housing_is_refused() -> None:
    """The day after the level 2 review date, the next request from housing is refused."""
    later = dt.datetime.combine(L2_REVIEW + dt.timedelta(days=1), dt.time(9), tzinfo=dt.UTC)
    with pytest.raises(NoNeedToKnow):
        decide(facts(HOUSING, LEVEL_2, now=later, meetings=(_l2(HOUSING),)))
    with pytest.raises(NoNeedToKnow):
        decide(facts(HOUSING, LEVEL_2, MinutesTarget("meet-1"), now=later,
                     meetings=(_l2(HOUSING),)))  # fmt: skip
