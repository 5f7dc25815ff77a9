"""The need-to-know rules the engine knows, each a small :class:`~policies.policy.Policy`.

Each class implements one rule id of ``need_to_know.toml``: a restriction (passes or refuses) or
a grant (grants a view or refuses). Its parameters come from the data file, checked on load
against what the rule accepts. Every refusal and every ``why`` names identifiers and codes only.
"""

from __future__ import annotations

from typing import ClassVar, NoReturn

from gateway.domain import (
    ActionStatus,
    AgencyType,
    Category,
    DisclosureStatus,
    Level,
    MeetingType,
    NominalStatus,
    Participation,
    Role,
)

from ._data import Table
from ._time import END_OF_TIME, Settings, action_ended, days_after, meeting_ended
from .errors import NoNeedToKnow
from .facts import (
    APPROVABLE_PARTS,
    ActionTarget,
    Facts,
    HazardFlagTarget,
    MeetingTarget,
    MinutesTarget,
    RecordTarget,
    Resource,
)
from .policy import Allow, View

__all__ = ["END_OF_TIME", "GRANTS", "RESTRICTIONS", "Rule", "Settings", "days_after"]

#: An action point involves its owner while it is open or in progress.
_ACTIVE_ACTIONS = frozenset({ActionStatus.OPEN, ActionStatus.IN_PROGRESS})


def _granting_participations(table: Table) -> frozenset[Participation]:
    """The ``participations`` a meeting rule grants to: never ``removed`` (refused on load)."""
    participations = frozenset(table.enums("participations", Participation))
    if Participation.REMOVED in participations:
        raise ValueError("participations: an agency removed from a meeting is granted nothing")
    return participations


class Rule:
    """A leaf rule: an id, the resources it covers, and one predicate."""

    rule: ClassVar[str]
    #: Resources the rule may be configured to cover (the first is the default set when fixed).
    covers: ClassVar[frozenset[Resource]]
    #: Whether ``resources`` may be set in the data file.
    configurable_resources: ClassVar[bool] = False
    restriction: ClassVar[bool] = False
    params: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, settings: Settings, resources: frozenset[Resource], table: Table) -> None:
        self.settings = settings
        self.resources = resources
        self.policy_version = settings.policy_version
        self.configure(table)

    def configure(self, table: Table) -> None:
        """Read this rule's own parameters (beyond ``resources``)."""

    def check(self, facts: Facts) -> Allow:
        if facts.resource not in self.resources:
            if self.restriction:
                return Allow(self.rule, f"does not apply to {facts.resource}")
            self.deny(f"does not cover {facts.resource}")
        return self.evaluate(facts)

    def evaluate(self, facts: Facts) -> Allow:
        raise NotImplementedError

    def deny(self, why: str) -> NoReturn:
        raise NoNeedToKnow(why, rule=self.rule, policy_version=self.policy_version)

    def grant(self, why: str, view: View = View.FULL, parts: tuple[str, ...] = ()) -> Allow:
        return Allow(self.rule, why, view=view, approved_parts=parts)

    def passed(self, why: str) -> Allow:
        return Allow(self.rule, why)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.rule!r})"


# --------------------------------------------------------------------------- restrictions


class Category4NamedAgencies(Rule):
    rule = "category-4-named-agencies"
    covers = frozenset(Resource)
    restriction = True
    params = frozenset({"agency_types", "same_area"})

    def configure(self, table: Table) -> None:
        self.agency_types = frozenset(table.enums("agency_types", AgencyType))
        self.same_area = table.boolean("same_area", True)

    def evaluate(self, facts: Facts) -> Allow:
        caller, nominal = facts.caller, facts.nominal
        if nominal.category is not Category.TERRORISM:
            return self.passed(f"category {int(nominal.category)}, not 4")
        if caller.agency_type not in self.agency_types:
            self.deny(f"category 4: agency type {caller.agency_type} is not named")
        if self.same_area and caller.area != nominal.area:
            self.deny(f"category 4: agency area {caller.area} is not {nominal.area}")
        return self.passed(f"category 4: {caller.agency_type} of area {nominal.area} is named")


