"""s.325(4A)(c) in the policies: the RA's recorded decision, for one agency and one nominal,
while it stands. One row per rule, with what makes it hold or fail."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.domain import AgencyType, Role
from policies import (
    POLICY_VERSION,
    BasisNotRecordedForNominal,
    ContributorDecision,
    ContributorDecisionsTarget,
    LawfulBasisRefused,
    NoNeedToKnow,
    RecordedContributions,
    RoleNotAllowed,
    View,
    check,
    decide,
    default_policy_set,
)
from tests.policies.policies_support import (
    NOMINAL_ID,
    NOW,
    agency,
    contribution,
    facts,
    meeting,
)

BASIS = "CJA2003-s325-4A-c"
CONDITION = "condition:nominal-recorded-other-contributor"
ME = "victim-support-barnet"
SOMEONE_ELSE = "circles-barnet"
A, RA, OTHER, DTC = (
    AgencyType,
    Role.RESPONSIBLE_AUTHORITY,
    Role.OTHER_CONTRIBUTOR,
    Role.DUTY_TO_COOPERATE,
)
HOUR = dt.timedelta(hours=1)
END_OF_TIME = dt.datetime.max.replace(tzinfo=dt.UTC)

STANDING = contribution(ME)
ENDED = contribution(ME, decision_id="cd-ended", ends_at=NOW - HOUR)
ENDS_NOW = contribution(ME, decision_id="cd-now", ends_at=NOW)
REVOKED = contribution(ME, decision_id="cd-revoked", revoked=True)
OTHERS = contribution(SOMEONE_ELSE, decision_id="cd-others")
ASSESS_ONLY = contribution(ME, decision_id="cd-assess", purposes=frozenset({"risk-assessment"}))


def _recorded(*decisions: ContributorDecision) -> RecordedContributions:
    return RecordedContributions(ME, NOMINAL_ID, decisions, NOW)


ALLOWED = [
    # the contributor's own standing decision, for a purpose it covers
    pytest.param(OTHER, A.OTHER, "risk-assessment", (STANDING,), "cd-1", id="own-standing"),
    # a revoked decision beside a standing one: the standing one is relied on
    pytest.param(OTHER, A.OTHER, "mappa-meeting", (REVOKED, STANDING), "cd-1", id="one-stands"),
    # a decision limited to risk assessment, used for risk assessment
    pytest.param(OTHER, A.OTHER, "risk-assessment", (ASSESS_ONLY,), "cd-assess",
                 id="purpose-covered"),
    # the RA relies on any decision standing on the nominal (sharing with that contributor)
    pytest.param(RA, A.POLICE, "risk-assessment", (OTHERS,), "cd-others", id="ra-any-standing"),
]  # fmt: skip


@pytest.mark.parametrize(("role", "agency_type", "purpose", "decisions", "relied_on"), ALLOWED)
def test_basis_holds_while_a_decision_stands(
    role: Role,
    agency_type: AgencyType,
    purpose: str,
    decisions: tuple[ContributorDecision, ...],
    relied_on: str,
) -> None:
    """The decision allowed names the RA's decision it relied on, for the audit."""
    allowed = check(BASIS, purpose, role, agency_type, _recorded(*decisions))
    assert allowed.contributor_decision == relied_on
    assert allowed.policy_version == POLICY_VERSION


REFUSED = [
    # nothing recorded for the nominal
    pytest.param(OTHER, A.OTHER, "risk-assessment", (), BasisNotRecordedForNominal, "none",
                 id="none-recorded"),
    # the end date has passed
    pytest.param(OTHER, A.OTHER, "risk-assessment", (ENDED,), BasisNotRecordedForNominal,
                 "ended", id="ended"),
    # the end is exclusive: at the very moment it ends it no longer stands
    pytest.param(OTHER, A.OTHER, "risk-assessment", (ENDS_NOW,), BasisNotRecordedForNominal,
                 "ended", id="ends-now"),
    # the RA revoked it
    pytest.param(OTHER, A.OTHER, "risk-assessment", (REVOKED,), BasisNotRecordedForNominal,
                 "revoked", id="revoked"),
    # the decision names another contributor
    pytest.param(OTHER, A.OTHER, "risk-assessment", (OTHERS,), BasisNotRecordedForNominal,
                 "none", id="other-agency"),
    # a purpose the decision does not cover
    pytest.param(OTHER, A.OTHER, "mappa-meeting", (ASSESS_ONLY,), BasisNotRecordedForNominal,
                 "purpose", id="purpose-not-covered"),
    # the RA with no decision standing on the nominal
    pytest.param(RA, A.POLICE, "risk-assessment", (ENDED,), BasisNotRecordedForNominal, "ended",
                 id="ra-none-standing"),
    # a DTC agency named in a decision still may not claim the basis (role rule first)
    pytest.param(DTC, A.HOUSING, "risk-assessment", (contribution(ME),), RoleNotAllowed, "role",
                 id="dtc-named"),
]  # fmt: skip


