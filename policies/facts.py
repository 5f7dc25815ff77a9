"""The facts a need-to-know decision is made on, as the gateway builds them from its store.

Every fact is a frozen dataclass that checks its invariants when built, so a fact that exists is
well formed: enumerations are the ones in :mod:`gateway.domain`, datetimes carry a time zone, and
every involvement names the caller and the nominal of the :class:`Facts` it sits in (an
involvement of another agency or another nominal is a bug in the caller, refused loudly).

Time is a fact too (:attr:`Facts.now`), injected, so that the end of an involvement is exact.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import ClassVar

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

__all__ = [
    "APPROVABLE_PARTS",
    "ActionInvolvement",
    "ActionTarget",
    "CallerAgency",
    "ContributorDecision",
    "ContributorDecisionsTarget",
    "Facts",
    "HazardFlagTarget",
    "Involvements",
    "Level1ListTarget",
    "MeetingInvolvement",
    "MeetingTarget",
    "MinutesTarget",
    "NominalFacts",
    "NominalTarget",
    "OnwardDisclosureGrant",
    "RecordTarget",
    "ReferralInvolvement",
    "Resource",
    "Target",
]


#: What of a meeting's minutes the chair or co-ordinator may approve for onward disclosure: whole
#: parts (``"conclusions"``) or single items of them (``"actions/<action id>"``).
APPROVABLE_PARTS = ("conclusions", "actions")


class Resource(enum.StrEnum):
    """What a caller asks to see about a nominal."""

    NOMINAL = "nominal"
    #: An information record on the nominal.
    RECORD = "record"
    #: The minutes (MAPPA B) of one meeting about the nominal.
    MINUTES = "minutes"
    #: A hazard flag (ICS ``HZD``) raised for children's services.
    HAZARD_FLAG = "hazard_flag"
    #: The nominal's entry on the monthly level 1 list (minimal fields).
    LEVEL_1_LIST = "level_1_list"
    #: The Responsible Authority's s.325(4A)(c) decisions on the nominal (who could contribute).
    CONTRIBUTOR_DECISIONS = "contributor_decisions"
    #: One meeting about the nominal: its type, dates, chair and participants (not its minutes).
    MEETING = "meeting"
    #: One action point of a meeting about the nominal.
    ACTION = "action"


def _id(value: object, what: str) -> None:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValueError(f"{what} must be a non-empty identifier")


def _is(value: object, kind: type[object], what: str) -> None:
    if not isinstance(value, kind):
        raise ValueError(f"{what} must be a {kind.__name__}, not {type(value).__name__}")


def _aware(value: dt.datetime | None, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime")


def _date(value: dt.date | None, what: str) -> None:
    if value is not None and (not isinstance(value, dt.date) or isinstance(value, dt.datetime)):
        raise ValueError(f"{what} must be a date")


@dataclass(frozen=True, slots=True)
class CallerAgency:
    """The authenticated agency that asks (from its token, never from the request body)."""

    id: str
    agency_type: AgencyType
    role: Role
    area: str

    def __post_init__(self) -> None:
        _id(self.id, "agency id")
        _is(self.agency_type, AgencyType, "agency_type")
        _is(self.role, Role, "role")
        _id(self.area, "area")


@dataclass(frozen=True, slots=True)
class NominalFacts:
    """What the policy needs to know of the nominal (no personal data)."""

    id: str
    area: str
    category: Category
    level: Level
    lead_agency_id: str
    status: NominalStatus
    #: When the level last changed: meeting involvement from before then has ended.
    level_changed_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        _id(self.id, "nominal id")
        _id(self.area, "area")
        _is(self.category, Category, "category")
        _is(self.level, Level, "level")
        _id(self.lead_agency_id, "lead agency id")
        _is(self.status, NominalStatus, "status")
        _aware(self.level_changed_at, "level_changed_at")


@dataclass(frozen=True, slots=True)
class ReferralInvolvement:
    """The caller referred the nominal, or is named as involved in a referral of it."""

    referral_id: str
    agency_id: str
    nominal_id: str
    #: When the referral was closed (screened, screened out, withdrawn); None while it is live.
    closed_at: dt.datetime | None = None
    #: When the referral was made (its involvement lasts a bounded time while unscreened).
    referred_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        _id(self.referral_id, "referral id")
        _id(self.agency_id, "agency id")
        _id(self.nominal_id, "nominal id")
        _aware(self.closed_at, "closed_at")
        _aware(self.referred_at, "referred_at")


@dataclass(frozen=True, slots=True)
class MeetingInvolvement:
    """The caller's part in one meeting about the nominal."""

    meeting_id: str
    agency_id: str
    nominal_id: str
    meeting_type: MeetingType
    participation: Participation
    held_on: dt.date
    review_date: dt.date | None = None
    #: When the chair or co-ordinator closed the meeting's need (no further sharing needed).
    need_closed_at: dt.datetime | None = None
    #: The nominal's level at the meeting: involvement ends when the level changes.
    level_at_meeting: Level | None = None

    def __post_init__(self) -> None:
        _id(self.meeting_id, "meeting id")
        _id(self.agency_id, "agency id")
        _id(self.nominal_id, "nominal id")
        _is(self.meeting_type, MeetingType, "meeting_type")
        _is(self.participation, Participation, "participation")
        _date(self.held_on, "held_on")
        _date(self.review_date, "review_date")
        _aware(self.need_closed_at, "need_closed_at")
        if self.level_at_meeting is not None:
            _is(self.level_at_meeting, Level, "level_at_meeting")