class OtherContributorRecorded(Rule):
    rule = "other-contributor-recorded"
    covers = frozenset(Resource)
    restriction = True
    params = frozenset({"roles"})

    def configure(self, table: Table) -> None:
        self.roles = frozenset(table.enums("roles", Role))

    def evaluate(self, facts: Facts) -> Allow:
        if facts.caller.role not in self.roles:
            return self.passed(f"role {facts.caller.role} needs no s.325(4A)(c) decision")
        decisions = facts.involvements.contributions
        for decision in decisions:
            if decision.stands_at(facts.now):
                return self.passed(
                    f"the RA's s.325(4A)(c) decision {decision.decision_id} stands "
                    f"until {decision.ends_at.isoformat()}"
                )
        reasons = [why for d in decisions if (why := d.why_not(facts.now))]
        self.deny("; ".join(reasons) or "the RA recorded no s.325(4A)(c) decision for this agency")


class Level1MonthlyListOnly(Rule):
    rule = "level-1-monthly-list-only"
    covers = frozenset({Resource.NOMINAL, Resource.RECORD})
    configurable_resources = True
    restriction = True

    def evaluate(self, facts: Facts) -> Allow:
        if facts.nominal.level is Level.LEAD_AGENCY:
            self.deny("level 1: other agencies see it through the monthly level 1 list only")
        return self.passed(f"level {int(facts.nominal.level)}, not 1")


# --------------------------------------------------------------------------------- grants


class LeadAgency(Rule):
    rule = "lead-agency"
    covers = frozenset({Resource.NOMINAL, Resource.RECORD, Resource.HAZARD_FLAG})
    configurable_resources = True

    def evaluate(self, facts: Facts) -> Allow:
        if facts.caller.id != facts.nominal.lead_agency_id:
            self.deny(f"the lead agency is {facts.nominal.lead_agency_id}")
        if facts.nominal.status is not NominalStatus.ACTIVE:
            self.deny("the nominal is deregistered")
        return self.grant("the caller is the lead agency")


class ResponsibleAuthorityOfArea(Rule):
    rule = "responsible-authority-of-area"
    covers = frozenset(
        {
            Resource.NOMINAL,
            Resource.RECORD,
            Resource.HAZARD_FLAG,
            Resource.CONTRIBUTOR_DECISIONS,
        }
    )
    configurable_resources = True
    params = frozenset({"agency_types"})

    def configure(self, table: Table) -> None:
        self.agency_types = frozenset(table.enums("agency_types", AgencyType))

    def evaluate(self, facts: Facts) -> Allow:
        caller = facts.caller
        if caller.role is not Role.RESPONSIBLE_AUTHORITY:
            self.deny(f"role {caller.role} is not the Responsible Authority")
        if caller.agency_type not in self.agency_types:
            self.deny(f"agency type {caller.agency_type} is not a Responsible Authority type")
        if caller.area != facts.nominal.area:
            self.deny(f"the nominal is managed in area {facts.nominal.area}, not {caller.area}")
        return self.grant(f"Responsible Authority ({caller.agency_type}) of area {caller.area}")


class RecordOwner(Rule):
    rule = "record-owner"
    covers = frozenset({Resource.RECORD})
    configurable_resources = True

    def evaluate(self, facts: Facts) -> Allow:
        target = facts.target
        if not isinstance(target, RecordTarget):
            self.deny("not a record target")
        if target.owner_agency_id != facts.caller.id:
            self.deny(f"record {target.record_id} was supplied by {target.owner_agency_id}")
        return self.grant(f"the caller supplied record {target.record_id}")