@pytest.mark.parametrize(("role", "agency_type", "purpose", "decisions", "error", "why"), REFUSED)
def test_basis_refused_unless_a_decision_stands(
    role: Role,
    agency_type: AgencyType,
    purpose: str,
    decisions: tuple[ContributorDecision, ...],
    error: type[LawfulBasisRefused],
    why: str,
) -> None:
    """Each refusal names its rule; the audit's reason says which decision failed and why."""
    with pytest.raises(error) as caught:
        check(BASIS, purpose, role, agency_type, _recorded(*decisions))
    assert type(caught.value) is error
    assert caught.value.policy_version == POLICY_VERSION
    if error is BasisNotRecordedForNominal:
        assert caught.value.rule == CONDITION
        assert why in caught.value.why


def test_no_nominal_cannot_satisfy_the_condition_and_deferral_is_explicit() -> None:
    """A call about no single nominal is refused; the pre-read check defers only when told."""
    with pytest.raises(BasisNotRecordedForNominal):
        check(BASIS, "risk-assessment", OTHER, A.OTHER, None)
    deferred = check(BASIS, "risk-assessment", OTHER, A.OTHER, None, defer_nominal_conditions=True)
    assert deferred.contributor_decision is None
    assert default_policy_set().legal_bases.needs_nominal(BASIS)
    assert not default_policy_set().legal_bases.needs_nominal("CJA2003-s325-4")


NEED_TO_KNOW = [
    # other-contributor-recorded holds: a standing decision and a meeting it attended
    pytest.param((STANDING,), True, "involved-meeting", id="standing-attended"),
    # other-contributor-recorded refuses: the decision ended
    pytest.param((ENDED,), True, "other-contributor-recorded", id="ended"),
    # other-contributor-recorded refuses: the decision was revoked
    pytest.param((REVOKED,), True, "other-contributor-recorded", id="revoked"),
    # other-contributor-recorded refuses: nothing recorded
    pytest.param((), True, "other-contributor-recorded", id="none"),
    # default-deny: a decision alone grants nothing; an involvement is still needed
    pytest.param((STANDING,), False, "default-deny", id="decision-without-involvement"),
]


@pytest.mark.parametrize(("decisions", "attended", "rule"), NEED_TO_KNOW)
def test_need_to_know_restriction_follows_the_decision(
    decisions: tuple[ContributorDecision, ...], attended: bool, rule: str
) -> None:
    """The restriction holds an other contributor to a standing decision naming it."""
    caller = agency(A.OTHER, OTHER, agency_id=ME)
    row = facts(caller, meetings=(meeting(caller),) if attended else (), contributions=decisions)
    if rule == "involved-meeting":
        assert decide(row).rule == rule
        return
    with pytest.raises(NoNeedToKnow) as caught:
        decide(row)
    assert caught.value.rule == rule


