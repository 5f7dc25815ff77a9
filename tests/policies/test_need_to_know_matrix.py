"""Need-to-know tables: agency type x role x involvement x category x level x resource.

One row per rule, each with a comment saying what it shows; then default-deny sweeps over the
whole cross product for agencies with no tie to the nominal.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import FrozenInstanceError, replace
from typing import Any

import pytest

from gateway.domain import (
    AgencyType,
    DisclosureStatus,
    MeetingType,
    Participation,
    RecordKind,
    Role,
)
from gateway.flow.need_to_know import _WITHOUT_INVOLVEMENT
from policies import (
    POLICY_VERSION,
    ActionTarget,
    ContributorDecisionsTarget,
    Decision,
    Facts,
    HazardFlagTarget,
    Involvements,
    Level1ListTarget,
    MeetingTarget,
    MinutesTarget,
    NominalTarget,
    NoNeedToKnow,
    RecordTarget,
    Resource,
    Target,
    View,
    decide,
    decide_first,
)
from tests.policies.policies_support import (
    AREA,
    LEAD_ID,
    NOW,
    OTHER_AREA,
    action,
    agency,
    contribution,
    disclosure,
    facts,
    meeting,
    nominal,
    referral,
)

A = AgencyType
RA, DTC, OTHER = Role.RESPONSIBLE_AUTHORITY, Role.DUTY_TO_COOPERATE, Role.OTHER_CONTRIBUTOR
#: When the meeting's need was closed, in the rows that close it.
CLOSED = NOW - dt.timedelta(hours=1)


def _target(resource: str, caller_id: str) -> Target:
    return {
        "nominal": NominalTarget(),
        "record": RecordTarget("rec-1", "police-records-unit", RecordKind.RISK_ASSESSMENT),
        "own-record": RecordTarget("rec-1", caller_id, RecordKind.TENANCY),
        "minutes": MinutesTarget("meet-1"),
        "flag": HazardFlagTarget("flag-1", caller_id),
        "flag-for-other": HazardFlagTarget("flag-1", "childrens-services-elsewhere"),
        "list": Level1ListTarget(),
        "contributors": ContributorDecisionsTarget(),
        "meeting": MeetingTarget("meet-1"),
        "other-meeting": MeetingTarget("meet-2"),
        "action": ActionTarget("act-2", "meet-1", "police-records-unit"),
        "own-action": ActionTarget("act-1", "meet-1", caller_id),
    }[resource]


def _facts(
    agency_type: AgencyType,
    role: Role,
    involvement: str,
    category: int,
    level: int,
    resource: str,
    *,
    area: str = AREA,
    recorded: bool = False,
) -> Facts:
    """Build one row's facts; ``involvement`` names how the caller is tied to the nominal."""
    caller = agency(agency_type, role, area=area)
    ties: dict[str, Any] = {
        "none": {},
        "lead": {},
        "referral": {"referrals": (referral(caller),)},
        "invited": {"meetings": (meeting(caller, Participation.INVITED),)},
        "attended": {"meetings": (meeting(caller, Participation.ATTENDED),)},
        "minutes-only": {"meetings": (meeting(caller, Participation.MINUTES_ONLY),)},
        "professionals": {
            "meetings": (
                meeting(
                    caller,
                    meeting_type=MeetingType.LEVEL_1_PROFESSIONALS,
                    level_at_meeting=None,
                ),
            )
        },
        "action": {"actions": (action(caller),)},
        # the chair or co-ordinator closed the meeting's need an hour ago
        "closed": {"meetings": (meeting(caller, need_closed_at=CLOSED),)},
        "closed-action": {"actions": (replace(action(caller), need_closed_at=CLOSED),)},
        "approved-closed": {"disclosures": (disclosure(caller, need_closed_at=CLOSED),)},
        # the chair took the caller off the meeting
        "removed": {"meetings": (meeting(caller, Participation.REMOVED),)},
        "removed-action": {
            "meetings": (meeting(caller, Participation.REMOVED),),
            "actions": (action(caller),),
        },
        "approved": {"disclosures": (disclosure(caller),)},
        "pending": {"disclosures": (disclosure(caller, status=DisclosureStatus.PENDING),)},
        "decision": {"contributions": (contribution(caller.id),)},
        "decision-revoked": {"contributions": (contribution(caller.id, revoked=True),)},
    }[involvement]
    if recorded:
        ties["contributions"] = (contribution(caller.id),)
    nom = nominal(category, level, lead=caller.id if involvement == "lead" else LEAD_ID)
    return facts(caller, nom, _target(resource, caller.id), **ties)