class InvolvedReferral(Rule):
    rule = "involved-referral"
    covers = frozenset({Resource.NOMINAL, Resource.RECORD})
    configurable_resources = True

    def evaluate(self, facts: Facts) -> Allow:
        referrals = facts.involvements.referrals
        if not referrals:
            self.deny("no referral involvement")
        if facts.nominal.status is not NominalStatus.ACTIVE:
            self.deny("referral involvement ended: the nominal is deregistered")
        ended = []
        days = self.settings.referral_open_days
        for referral in referrals:
            if referral.closed_at is not None and facts.now >= referral.closed_at:
                ended.append(
                    f"referral {referral.referral_id} closed {referral.closed_at.isoformat()}"
                )
            elif referral.referred_at is not None and self.settings.today(facts.now) > days_after(
                self.settings.today(referral.referred_at), days
            ):
                ended.append(
                    f"referral {referral.referral_id} open more than {days} days unscreened"
                )
            else:
                return self.grant(f"involved in open referral {referral.referral_id}")
        self.deny("referral involvement ended: " + "; ".join(ended))


class InvolvedMeeting(Rule):
    """Any live part in a meeting about the nominal; for one meeting (the meeting resource), a
    live part in that meeting."""

    rule = "involved-meeting"
    covers = frozenset({Resource.NOMINAL, Resource.RECORD, Resource.MEETING})
    configurable_resources = True
    params = frozenset({"participations", "meeting_types"})

    def configure(self, table: Table) -> None:
        self.participations = _granting_participations(table)
        self.meeting_types = frozenset(table.enums("meeting_types", MeetingType))

    def evaluate(self, facts: Facts) -> Allow:
        target = facts.target
        only = target.meeting_id if isinstance(target, MeetingTarget) else None
        if facts.resource is Resource.MEETING and only is None:
            self.deny("not a meeting target")
        reasons = []
        for meeting in facts.involvements.meetings:
            if only is not None and meeting.meeting_id != only:
                continue
            if meeting.participation not in self.participations:
                reasons.append(f"{meeting.meeting_id}: {meeting.participation} grants nothing")
            elif meeting.meeting_type not in self.meeting_types:
                reasons.append(f"{meeting.meeting_id}: {meeting.meeting_type} grants nothing")
            elif (ended := meeting_ended(self.settings, facts, meeting)) is not None:
                reasons.append(f"{meeting.meeting_id}: involvement ended: {ended}")
            else:
                return self.grant(
                    f"{meeting.participation} {meeting.meeting_type} meeting {meeting.meeting_id}"
                )
        none = f"took no part in meeting {only}" if only else "no meeting involvement"
        self.deny("; ".join(reasons) or none)


class InvolvedAction(Rule):
    """Owning an open action point of a meeting about the nominal; for one action point (the
    action resource), owning that one while it is open, until the meeting's need is closed or
    the owner is taken off the meeting."""

    rule = "involved-action"
    covers = frozenset({Resource.NOMINAL, Resource.RECORD, Resource.ACTION})
    configurable_resources = True

    def evaluate(self, facts: Facts) -> Allow:
        target = facts.target
        only = target.action_id if isinstance(target, ActionTarget) else None
        if facts.resource is Resource.ACTION and only is None:
            self.deny("not an action target")
        actions = tuple(a for a in facts.involvements.actions if only in (None, a.action_id))
        if not actions:
            self.deny(f"does not own action point {only}" if only else "owns no action point")
        if facts.nominal.status is not NominalStatus.ACTIVE:
            self.deny("action involvement ended: the nominal is deregistered")
        today = self.settings.today(facts.now)
        reasons = []
        for action in actions:
            review = action.review_date or action.due_date
            if action.status not in _ACTIVE_ACTIONS:
                reasons.append(f"action {action.action_id} is {action.status}")
            elif (ended := action_ended(facts, action)) is not None:
                reasons.append(f"action {action.action_id}: {ended}")
            elif today > review:
                reasons.append(f"action {action.action_id} review date {review} has passed")
            else:
                return self.grant(f"owns open action {action.action_id} (review {review})")
        self.deny("; ".join(reasons))


