"""Builders for need-to-know facts and redaction contexts: one place that knows the shapes."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.domain import (
    ActionStatus,
    AgencyType,
    Category,
    DisclosureStatus,
    Level,
    MeetingType,
    NominalStatus,
    Participation,
    RecordKind,
    Role,
)
from policies import (
    ActionInvolvement,
    CallerAgency,
    ContributorDecision,
    Facts,
    Involvements,
    MeetingInvolvement,
    NominalFacts,
    NominalTarget,
    OnwardDisclosureGrant,
    RedactionContext,
    ReferralInvolvement,
    Resource,
    Target,
    View,
)
from policies._data import default_data_dir

#: The injected clock: midday UTC on the day the rules were reviewed.
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
TODAY = NOW.date()
AREA = "barnet"
OTHER_AREA = "wiltshire"
NOMINAL_ID = "nom-1"
LEAD_ID = "lead-agency-1"

#: The s.325 role an agency of each type normally holds.
ROLE_OF = {
    AgencyType.POLICE: Role.RESPONSIBLE_AUTHORITY,
    AgencyType.PROBATION: Role.RESPONSIBLE_AUTHORITY,
    AgencyType.PRISON: Role.RESPONSIBLE_AUTHORITY,
    AgencyType.MAPPA_COORDINATION: Role.RESPONSIBLE_AUTHORITY,
    AgencyType.OTHER: Role.OTHER_CONTRIBUTOR,
}


def agency(
    agency_type: AgencyType,
    role: Role | None = None,
    *,
    area: str = AREA,
    agency_id: str | None = None,
) -> CallerAgency:
    return CallerAgency(
        id=agency_id or f"{agency_type}-{area}",
        agency_type=agency_type,
        role=role or ROLE_OF.get(agency_type, Role.DUTY_TO_COOPERATE),
        area=area,
    )


def nominal(
    category: int = 1,
    level: int = 2,
    *,
    status: NominalStatus = NominalStatus.ACTIVE,
    lead: str = LEAD_ID,
    area: str = AREA,
    level_changed_at: dt.datetime | None = None,
) -> NominalFacts:
    return NominalFacts(
        id=NOMINAL_ID,
        area=area,
        category=Category(category),
        level=Level(level),
        lead_agency_id=lead,
        status=status,
        level_changed_at=level_changed_at,
    )


def meeting(
    caller: CallerAgency,
    participation: Participation = Participation.ATTENDED,
    *,
    meeting_id: str = "meet-1",
    meeting_type: MeetingType = MeetingType.LEVEL_2,
    held_on: dt.date = TODAY - dt.timedelta(days=10),
    review_date: dt.date | None = TODAY + dt.timedelta(days=80),
    need_closed_at: dt.datetime | None = None,
    level_at_meeting: Level | None = Level.MULTI_AGENCY,
) -> MeetingInvolvement:
    return MeetingInvolvement(
        meeting_id=meeting_id,
        agency_id=caller.id,
        nominal_id=NOMINAL_ID,
        meeting_type=meeting_type,
        participation=participation,
        held_on=held_on,
        review_date=review_date,
        need_closed_at=need_closed_at,
        level_at_meeting=level_at_meeting,
    )


def referral(
    caller: CallerAgency,
    closed_at: dt.datetime | None = None,
    referred_at: dt.datetime | None = None,
) -> ReferralInvolvement:
    return ReferralInvolvement("ref-1", caller.id, NOMINAL_ID, closed_at, referred_at)


def action(
    caller: CallerAgency,
    status: ActionStatus = ActionStatus.OPEN,
    *,
    due: dt.date = TODAY + dt.timedelta(days=14),
    review: dt.date | None = TODAY + dt.timedelta(days=28),
) -> ActionInvolvement:
    return ActionInvolvement("act-1", caller.id, NOMINAL_ID, "meet-1", status, due, review)


def disclosure(
    caller: CallerAgency,
    parts: tuple[str, ...] = ("conclusions", "actions"),
    status: DisclosureStatus = DisclosureStatus.APPROVED,
    meeting_id: str = "meet-1",
    *,
    held_on: dt.date | None = TODAY - dt.timedelta(days=10),
    review_date: dt.date | None = TODAY + dt.timedelta(days=80),
    need_closed_at: dt.datetime | None = None,
    level_at_meeting: Level | None = Level.MULTI_AGENCY,
) -> OnwardDisclosureGrant:
    """An onward disclosure of ``meeting_id``'s minutes to ``caller``, with the meeting's facts
    (those of :func:`meeting` by default)."""
    return OnwardDisclosureGrant(
        "odr-1",
        caller.id,
        NOMINAL_ID,
        meeting_id,
        status,
        parts,
        NOW,
        held_on=held_on,
        review_date=review_date,
        need_closed_at=need_closed_at,
        level_at_meeting=level_at_meeting,
    )


#: The purposes s.325(4A)(c) allows, all recorded by default.
CONTRIBUTOR_PURPOSES = frozenset({"risk-assessment", "risk-management", "mappa-meeting"})


def contribution(
    agency_id: str,
    *,
    decision_id: str = "cd-1",
    ends_at: dt.datetime = NOW + dt.timedelta(days=30),
    revoked: bool = False,
    purposes: frozenset[str] = CONTRIBUTOR_PURPOSES,
) -> ContributorDecision:
    """The RA's s.325(4A)(c) decision naming ``agency_id`` on the test nominal."""
    return ContributorDecision(decision_id, agency_id, NOMINAL_ID, purposes, ends_at, revoked)


def facts(
    caller: CallerAgency,
    nom: NominalFacts | None = None,
    target: Target | None = None,
    *,
    now: dt.datetime = NOW,
    referrals: tuple[ReferralInvolvement, ...] = (),
    meetings: tuple[MeetingInvolvement, ...] = (),
    actions: tuple[ActionInvolvement, ...] = (),
    disclosures: tuple[OnwardDisclosureGrant, ...] = (),
    contributions: tuple[ContributorDecision, ...] = (),
) -> Facts:
    return Facts(
        caller=caller,
        nominal=nom or nominal(),
        target=target or NominalTarget(),
        now=now,
        involvements=Involvements(referrals, meetings, actions, disclosures, contributions),
    )


def context(
    recipient: CallerAgency,
    resource: Resource = Resource.RECORD,
    view: View = View.FULL,
    *,
    purpose: str = "risk-management",
    originator: str | None = "police-barnet",
    record_kind: RecordKind | None = RecordKind.RISK_ASSESSMENT,
    **overrides: Any,
) -> RedactionContext:
    ctx = RedactionContext(
        recipient_agency_id=recipient.id,
        recipient_agency_type=recipient.agency_type,
        recipient_role=recipient.role,
        resource=resource,
        view=view,
        purpose=purpose,
        originator_agency_id=originator,
        record_kind=record_kind if resource is Resource.RECORD else None,
    )
    return replace(ctx, **overrides) if overrides else ctx


def copy_data(tmp_path: Path) -> Path:
    """A writable copy of the packaged policy data, to edit in a test."""
    target = tmp_path / "data"
    shutil.copytree(default_data_dir(), target)
    return target