GRANTS = [
    # lead-agency: mental health leads a level 1 case (seed 002) and sees it, as a DTC agency.
    pytest.param(A.MENTAL_HEALTH, DTC, "lead", 2, 1, "nominal", "lead-agency", View.FULL,
                 id="lead-agency"),
    # responsible-authority-of-area: police of the area see a nominal with no other tie.
    pytest.param(A.POLICE, RA, "none", 1, 2, "nominal", "responsible-authority-of-area", View.FULL,
                 id="responsible-authority-of-area"),
    # record-owner: housing sees the tenancy record it supplied, even on a level 1 nominal.
    pytest.param(A.HOUSING, DTC, "none", 1, 1, "own-record", "record-owner", View.FULL,
                 id="record-owner"),
    # involved-referral: children's services named in an open referral see the nominal.
    pytest.param(A.CHILDRENS_SERVICES, DTC, "referral", 2, 2, "nominal", "involved-referral",
                 View.FULL, id="involved-referral"),
    # involved-meeting: housing that attended the level 2 meeting sees the police's record.
    pytest.param(A.HOUSING, DTC, "attended", 1, 2, "record", "involved-meeting", View.FULL,
                 id="involved-meeting"),
    # involved-meeting: an invitation alone ties the agency to the case (it must prepare).
    pytest.param(A.HEALTH, DTC, "invited", 3, 2, "nominal", "involved-meeting", View.FULL,
                 id="involved-meeting-invited"),
    # involved-action: adult social care owning an open action on a level 3 case.
    pytest.param(A.ADULT_SOCIAL_CARE, DTC, "action", 2, 3, "nominal", "involved-action", View.FULL,
                 id="involved-action"),
    # minutes-participant: Jobcentre Plus receives minutes without attending (seed 004).
    pytest.param(A.JOBCENTRE_PLUS, DTC, "minutes-only", 1, 2, "minutes", "minutes-participant",
                 View.FULL, id="minutes-participant-minutes-only"),
    # minutes-participant: an attendee receives the minutes.
    pytest.param(A.HOUSING, DTC, "attended", 2, 2, "minutes", "minutes-participant", View.FULL,
                 id="minutes-participant-attended"),
    # minutes-participant: a level 1 professionals meeting's minutes go to its participants.
    pytest.param(A.HOUSING, DTC, "professionals", 1, 1, "minutes", "minutes-participant",
                 View.FULL, id="minutes-participant-professionals-meeting"),
    # minutes-mappa-coordinator: the area's MAPPA unit holds every meeting's minutes.
    pytest.param(A.MAPPA_COORDINATION, RA, "none", 2, 2, "minutes", "minutes-mappa-coordinator",
                 View.FULL, id="minutes-mappa-coordinator"),
    # onward-disclosure-approved: children's services, not at the meeting, get what was approved.
    pytest.param(A.CHILDRENS_SERVICES, DTC, "approved", 1, 2, "minutes",
                 "onward-disclosure-approved", View.APPROVED_PARTS,
                 id="onward-disclosure-approved"),
    # hazard-flag-recipient: children's services see the flag raised for them, and only that.
    pytest.param(A.CHILDRENS_SERVICES, DTC, "none", 1, 2, "flag", "hazard-flag-recipient",
                 View.HAZARD_FLAG_ONLY, id="hazard-flag-recipient"),
    # level-1-monthly-list: housing sees a level 1 nominal on the monthly list, minimally.
    pytest.param(A.HOUSING, DTC, "none", 1, 1, "list", "level-1-monthly-list",
                 View.MONTHLY_LIST_MINIMAL, id="level-1-monthly-list"),
    # responsible-authority-of-area: police of the area list the s.325(4A)(c) decisions in full.
    pytest.param(A.POLICE, RA, "none", 1, 2, "contributors", "responsible-authority-of-area",
                 View.FULL, id="responsible-authority-of-area-contributors"),
    # contributor-named-in-decision: an other contributor lists the decisions naming it, without
    # the RA's reasons, with no other tie to the case.
    pytest.param(A.OTHER, OTHER, "decision", 2, 2, "contributors",
                 "contributor-named-in-decision", View.OWN_CONTRIBUTOR_DECISIONS,
                 id="contributor-named-in-decision"),
    # involved-meeting (meeting): mental health, invited, reads the meeting it was invited to.
    pytest.param(A.MENTAL_HEALTH, DTC, "invited", 1, 2, "meeting", "involved-meeting", View.FULL,
                 id="meeting-invited"),
    # involved-meeting (meeting): Jobcentre Plus, minutes only, reads the meeting.
    pytest.param(A.JOBCENTRE_PLUS, DTC, "minutes-only", 1, 2, "meeting", "involved-meeting",
                 View.FULL, id="meeting-minutes-only"),
    # involved-meeting (meeting): a level 1 professionals meeting's participants read it.
    pytest.param(A.HOUSING, DTC, "professionals", 1, 1, "meeting", "involved-meeting", View.FULL,
                 id="meeting-professionals"),
    # minutes-mappa-coordinator (meeting): the area's MAPPA unit reads every meeting.
    pytest.param(A.MAPPA_COORDINATION, RA, "none", 2, 2, "meeting", "minutes-mappa-coordinator",
                 View.FULL, id="meeting-mappa-coordinator"),
    # involved-action (action): the owner of an open action point reads it, at no meeting.
    pytest.param(A.JOBCENTRE_PLUS, DTC, "action", 1, 2, "own-action", "involved-action",
                 View.FULL, id="action-owner"),
    # minutes-participant (action): an attendee reads another agency's action point.
    pytest.param(A.HOUSING, DTC, "attended", 2, 2, "action", "minutes-participant", View.FULL,
                 id="action-minutes-participant"),
    # minutes-mappa-coordinator (action): the area's MAPPA unit reads every action point.
    pytest.param(A.MAPPA_COORDINATION, RA, "none", 2, 2, "action", "minutes-mappa-coordinator",
                 View.FULL, id="action-mappa-coordinator"),
    # minutes-mappa-coordinator: the co-ordinator keeps a meeting whose need it closed.
    pytest.param(A.MAPPA_COORDINATION, RA, "closed", 2, 2, "meeting",
                 "minutes-mappa-coordinator", View.FULL, id="meeting-closed-coordinator"),
    # responsible-authority-of-area: the RA still sees the nominal once a meeting's need closed.
    pytest.param(A.POLICE, RA, "closed", 1, 2, "nominal", "responsible-authority-of-area",
                 View.FULL, id="nominal-closed-ra"),
    # record-owner: an agency removed from the meeting keeps the records it supplied.
    pytest.param(A.HOUSING, DTC, "removed", 1, 2, "own-record", "record-owner", View.FULL,
                 id="own-record-removed"),
    # category-4-named-agencies (held): probation of the area sees a category 4 nominal.
    pytest.param(A.PROBATION, RA, "none", 4, 3, "nominal", "responsible-authority-of-area",
                 View.FULL, id="category-4-named-agency"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("agency_type", "role", "involvement", "category", "level", "resource", "rule", "view"), GRANTS
)
def test_rule_grants_its_view(
    agency_type: AgencyType,
    role: Role,
    involvement: str,
    category: int,
    level: int,
    resource: str,
    rule: str,
    view: View,
) -> None:
    """Each grant rule lets its agency see its resource in its view, and says so."""
    decision = decide(_facts(agency_type, role, involvement, category, level, resource))
    assert (decision.rule, decision.view) == (rule, view)
    assert decision.policy_version == POLICY_VERSION
    assert decision.trail[-1] == rule
    assert "category-4-named-agencies" in decision.trail


REFUSALS = [
    # default-deny: housing with no tie to the nominal sees nothing.
    pytest.param(A.HOUSING, DTC, "none", 1, 2, "nominal", "default-deny", None,
                 id="default-deny-no-tie"),
    # default-deny: the police of another area are not its Responsible Authority.
    pytest.param(A.POLICE, RA, "none", 1, 2, "nominal", "default-deny", "area", id="other-area-ra"),
    # category-4-named-agencies: children's services attended, but category 4 is not for them.
    pytest.param(A.CHILDRENS_SERVICES, DTC, "attended", 4, 2, "nominal",
                 "category-4-named-agencies", None, id="category-4-dtc"),
    # category-4-named-agencies: prisons are RA, but not named for category 4.
    pytest.param(A.PRISON, RA, "none", 4, 3, "nominal", "category-4-named-agencies", None,
                 id="category-4-prison"),
    # category-4-named-agencies: even a named type is refused outside the nominal's area.
    pytest.param(A.POLICE, RA, "none", 4, 3, "nominal", "category-4-named-agencies", "area",
                 id="category-4-other-area"),
    # category-4-named-agencies: the approved parts of minutes do not reach a category 4 case.
    pytest.param(A.CHILDRENS_SERVICES, DTC, "approved", 4, 2, "minutes",
                 "category-4-named-agencies", None, id="category-4-onward"),
    # other-contributor-recorded: an other contributor without the RA's s.325(4A)(c) decision.
    pytest.param(A.OTHER, OTHER, "attended", 2, 2, "nominal", "other-contributor-recorded", None,
                 id="other-contributor-unrecorded"),
    # other-contributor-recorded: once the RA revoked its decision, a contributor lists nothing.
    pytest.param(A.OTHER, OTHER, "decision-revoked", 2, 2, "contributors",
                 "other-contributor-recorded", "revoked", id="contributor-decision-revoked"),
    # contributor-named-in-decision: a DTC agency that attended may not list the decisions.
    pytest.param(A.HOUSING, DTC, "attended", 2, 2, "contributors", "default-deny",
                 "is not named", id="contributors-dtc-attended"),
    # contributor-named-in-decision: the decisions do not open the case itself.
    pytest.param(A.OTHER, OTHER, "decision", 2, 2, "nominal", "default-deny", None,
                 id="contributor-decision-not-the-nominal"),
    # responsible-authority-of-area: the police of another area do not list them.
    pytest.param(A.POLICE, RA, "none", 1, 2, "contributors", "default-deny", "area",
                 id="contributors-other-area-ra"),
    # level-1-monthly-list-only: attending a professionals meeting does not open a level 1 case.
    pytest.param(A.HOUSING, DTC, "professionals", 1, 1, "nominal", "default-deny",
                 "level-1-monthly-list-only", id="level-1-through-involvement"),
    # level-1-monthly-list-only: nor its records.
    pytest.param(A.HEALTH, DTC, "referral", 2, 1, "record", "default-deny",
                 "level-1-monthly-list-only", id="level-1-record-through-referral"),
    # minutes-participant: invited but did not attend is not a participant (seed 001).
    pytest.param(A.CHILDRENS_SERVICES, DTC, "invited", 1, 2, "minutes", "default-deny",
                 "not a participant", id="minutes-invited-not-attended"),
    # minutes-participant: attending the nominal's case does not open another meeting's minutes.
    pytest.param(A.HOUSING, DTC, "action", 1, 2, "minutes", "default-deny", "took no part",
                 id="minutes-no-part"),
    # minutes: the lead agency is not a participant by being lead.
    pytest.param(A.MENTAL_HEALTH, DTC, "lead", 1, 2, "minutes", "default-deny", None,
                 id="minutes-lead-not-participant"),
    # onward-disclosure-approved: a pending request grants nothing.
    pytest.param(A.CHILDRENS_SERVICES, DTC, "pending", 1, 2, "minutes", "default-deny",
                 "no approved onward disclosure", id="onward-disclosure-pending"),
    # hazard-flag-recipient: a flag raised for another agency.
    pytest.param(A.CHILDRENS_SERVICES, DTC, "none", 1, 2, "flag-for-other", "default-deny",
                 "was raised for", id="hazard-flag-other-recipient"),
    # hazard-flag-recipient: a flag does not open the nominal itself.
    pytest.param(A.CHILDRENS_SERVICES, DTC, "none", 1, 2, "nominal", "default-deny", None,
                 id="hazard-flag-not-the-nominal"),
    # level-1-monthly-list: a level 2 nominal is not on the level 1 list.
    pytest.param(A.HOUSING, DTC, "none", 1, 2, "list", "default-deny", "not on the level 1 list",
                 id="level-1-list-level-2"),
    # level-1-monthly-list: the list is for MAPPA agencies, not other contributors.
    pytest.param(A.OTHER, Role.ASSOCIATE, "none", 1, 1, "list", "default-deny",
                 "does not receive the level 1 list", id="level-1-list-associate"),
    # level-1-monthly-list: the list does not open the nominal.
    pytest.param(A.HOUSING, DTC, "none", 1, 1, "nominal", "default-deny", None,
                 id="level-1-list-not-the-nominal"),
    # record-owner: another agency's record is not the caller's own.
    pytest.param(A.HOUSING, DTC, "none", 1, 2, "record", "default-deny", "was supplied by",
                 id="record-not-owned"),
    # meeting: the police of the area, at no part in it, do not read a meeting by being RA.
    pytest.param(A.POLICE, RA, "none", 1, 2, "meeting", "default-deny", "took no part",
                 id="meeting-ra-no-part"),
    # meeting: the lead agency is not a participant by being lead.
    pytest.param(A.MENTAL_HEALTH, DTC, "lead", 1, 2, "meeting", "default-deny", None,
                 id="meeting-lead-not-participant"),
    # meeting: an onward-disclosure recipient gets the approved parts, never the attendance.
    pytest.param(A.CHILDRENS_SERVICES, DTC, "approved", 1, 2, "meeting", "default-deny", None,
                 id="meeting-not-to-onward-recipient"),
    # meeting: a part in one meeting does not open another meeting about the nominal.
    pytest.param(A.HOUSING, DTC, "attended", 1, 2, "other-meeting", "default-deny",
                 "took no part in meeting meet-2", id="meeting-other-meeting"),
    # meeting: category 4 is not for housing, attended or not.
    pytest.param(A.HOUSING, DTC, "attended", 4, 2, "meeting", "category-4-named-agencies", None,
                 id="meeting-category-4"),
    # action: invited but did not attend is not a participant of the minutes it is part of.
    pytest.param(A.MENTAL_HEALTH, DTC, "invited", 1, 2, "action", "default-deny",
                 "not a participant", id="action-invited-not-attended"),
    # action: owning one action point opens no other of the meeting.
    pytest.param(A.HOUSING, DTC, "action", 1, 2, "action", "default-deny",
                 "does not own action point act-2", id="action-owns-another"),
    # action: an onward-disclosure recipient reads approved action points in the minutes only.
    pytest.param(A.CHILDRENS_SERVICES, DTC, "approved", 1, 2, "action", "default-deny", None,
                 id="action-not-to-onward-recipient"),
    # action: the police of the area, at no part in the meeting, do not read its action points.
    pytest.param(A.POLICE, RA, "none", 1, 2, "action", "default-deny", None,
                 id="action-ra-no-part"),
    # involved-meeting: the meeting's need closed, housing that attended no longer sees the case.
    pytest.param(A.HOUSING, DTC, "closed", 1, 2, "nominal", "default-deny", "need closed",
                 id="closed-nominal"),
    # involved-meeting: nor the records the meeting opened to it.
    pytest.param(A.HOUSING, DTC, "closed", 1, 2, "record", "default-deny", "need closed",
                 id="closed-record"),
    # involved-meeting (meeting): nor the meeting itself.
    pytest.param(A.HOUSING, DTC, "closed", 1, 2, "meeting", "default-deny", "need closed",
                 id="closed-meeting"),
    # minutes-participant: nor the minutes it received.
    pytest.param(A.HOUSING, DTC, "closed", 1, 2, "minutes", "default-deny", "need closed",
                 id="closed-minutes"),
    # minutes-participant (action): nor another agency's action point of the meeting.
    pytest.param(A.HOUSING, DTC, "closed", 1, 2, "action", "default-deny", "need closed",
                 id="closed-action"),
    # involved-meeting: an invitation ends with the need as an attendance does.
    pytest.param(A.HEALTH, DTC, "closed", 1, 2, "nominal", "default-deny", "need closed",
                 id="closed-invited-nominal"),
    # involved-action: the owner of an open action point of a closed meeting loses its action,
    pytest.param(A.JOBCENTRE_PLUS, DTC, "closed-action", 1, 2, "own-action", "default-deny",
                 "closed", id="closed-own-action"),
    # involved-action: and the nominal the action point opened to it.
    pytest.param(A.JOBCENTRE_PLUS, DTC, "closed-action", 1, 2, "nominal", "default-deny",
                 "closed", id="closed-action-nominal"),
    # onward-disclosure-approved: the recipient's approved parts end with the meeting's need.
    pytest.param(A.CHILDRENS_SERVICES, DTC, "approved-closed", 1, 2, "minutes", "default-deny",
                 "need closed", id="closed-onward-disclosure"),
    # involved-meeting: an agency the chair took off the meeting no longer sees the case,
    pytest.param(A.HOUSING, DTC, "removed", 1, 2, "nominal", "default-deny",
                 "removed grants nothing", id="removed-nominal"),
    # involved-meeting: nor its records,
    pytest.param(A.HOUSING, DTC, "removed", 1, 2, "record", "default-deny",
                 "removed grants nothing", id="removed-record"),
    # involved-meeting (meeting): nor the meeting,
    pytest.param(A.HOUSING, DTC, "removed", 1, 2, "meeting", "default-deny",
                 "removed grants nothing", id="removed-meeting"),
    # minutes-participant: nor the minutes,
    pytest.param(A.HOUSING, DTC, "removed", 1, 2, "minutes", "default-deny",
                 "not a participant", id="removed-minutes"),
    # minutes-participant (action): nor the meeting's action points,
    pytest.param(A.HOUSING, DTC, "removed", 1, 2, "action", "default-deny",
                 "not a participant", id="removed-action"),
    # involved-action: nor an action point of that meeting it owns,
    pytest.param(A.HOUSING, DTC, "removed-action", 1, 2, "own-action", "default-deny",
                 "removed from meeting meet-1", id="removed-own-action"),
    # involved-action: nor the nominal through that action point.
    pytest.param(A.HOUSING, DTC, "removed-action", 1, 2, "nominal", "default-deny",
                 "removed from meeting meet-1", id="removed-action-nominal"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("agency_type", "role", "involvement", "category", "level", "resource", "rule", "reason"),
    REFUSALS,
)
def test_rule_refuses(
    agency_type: AgencyType,
    role: Role,
    involvement: str,
    category: int,
    level: int,
    resource: str,
    rule: str,
    reason: str | None,
) -> None:
    """Each refusal names the rule that refused and the policy version, for the audit."""
    area = OTHER_AREA if reason == "area" else AREA
    row = _facts(agency_type, role, involvement, category, level, resource, area=area)
    with pytest.raises(NoNeedToKnow) as caught:
        decide(row)
    assert caught.value.rule == rule
    assert caught.value.policy_version == POLICY_VERSION
    assert caught.value.code == "no_need_to_know"
    if reason and reason != "area":
        assert reason in repr(caught.value.audit_fields())


def test_other_contributor_with_recorded_decision_is_involved() -> None:
    """With the RA's s.325(4A)(c) decision recorded, an attending contributor sees the case."""
    row = _facts(A.OTHER, OTHER, "attended", 2, 2, "nominal", recorded=True)
    assert decide(row).rule == "involved-meeting"


def test_approved_parts_are_exactly_those_approved() -> None:
    """An onward disclosure grants exactly the approved parts, in the decision."""
    caller = agency(A.CHILDRENS_SERVICES)
    row = facts(
        caller,
        target=MinutesTarget("meet-1"),
        disclosures=(disclosure(caller, ("actions/act-1", "nonsense", "conclusions/")),),
    )
    decision = decide(row)
    assert decision.view is View.APPROVED_PARTS
    assert decision.approved_parts == ("actions/act-1",)


def test_approval_of_another_meeting_grants_nothing() -> None:
    """An approval names its meeting; another meeting's minutes stay closed."""
    caller = agency(A.CHILDRENS_SERVICES)
    row = facts(caller, target=MinutesTarget("meet-2"), disclosures=(disclosure(caller),))
    with pytest.raises(NoNeedToKnow):
        decide(row)


def test_decision_is_frozen() -> None:
    """A decision cannot be altered after it is made."""
    decision = decide(_facts(A.POLICE, RA, "none", 1, 2, "nominal"))
    assert isinstance(decision, Decision)
    with pytest.raises(FrozenInstanceError):
        decision.view = View.FULL  # type: ignore[misc]


TIES = ["none", "invited", "attended", "minutes-only", "referral", "action", "pending"]
UNTIED = ["none", "pending"]


@pytest.mark.parametrize(
    "resource", ["nominal", "record", "minutes", "flag-for-other", "contributors"]
)
def test_no_tie_no_access_across_every_type_role_category_and_level(resource: str) -> None:
    """Default deny: with no tie, only the area's RA (or MAPPA unit, for minutes) sees anything."""
    for agency_type, role, tie, category, level in itertools.product(
        AgencyType, Role, UNTIED, (1, 2, 3, 4), (1, 2, 3)
    ):
        row = _facts(agency_type, role, tie, category, level, resource)
        ra_of_area = role is RA and agency_type in {A.POLICE, A.PROBATION, A.PRISON,
                                                    A.MAPPA_COORDINATION}  # fmt: skip
        unit = agency_type is A.MAPPA_COORDINATION and resource == "minutes"
        if (ra_of_area and resource != "minutes") or unit:
            continue
        with pytest.raises(NoNeedToKnow):
            decide(row)


def test_category_4_reaches_only_named_types_whatever_the_tie() -> None:
    """Category 4: every type but police and probation is refused, whatever else would grant."""
    for agency_type, role, tie, level, resource in itertools.product(
        AgencyType, Role, [*TIES, "approved", "lead", "decision"], (1, 2, 3),
        ["nominal", "record", "own-record", "minutes", "flag", "list", "contributors", "meeting",
         "action", "own-action"],
    ):  # fmt: skip
        if agency_type in {A.POLICE, A.PROBATION}:
            continue
        with pytest.raises(NoNeedToKnow) as caught:
            decide(_facts(agency_type, role, tie, 4, level, resource))
        assert caught.value.rule == "category-4-named-agencies"


def test_level_1_list_is_the_only_route_for_involved_agencies() -> None:
    """For level 1 nominals, an involved DTC agency gets the list entry, never the nominal."""
    for tie in TIES:
        with pytest.raises(NoNeedToKnow):
            decide(_facts(A.HOUSING, DTC, tie, 1, 1, "nominal"))
        assert decide(_facts(A.HOUSING, DTC, tie, 1, 1, "list")).view is View.MONTHLY_LIST_MINIMAL


def test_decide_first_without_involvements_makes_the_decision_of_decide_or_none() -> None:
    """The gateway's first try, before the involvements are loaded, decides as decide would
    with them (for every grant that needs none), or leaves the decision to decide."""
    made = set()
    for agency_type, role, tie, category, level, resource in itertools.product(
        AgencyType, Role, [*TIES, "approved", "lead", "decision"], (1, 2, 4), (1, 2, 3),
        ["nominal", "record", "own-record", "minutes", "flag", "list", "contributors", "meeting",
         "action", "own-action"],
    ):  # fmt: skip
        row = _facts(agency_type, role, tie, category, level, resource)
        early = decide_first(replace(row, involvements=Involvements()), _WITHOUT_INVOLVEMENT)
        if early is not None:
            assert early == decide(row)
            made.add(early.rule)
    assert made == _WITHOUT_INVOLVEMENT


def test_resource_enum_covers_every_target() -> None:
    """Every resource has a target type the tables above exercise."""
    every = ("nominal", "record", "minutes", "flag", "list", "contributors", "meeting", "action")
    assert {_target(r, "x").resource for r in every} == set(Resource)


def test_minutes_participant_looks_at_every_row_for_the_meeting() -> None:
    """An invitation row before an attendance row for the same meeting does not hide the latter."""
    caller = agency(A.HOUSING)
    row = facts(
        caller,
        target=MinutesTarget("meet-1"),
        meetings=(meeting(caller, Participation.INVITED), meeting(caller, Participation.ATTENDED)),
    )
    assert decide(row).rule == "minutes-participant"


def test_facts_refuse_an_involvement_of_another_agency() -> None:
    """Agency ids that disagree between the caller and its involvements are a loud error."""
    caller, other = agency(A.HOUSING), agency(A.HEALTH)
    with pytest.raises(ValueError, match="another agency"):
        facts(caller, meetings=(meeting(other),))
    with pytest.raises(ValueError, match="another agency"):
        facts(caller, disclosures=(disclosure(other),))