@dataclass(frozen=True, slots=True)
class ActionInvolvement:
    """An action point of a meeting about the nominal, owned by the caller."""

    action_id: str
    agency_id: str
    nominal_id: str
    meeting_id: str
    status: ActionStatus
    due_date: dt.date
    review_date: dt.date | None = None
    #: When the chair or co-ordinator closed the need of the action point's meeting: the action
    #: involves its owner no longer.
    need_closed_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        _id(self.action_id, "action id")
        _id(self.agency_id, "agency id")
        _id(self.nominal_id, "nominal id")
        _id(self.meeting_id, "meeting id")
        _is(self.status, ActionStatus, "status")
        _date(self.due_date, "due_date")
        _date(self.review_date, "review_date")
        _aware(self.need_closed_at, "need_closed_at")


@dataclass(frozen=True, slots=True)
class OnwardDisclosureGrant:
    """An onward-disclosure request of minutes to the caller, and the chair's decision."""

    request_id: str
    recipient_agency_id: str
    nominal_id: str
    meeting_id: str
    status: DisclosureStatus
    #: What the chair approved, e.g. ``("conclusions", "actions")`` or ``("actions/a-17",)``.
    approved_parts: tuple[str, ...] = ()
    decided_at: dt.datetime | None = None
    #: The meeting's need, which ends the disclosure as it ends the participants' involvement
    #: (review date, need closed, level change, deregistration). Without the meeting's date the
    #: grant grants nothing.
    held_on: dt.date | None = None
    review_date: dt.date | None = None
    need_closed_at: dt.datetime | None = None
    level_at_meeting: Level | None = None

    def __post_init__(self) -> None:
        _id(self.request_id, "request id")
        _id(self.recipient_agency_id, "recipient agency id")
        _id(self.nominal_id, "nominal id")
        _id(self.meeting_id, "meeting id")
        _is(self.status, DisclosureStatus, "status")
        _is(self.approved_parts, tuple, "approved_parts")
        for part in self.approved_parts:
            _id(part, "approved part")
        _aware(self.decided_at, "decided_at")
        _date(self.held_on, "held_on")
        _date(self.review_date, "review_date")
        _aware(self.need_closed_at, "need_closed_at")
        if self.level_at_meeting is not None:
            _is(self.level_at_meeting, Level, "level_at_meeting")


@dataclass(frozen=True, slots=True)
class ContributorDecision:
    """The Responsible Authority's s.325(4A)(c) decision that ``agency_id`` could contribute on
    the nominal, for ``purposes``, until ``ends_at`` (the end of its end date, or the moment it
    was revoked)."""

    decision_id: str
    agency_id: str
    nominal_id: str
    purposes: frozenset[str]
    ends_at: dt.datetime
    revoked: bool = False

    def __post_init__(self) -> None:
        _id(self.decision_id, "decision id")
        _id(self.agency_id, "agency id")
        _id(self.nominal_id, "nominal id")
        _is(self.purposes, frozenset, "purposes")
        if not self.purposes:
            raise ValueError("a contributor decision names at least one purpose")
        for purpose in self.purposes:
            _id(purpose, "purpose")
        if self.ends_at is None:
            raise ValueError("ends_at must be a timezone-aware datetime")
        _aware(self.ends_at, "ends_at")
        _is(self.revoked, bool, "revoked")

    def stands_at(self, now: dt.datetime) -> bool:
        """Whether the decision stands at ``now``: not revoked and not yet ended."""
        return not self.revoked and now < self.ends_at

    def why_not(self, now: dt.datetime) -> str | None:
        """None while it stands; otherwise why not (for the audit)."""
        if self.revoked:
            return f"decision {self.decision_id} was revoked"
        if now >= self.ends_at:
            return f"decision {self.decision_id} ended at {self.ends_at.isoformat()}"
        return None


@dataclass(frozen=True, slots=True)
class Involvements:
    """Everything that ties the caller to the nominal, beyond being its lead or RA agency."""

    referrals: tuple[ReferralInvolvement, ...] = ()
    meetings: tuple[MeetingInvolvement, ...] = ()
    actions: tuple[ActionInvolvement, ...] = ()
    disclosures: tuple[OnwardDisclosureGrant, ...] = ()
    #: The RA's s.325(4A)(c) decisions naming the caller for the nominal (standing or not).
    contributions: tuple[ContributorDecision, ...] = ()

    def __post_init__(self) -> None:
        for name, kind in (
            ("referrals", ReferralInvolvement),
            ("meetings", MeetingInvolvement),
            ("actions", ActionInvolvement),
            ("disclosures", OnwardDisclosureGrant),
            ("contributions", ContributorDecision),
        ):
            items = getattr(self, name)
            _is(items, tuple, name)
            for item in items:
                _is(item, kind, name)


