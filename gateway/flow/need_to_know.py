"""The need-to-know stage: the facts from the store, the decision from the policies.

:func:`decide` asks :func:`policies.decide` whether an agency may see a nominal, a record, the
minutes of a meeting, a hazard flag or a level 1 list entry. The facts are built here from the
store's clear columns only (ids, agency ids, category, level, dates that end involvement,
statuses): nothing sealed is opened to decide. The caller's involvements (referrals, meetings,
actions, approved onward disclosures) are loaded only when the rules that need none (lead
agency, Responsible Authority of the area, record owner) do not already grant.

A refusal is :class:`gateway.errors.NotFound`, the same opaque 404 as for an id that does not
exist (:func:`not_found`); its ``diagnostics`` carry the refusing rule and policy version for
the audit record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    CompoundSelect,
    Date,
    Integer,
    String,
    bindparam,
    case,
    cast,
    literal,
    null,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

import policies
from gateway import errors
from gateway.domain import (
    ActionStatus,
    AgencyType,
    Category,
    DisclosureStatus,
    Level,
    MeetingType,
    Participation,
    Role,
)
from gateway.flow.authenticate import Caller
from gateway.store.direct import Direct
from gateway.store.models import (
    Action,
    Agency,
    ContributorDecision,
    Meeting,
    MeetingAgency,
    Nominal,
    OnwardDisclosureRequest,
    Referral,
    ReferralAgency,
    UTCDateTime,
)

__all__ = [
    "LINKED_REFERRAL",
    "NO_SUCH_RESOURCE",
    "agency_facts",
    "caller_agency",
    "caveat_refusal",
    "decide",
    "decide_any",
    "decide_with",
    "involvements",
    "nominal_facts",
    "not_found",
]

#: A referral that found a nominal already registered: it involves its referrer in nothing.
LINKED_REFERRAL = "linked"
#: The rule recorded when the id asked for does not exist (or names another nominal's child).
NO_SUCH_RESOURCE = "resource-exists"
#: The status column of a ``c`` involvement row: whether the RA revoked the decision.
_STANDING, _REVOKED = "recorded", "revoked"
#: Grants that never look at involvements: when one of these grants, involvements are not loaded.
_WITHOUT_INVOLVEMENT = frozenset({"lead-agency", "responsible-authority-of-area", "record-owner"})


def not_found(resource: str) -> errors.NotFound:
    """The 404 for an id that does not exist: the same body as a need-to-know refusal."""
    return errors.NotFound(
        diagnostics={
            "reason_code": "not_found",
            "rule": NO_SUCH_RESOURCE,
            "why": f"no such {resource}",
        }
    )


def caveat_refusal(rule: str, resource: str = "record") -> errors.NotFound:
    """The 404 for a record (or minutes) whose handling caveat withholds it from the caller: to
    it, the document does not exist (the audit names the caveat)."""
    return errors.NotFound(
        diagnostics={
            "reason_code": "caveat",
            "rule": rule,
            "why": f"a handling caveat withholds the whole {resource} from this agency",
        }
    )


def caller_agency(caller: Caller) -> policies.CallerAgency:
    """The caller as the policies see it (from its token, never from the request body)."""
    return policies.CallerAgency(
        id=caller.agency_id,
        agency_type=AgencyType(caller.agency_type),
        role=Role(caller.role),
        area=caller.area,
    )


def agency_facts(agency: Agency) -> policies.CallerAgency:
    """A registered agency as the policies see it (a recipient of a push)."""
    return policies.CallerAgency(
        id=agency.id, agency_type=agency.agency_type, role=agency.role, area=agency.area
    )


def nominal_facts(nominal: Nominal) -> policies.NominalFacts:
    return policies.NominalFacts(
        id=nominal.id,
        area=nominal.area,
        category=Category(nominal.category),
        level=Level(nominal.level),
        lead_agency_id=nominal.lead_agency_id,
        status=nominal.status,
        level_changed_at=nominal.level_changed_at,
    )


def _involvement_query(agency_id: Any, nominal_id: Any) -> CompoundSelect[Any]:
    """Every involvement of the agency with the nominal, in one round trip (UNION ALL).

    Columns: kind (r, m, a, d, c), id, meeting id, meeting type, participation, status, first
    date, second date, a time, a level, approved parts (or purposes), a second time. The first
    branch types them all. ``r`` rows' time is when the referral closed, their second time when
    it was made. ``c`` rows are the RA's s.325(4A)(c) decisions naming the agency:
    their time is when the decision stops standing, their status whether it was revoked. ``d``
    rows (approved onward disclosures to the agency) carry their meeting's date, review date,
    level and need closure (the second time): the meeting's need ends them too. ``a`` rows' time
    is their meeting's need closure, which ends the action's involvement as well."""

    def blank(kind: Any) -> Any:
        # typed in SQL: PostgreSQL resolves a UNION's column types pairwise, left to right
        return cast(null(), kind)

    # Each branch reaches the agency's rows through the nominal's few referrals and meetings
    # (``IN`` over them, so the planner takes the composite keys), never through everything the
    # agency has ever been named in, attended or owned: SQLite, with no statistics, would
    # otherwise start from the agency's index and a read would cost its whole history.
    def nominal_meetings() -> Any:
        return select(Meeting.id).where(Meeting.nominal_id == nominal_id)

    nominal_referrals = select(Referral.id).where(Referral.nominal_id == nominal_id)
    named = select(ReferralAgency.referral_id).where(
        ReferralAgency.agency_id == agency_id, ReferralAgency.referral_id.in_(nominal_referrals)
    )
    referrals = select(
        literal("r", String()),
        Referral.id,
        blank(String()),
        blank(String()),
        blank(String()),
        blank(String()),
        blank(Date()),
        blank(Date()),
        type_coerce(Referral.closed_at, UTCDateTime()),
        blank(Integer()),
        blank(JSON()),
        type_coerce(Referral.created_at, UTCDateTime()),
    ).where(
        Referral.nominal_id == nominal_id,
        # A referral that found an existing nominal grants nothing (see cases.referrals)
        Referral.status != LINKED_REFERRAL,
        or_(Referral.referring_agency_id == agency_id, Referral.id.in_(named)),
    )
    meetings = (
        select(
            literal("m"),
            Meeting.id,
            Meeting.id,
            Meeting.meeting_type,
            MeetingAgency.participation,
            null(),
            Meeting.held_on,
            Meeting.review_date,
            Meeting.need_closed_at,
            Meeting.level_at_meeting,
            null(),
            null(),
        )
        .join(MeetingAgency, MeetingAgency.meeting_id == Meeting.id)
        .where(
            Meeting.nominal_id == nominal_id,
            MeetingAgency.agency_id == agency_id,
            MeetingAgency.meeting_id.in_(nominal_meetings()),
        )
    )
    actions = (
        select(
            literal("a"),
            Action.id,
            Action.meeting_id,
            null(),
            null(),
            Action.status,
            Action.due_date,
            Action.review_date,
            Meeting.need_closed_at,
            null(),
            null(),
            null(),
        )
        .join(Meeting, Meeting.id == Action.meeting_id)
        .where(
            Meeting.nominal_id == nominal_id,
            Action.owner_agency_id == agency_id,
            Action.meeting_id.in_(nominal_meetings()),
        )
    )
    grants = (
        select(
            literal("d"),
            OnwardDisclosureRequest.id,
            OnwardDisclosureRequest.meeting_id,
            null(),
            null(),
            OnwardDisclosureRequest.status,
            Meeting.held_on,
            Meeting.review_date,
            OnwardDisclosureRequest.decided_at,
            Meeting.level_at_meeting,
            OnwardDisclosureRequest.approved_parts,
            Meeting.need_closed_at,
        )
        .join(Meeting, Meeting.id == OnwardDisclosureRequest.meeting_id)
        .where(
            Meeting.nominal_id == nominal_id,
            OnwardDisclosureRequest.recipient_agency_id == agency_id,
        )
    )
    contributions = select(
        literal("c"),
        ContributorDecision.id,
        null(),
        null(),
        null(),
        case(
            (ContributorDecision.revoked_at.is_(None), literal(_STANDING)), else_=literal(_REVOKED)
        ),
        null(),
        null(),
        ContributorDecision.ends_at,
        null(),
        ContributorDecision.purposes,
        null(),
    ).where(
        ContributorDecision.nominal_id == nominal_id, ContributorDecision.agency_id == agency_id
    )
    return union_all(referrals, meetings, actions, grants, contributions)


#: Built once and run below SQLAlchemy's execution layer (hot path: gateway.store.direct).
_INVOLVEMENTS = Direct(_involvement_query(bindparam("agency_id"), bindparam("nominal_id")))


async def involvements(
    session: AsyncSession, agency_id: str, nominal_id: str
) -> policies.Involvements:
    """Everything that ties ``agency_id`` to ``nominal_id`` beyond being its lead or RA."""
    params = {"agency_id": agency_id, "nominal_id": nominal_id}
    rows = await _INVOLVEMENTS.rows(session, params)
    referrals, meetings, actions, grants, contributions = [], [], [], [], []
    for row in rows:
        kind, ident, meeting_id, meeting_type, part, status, d1, d2, moment, level, parts, t2 = row
        if kind == "r":
            referrals.append(
                policies.ReferralInvolvement(ident, agency_id, nominal_id, moment, referred_at=t2)
            )
        elif kind == "m":
            meetings.append(
                policies.MeetingInvolvement(
                    meeting_id=ident,
                    agency_id=agency_id,
                    nominal_id=nominal_id,
                    meeting_type=MeetingType(meeting_type),
                    participation=Participation(part),
                    held_on=d1,
                    review_date=d2,
                    need_closed_at=moment,
                    level_at_meeting=Level(level) if level is not None else None,
                )
            )
        elif kind == "a":
            actions.append(
                policies.ActionInvolvement(
                    ident, agency_id, nominal_id, meeting_id, ActionStatus(status), d1, d2, moment
                )
            )
        elif kind == "c":
            contributions.append(
                policies.ContributorDecision(
                    decision_id=ident,
                    agency_id=agency_id,
                    nominal_id=nominal_id,
                    purposes=frozenset(parts or ()),
                    ends_at=moment,
                    revoked=status == _REVOKED,
                )
            )
        elif meeting_id is not None:
            grants.append(
                policies.OnwardDisclosureGrant(
                    request_id=ident,
                    recipient_agency_id=agency_id,
                    nominal_id=nominal_id,
                    meeting_id=meeting_id,
                    status=DisclosureStatus(status),
                    approved_parts=tuple(parts or ()),
                    decided_at=moment,
                    held_on=d1,
                    review_date=d2,
                    need_closed_at=t2,
                    level_at_meeting=Level(level) if level is not None else None,
                )
            )
    return policies.Involvements(
        tuple(referrals), tuple(meetings), tuple(actions), tuple(grants), tuple(contributions)
    )


def _refused(refusal: policies.NoNeedToKnow) -> errors.NotFound:
    return errors.NotFound(diagnostics=refusal.audit_fields())


def decide_with(
    agency: policies.CallerAgency,
    nominal: Nominal,
    target: policies.Target,
    now: dt.datetime,
    tied: policies.Involvements,
) -> policies.Decision:
    """The decision with involvements already loaded (for many targets of one nominal)."""
    try:
        return policies.decide(policies.Facts(agency, nominal_facts(nominal), target, now, tied))
    except policies.NoNeedToKnow as refusal:
        raise _refused(refusal) from refusal


async def decide(
    session: AsyncSession,
    agency: policies.CallerAgency,
    nominal: Nominal,
    target: policies.Target,
    now: dt.datetime,
) -> policies.Decision:
    """The need-to-know decision for ``agency``, or the opaque 404 naming the refusing rule."""
    facts = nominal_facts(nominal)
    if not isinstance(target, policies.MinutesTarget):
        decision = policies.decide_first(
            policies.Facts(agency, facts, target, now), _WITHOUT_INVOLVEMENT
        )
        if decision is not None:
            return decision
    tied = await involvements(session, agency.id, nominal.id)
    try:
        return policies.decide(policies.Facts(agency, facts, target, now, tied))
    except policies.NoNeedToKnow as refusal:
        raise _refused(refusal) from refusal


async def decide_any(
    session: AsyncSession,
    agency: policies.CallerAgency,
    nominal: Nominal,
    targets: Sequence[policies.Target],
    now: dt.datetime,
    tied: policies.Involvements | None = None,
) -> policies.Decision:
    """The decision on the first of ``targets`` need-to-know grants ``agency``, the
    involvements loaded at most once (``tied``, if the caller has them) and only when no rule
    that needs none grants; else the 404 of the first target's refusal (``default-deny`` when
    there is no target at all)."""
    if tied is None:
        facts = nominal_facts(nominal)
        for target in targets:
            if isinstance(target, policies.MinutesTarget):
                continue
            early = policies.decide_first(
                policies.Facts(agency, facts, target, now), _WITHOUT_INVOLVEMENT
            )
            if early is not None:
                return early
        tied = await involvements(session, agency.id, nominal.id)
    first: errors.NotFound | None = None
    for target in targets:
        try:
            return decide_with(agency, nominal, target, now, tied)
        except errors.NotFound as refused:
            first = first or refused
    raise first or errors.NotFound(
        diagnostics={"rule": policies.DEFAULT_DENY, "why": "nothing it could be let see"}
    )