LISTING = [
    # contributor-named-in-decision: with its decision standing, it lists its own decisions,
    # without the RA's reasons, and needs no other tie to the case to do so
    pytest.param(OTHER, A.OTHER, (STANDING,), "contributor-named-in-decision",
                 View.OWN_CONTRIBUTOR_DECISIONS, id="own-standing"),
    # contributor-named-in-decision: a revoked decision beside a standing one is listed too
    pytest.param(OTHER, A.OTHER, (REVOKED, STANDING), "contributor-named-in-decision",
                 View.OWN_CONTRIBUTOR_DECISIONS, id="revoked-beside-standing"),
    # other-contributor-recorded: once every decision naming it has ended, it lists nothing
    pytest.param(OTHER, A.OTHER, (ENDED, REVOKED), "other-contributor-recorded", None,
                 id="all-ended"),
    # other-contributor-recorded: nor before any is recorded
    pytest.param(OTHER, A.OTHER, (), "other-contributor-recorded", None, id="none-recorded"),
    # responsible-authority-of-area: the RA lists every decision, with the reasons
    pytest.param(RA, A.POLICE, (), "responsible-authority-of-area", View.FULL, id="ra"),
    # default-deny: a DTC agency lists none, whatever else it may see
    pytest.param(DTC, A.HOUSING, (), "default-deny", None, id="dtc"),
]  # fmt: skip


@pytest.mark.parametrize(("role", "agency_type", "decisions", "rule", "view"), LISTING)
def test_who_may_list_the_decisions(
    role: Role,
    agency_type: AgencyType,
    decisions: tuple[ContributorDecision, ...],
    rule: str,
    view: View | None,
) -> None:
    """The decisions on a nominal: all of them to the RA, a contributor's own while one stands."""
    caller = agency(agency_type, role, agency_id=ME)
    row = facts(caller, target=ContributorDecisionsTarget(), contributions=decisions)
    if view is None:
        with pytest.raises(NoNeedToKnow) as caught:
            decide(row)
        assert caught.value.rule == rule
        return
    allowed = decide(row)
    assert (allowed.rule, allowed.view) == (rule, view)
    assert allowed.policy_version == POLICY_VERSION


def test_restriction_does_not_apply_to_the_responsible_authority() -> None:
    """The police of the area need no s.325(4A)(c) decision to see the case."""
    assert decide(facts(agency(A.POLICE))).rule == "responsible-authority-of-area"


def test_facts_refuse_malformed_or_misplaced_decisions() -> None:
    """A decision of another agency or nominal, a naive end, or no purpose is a bug: refused."""
    caller = agency(A.OTHER, OTHER, agency_id=ME)
    with pytest.raises(ValueError, match="another agency"):
        facts(caller, contributions=(OTHERS,))
    with pytest.raises(ValueError, match="another nominal"):
        RecordedContributions(
            ME, NOMINAL_ID, (ContributorDecision("x", ME, "nom-2", frozenset({"a"}), NOW),), NOW
        )
    with pytest.raises(ValueError, match="timezone-aware"):
        ContributorDecision("x", ME, NOMINAL_ID, frozenset({"a"}), NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="purpose"):
        ContributorDecision("x", ME, NOMINAL_ID, frozenset(), NOW)


@pytest.mark.parametrize(
    ("day", "end"),
    [
        # GMT: the end of 23 November is midnight UTC
        (dt.date(2026, 11, 23), dt.datetime(2026, 11, 24, 0, 0, tzinfo=dt.UTC)),
        # BST: the end of 1 July is 23:00 UTC
        (dt.date(2026, 7, 1), dt.datetime(2026, 7, 1, 23, 0, tzinfo=dt.UTC)),
        # the calendar's last day has no next midnight: it ends at the end of time
        (dt.date.max, END_OF_TIME),
    ],
)
def test_an_end_date_ends_at_midnight_in_london(day: dt.date, end: dt.datetime) -> None:
    assert default_policy_set().need_to_know.settings.end_of(day) == end


def test_a_decision_ending_on_the_calendars_last_day_stands() -> None:
    """A decision ending on 31 December 9999 (stored, or arriving by any path) never makes a
    decision fail: it stands, for need-to-know and for the lawful basis alike."""
    ends_at = default_policy_set().need_to_know.settings.end_of(dt.date.max)
    forever = contribution(ME, decision_id="cd-forever", ends_at=ends_at)
    caller = agency(A.OTHER, OTHER, agency_id=ME)
    row = facts(caller, meetings=(meeting(caller),), contributions=(forever,))
    assert decide(row).rule == "involved-meeting"
    allowed = check(BASIS, "risk-assessment", OTHER, A.OTHER, _recorded(forever))
    assert allowed.contributor_decision == "cd-forever"