@dataclass(frozen=True, slots=True)
class NominalTarget:
    """The nominal itself."""

    resource: ClassVar[Resource] = Resource.NOMINAL


@dataclass(frozen=True, slots=True)
class RecordTarget:
    """One information record on the nominal."""

    resource: ClassVar[Resource] = Resource.RECORD
    record_id: str
    owner_agency_id: str
    kind: RecordKind

    def __post_init__(self) -> None:
        _id(self.record_id, "record id")
        _id(self.owner_agency_id, "owner agency id")
        _is(self.kind, RecordKind, "kind")


@dataclass(frozen=True, slots=True)
class MinutesTarget:
    """The minutes of one meeting about the nominal."""

    resource: ClassVar[Resource] = Resource.MINUTES
    meeting_id: str

    def __post_init__(self) -> None:
        _id(self.meeting_id, "meeting id")


@dataclass(frozen=True, slots=True)
class MeetingTarget:
    """One meeting about the nominal (its participants, not its minutes)."""

    resource: ClassVar[Resource] = Resource.MEETING
    meeting_id: str

    def __post_init__(self) -> None:
        _id(self.meeting_id, "meeting id")


@dataclass(frozen=True, slots=True)
class ActionTarget:
    """One action point of a meeting about the nominal."""

    resource: ClassVar[Resource] = Resource.ACTION
    action_id: str
    meeting_id: str
    owner_agency_id: str

    def __post_init__(self) -> None:
        _id(self.action_id, "action id")
        _id(self.meeting_id, "meeting id")
        _id(self.owner_agency_id, "owner agency id")


@dataclass(frozen=True, slots=True)
class HazardFlagTarget:
    """One hazard flag raised on the nominal for a children's services agency."""

    resource: ClassVar[Resource] = Resource.HAZARD_FLAG
    flag_id: str
    recipient_agency_id: str
    active: bool = True

    def __post_init__(self) -> None:
        _id(self.flag_id, "flag id")
        _id(self.recipient_agency_id, "recipient agency id")
        _is(self.active, bool, "active")


@dataclass(frozen=True, slots=True)
class Level1ListTarget:
    """The nominal's entry on the monthly level 1 list."""

    resource: ClassVar[Resource] = Resource.LEVEL_1_LIST


@dataclass(frozen=True, slots=True)
class ContributorDecisionsTarget:
    """The RA's s.325(4A)(c) decisions on the nominal (the view says whose, and with what)."""

    resource: ClassVar[Resource] = Resource.CONTRIBUTOR_DECISIONS


Target = (
    NominalTarget
    | RecordTarget
    | MinutesTarget
    | HazardFlagTarget
    | Level1ListTarget
    | ContributorDecisionsTarget
    | MeetingTarget
    | ActionTarget
)
_TARGETS = (
    NominalTarget,
    RecordTarget,
    MinutesTarget,
    HazardFlagTarget,
    Level1ListTarget,
    ContributorDecisionsTarget,
    MeetingTarget,
    ActionTarget,
)


@dataclass(frozen=True, slots=True)
class Facts:
    """One question: may ``caller`` see ``target`` about ``nominal`` at ``now``?"""

    caller: CallerAgency
    nominal: NominalFacts
    target: Target
    now: dt.datetime
    involvements: Involvements = field(default_factory=Involvements)

    def __post_init__(self) -> None:
        _is(self.caller, CallerAgency, "caller")
        _is(self.nominal, NominalFacts, "nominal")
        if not isinstance(self.target, _TARGETS):
            raise ValueError(f"target must be one of the targets, not {type(self.target).__name__}")
        _aware(self.now, "now")
        _is(self.involvements, Involvements, "involvements")
        inv = self.involvements
        items: tuple[
            ReferralInvolvement | MeetingInvolvement | ActionInvolvement | ContributorDecision, ...
        ]
        items = (*inv.referrals, *inv.meetings, *inv.actions, *inv.contributions)
        for item in items:
            if item.agency_id != self.caller.id:
                raise ValueError("an involvement of another agency was passed for the caller")
            if item.nominal_id != self.nominal.id:
                raise ValueError("an involvement with another nominal was passed")
        for grant in inv.disclosures:
            if grant.recipient_agency_id != self.caller.id:
                raise ValueError("an onward disclosure to another agency was passed for the caller")
            if grant.nominal_id != self.nominal.id:
                raise ValueError("an onward disclosure about another nominal was passed")

    @property
    def resource(self) -> Resource:
        return self.target.resource