class MinutesParticipant(Rule):
    """A participant of the meeting sees its minutes, and (the action resource) its action
    points, which are part of the minutes."""

    rule = "minutes-participant"
    covers = frozenset({Resource.MINUTES, Resource.ACTION})
    configurable_resources = True
    params = frozenset({"participations", "meeting_types"})

    def configure(self, table: Table) -> None:
        self.participations = _granting_participations(table)
        self.meeting_types = frozenset(table.enums("meeting_types", MeetingType))

    def evaluate(self, facts: Facts) -> Allow:
        target = facts.target
        if not isinstance(target, MinutesTarget | ActionTarget):
            self.deny("not a minutes or action target")
        reasons = []
        for meeting in facts.involvements.meetings:
            if meeting.meeting_id != target.meeting_id:
                continue
            if meeting.participation not in self.participations:
                reasons.append(
                    f"{meeting.participation} to meeting {meeting.meeting_id}: not a participant; "
                    "minutes need the chair's or co-ordinator's approval"
                )
            elif meeting.meeting_type not in self.meeting_types:
                reasons.append(f"minutes of {meeting.meeting_type} meetings are not shared")
            elif (ended := meeting_ended(self.settings, facts, meeting)) is not None:
                reasons.append(f"involvement in meeting {meeting.meeting_id} ended: {ended}")
            else:
                return self.grant(f"{meeting.participation} meeting {meeting.meeting_id}")
        self.deny("; ".join(reasons) or f"took no part in meeting {target.meeting_id}")


class MinutesMappaCoordinator(Rule):
    """The MAPPA co-ordination unit of the nominal's area: the minutes, and (as configured) the
    area's meetings and action points, which it co-ordinates."""

    rule = "minutes-mappa-coordinator"
    covers = frozenset({Resource.MINUTES, Resource.MEETING, Resource.ACTION})
    configurable_resources = True
    params = frozenset({"agency_types"})

    def configure(self, table: Table) -> None:
        self.agency_types = frozenset(table.enums("agency_types", AgencyType))

    def evaluate(self, facts: Facts) -> Allow:
        caller = facts.caller
        if caller.agency_type not in self.agency_types:
            self.deny(f"agency type {caller.agency_type} is not the MAPPA co-ordination unit")
        if caller.area != facts.nominal.area:
            self.deny(f"co-ordination unit of area {caller.area}, not {facts.nominal.area}")
        return self.grant(f"MAPPA co-ordination unit of area {caller.area}")


class OnwardDisclosureApproved(Rule):
    rule = "onward-disclosure-approved"
    covers = frozenset({Resource.MINUTES})
    params = frozenset({"parts"})

    def configure(self, table: Table) -> None:
        self.parts = frozenset(table.strings("parts"))
        if not self.parts <= set(APPROVABLE_PARTS):
            raise ValueError(f"parts must be among {list(APPROVABLE_PARTS)}")

    def _valid(self, part: str) -> bool:
        name, slash, item = part.partition("/")
        return name in self.parts and (not slash or bool(item))

    def evaluate(self, facts: Facts) -> Allow:
        target = facts.target
        if not isinstance(target, MinutesTarget):
            self.deny("not a minutes target")
        if facts.nominal.status is not NominalStatus.ACTIVE:
            self.deny("the nominal is deregistered")
        parts: list[str] = []
        requests = []
        ended = []
        for grant in facts.involvements.disclosures:
            if (
                grant.meeting_id != target.meeting_id
                or grant.status is not DisclosureStatus.APPROVED
            ):
                continue
            # the meeting's need ends the disclosure as it ends the participants' access
            if (why := meeting_ended(self.settings, facts, grant)) is not None:
                ended.append(f"onward disclosure {grant.request_id} ended: {why}")
                continue
            requests.append(grant.request_id)
            parts.extend(p for p in grant.approved_parts if self._valid(p) and p not in parts)
        if not requests:
            self.deny(
                "; ".join(ended) or f"no approved onward disclosure of meeting {target.meeting_id}"
            )
        if not parts:
            self.deny(f"approved requests {', '.join(requests)} name no part that may be shared")
        return self.grant(
            f"onward disclosure approved ({', '.join(requests)})", View.APPROVED_PARTS, tuple(parts)
        )


class HazardFlagRecipient(Rule):
    rule = "hazard-flag-recipient"
    covers = frozenset({Resource.HAZARD_FLAG})
    params = frozenset({"agency_types"})

    def configure(self, table: Table) -> None:
        self.agency_types = frozenset(table.enums("agency_types", AgencyType))

    def evaluate(self, facts: Facts) -> Allow:
        target = facts.target
        if not isinstance(target, HazardFlagTarget):
            self.deny("not a hazard flag target")
        if target.recipient_agency_id != facts.caller.id:
            self.deny(f"flag {target.flag_id} was raised for {target.recipient_agency_id}")
        if facts.caller.agency_type not in self.agency_types:
            self.deny(f"agency type {facts.caller.agency_type} does not receive hazard flags")
        if not target.active:
            self.deny(f"flag {target.flag_id} is no longer active")
        if facts.nominal.status is not NominalStatus.ACTIVE:
            self.deny("the nominal is deregistered")
        return self.grant(f"recipient of flag {target.flag_id}", View.HAZARD_FLAG_ONLY)


class Level1MonthlyList(Rule):
    rule = "level-1-monthly-list"
    covers = frozenset({Resource.LEVEL_1_LIST})
    params = frozenset({"roles"})

    def configure(self, table: Table) -> None:
        self.roles = frozenset(table.enums("roles", Role))

    def evaluate(self, facts: Facts) -> Allow:
        caller, nominal = facts.caller, facts.nominal
        if nominal.level is not Level.LEAD_AGENCY:
            self.deny(f"level {int(nominal.level)}: not on the level 1 list")
        if nominal.status is not NominalStatus.ACTIVE:
            self.deny("the nominal is deregistered")
        if caller.role not in self.roles:
            self.deny(f"role {caller.role} does not receive the level 1 list")
        if caller.area != nominal.area:
            self.deny(f"the list of area {nominal.area} is not for area {caller.area}")
        return self.grant(f"level 1 list of area {caller.area}", View.MONTHLY_LIST_MINIMAL)


class ContributorNamedInDecision(Rule):
    """An other contributor sees the RA's s.325(4A)(c) decisions that name it, and only those,
    without the RA's reasons (the restriction ``other-contributor-recorded`` keeps it to while
    one of them stands)."""

    rule = "contributor-named-in-decision"
    covers = frozenset({Resource.CONTRIBUTOR_DECISIONS})
    params = frozenset({"roles"})

    def configure(self, table: Table) -> None:
        self.roles = frozenset(table.enums("roles", Role))

    def evaluate(self, facts: Facts) -> Allow:
        if facts.caller.role not in self.roles:
            self.deny(f"role {facts.caller.role} is not named in s.325(4A)(c) decisions")
        decisions = facts.involvements.contributions
        if not decisions:
            self.deny("no s.325(4A)(c) decision on this nominal names the caller")
        named = ", ".join(d.decision_id for d in decisions)
        return self.grant(f"named in decisions {named}", View.OWN_CONTRIBUTOR_DECISIONS)


#: Restrictions in evaluation order.
RESTRICTIONS: tuple[type[Rule], ...] = (
    Category4NamedAgencies,
    OtherContributorRecorded,
    Level1MonthlyListOnly,
)
#: Grants in evaluation order (the first that grants decides the view).
GRANTS: tuple[type[Rule], ...] = (
    LeadAgency,
    ResponsibleAuthorityOfArea,
    RecordOwner,
    InvolvedReferral,
    InvolvedMeeting,
    InvolvedAction,
    MinutesParticipant,
    MinutesMappaCoordinator,
    OnwardDisclosureApproved,
    HazardFlagRecipient,
    Level1MonthlyList,
    ContributorNamedInDecision,
)
