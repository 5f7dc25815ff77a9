"""AllOf / AnyOf composition, Unsafe policies, and explain."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from gateway.domain import AgencyType, Participation
from policies import (
    POLICY_VERSION,
    AllOf,
    Allow,
    AnyOf,
    MinutesTarget,
    NoNeedToKnow,
    UnsafeAllowAll,
    View,
    default_policy_set,
    explain,
    render_explanation,
)
from policies.facts import Facts
from tests.policies.policies_support import agency, facts, meeting

ROW = facts(agency(AgencyType.HOUSING))


class Grants:
    """A test policy that grants ``view`` (or passes, with no view)."""

    policy_version = "test"

    def __init__(self, rule: str, view: View | None, parts: tuple[str, ...] = ()) -> None:
        self.rule = rule
        self.view = view
        self.parts = parts

    def check(self, facts: Facts) -> Allow:
        return Allow(self.rule, "granted", view=self.view, approved_parts=self.parts)


class Refuses:
    policy_version = "test"

    def __init__(self, rule: str) -> None:
        self.rule = rule

    def check(self, facts: Facts) -> Allow:
        raise NoNeedToKnow("refused", rule=self.rule, policy_version="test")


def test_empty_allof_denies() -> None:
    """An AllOf with no members refuses, naming itself."""
    with pytest.raises(NoNeedToKnow) as caught:
        AllOf(rule="empty").check(ROW)
    assert caught.value.rule == "empty"


def test_empty_anyof_denies() -> None:
    """An AnyOf with no members refuses, naming itself."""
    with pytest.raises(NoNeedToKnow) as caught:
        AnyOf(rule="nothing").check(ROW)
    assert caught.value.rule == "nothing"


def test_allof_of_restrictions_alone_grants_nothing() -> None:
    """Restrictions that hold pass, but never grant a view by themselves."""
    allowed = AllOf(Grants("guard-a", None), Grants("guard-b", None)).check(ROW)
    assert not allowed.grants
    assert allowed.trail == ("guard-a", "guard-b")


def test_allof_fails_on_its_first_refusal() -> None:
    """One refusing member refuses the AllOf with that member's rule."""
    with pytest.raises(NoNeedToKnow) as caught:
        AllOf(Grants("a", View.FULL), Refuses("b"), Grants("c", View.FULL)).check(ROW)
    assert caught.value.rule == "b"


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        # full narrowed by the monthly list is the monthly list.
        (View.FULL, View.MONTHLY_LIST_MINIMAL, View.MONTHLY_LIST_MINIMAL),
        # and in the other order.
        (View.HAZARD_FLAG_ONLY, View.FULL, View.HAZARD_FLAG_ONLY),
        # two different narrow views do not meet: nothing is granted.
        (View.HAZARD_FLAG_ONLY, View.MONTHLY_LIST_MINIMAL, None),
    ],
)
def test_allof_narrows_views(first: View, second: View, expected: View | None) -> None:
    """AllOf grants the intersection of its members' views."""
    policy = AllOf(Grants("a", first), Grants("b", second))
    if expected is None:
        with pytest.raises(NoNeedToKnow):
            policy.check(ROW)
    else:
        assert policy.check(ROW).view is expected


def test_allof_intersects_approved_parts() -> None:
    """Two approvals together grant only the parts both approved."""
    policy = AllOf(
        Grants("a", View.APPROVED_PARTS, ("conclusions", "actions")),
        Grants("b", View.APPROVED_PARTS, ("actions",)),
    )
    assert policy.check(ROW).approved_parts == ("actions",)


def test_anyof_takes_the_first_that_allows_and_lists_every_refusal() -> None:
    """AnyOf grants with its first allowing member; when none allows, every reason is kept."""
    assert AnyOf(Refuses("a"), Grants("b", View.FULL)).check(ROW).rule == "b"
    with pytest.raises(NoNeedToKnow) as caught:
        AnyOf(Refuses("a"), AnyOf(Refuses("b"), Refuses("c")), rule="outer").check(ROW)
    assert caught.value.rule == "outer"
    assert caught.value.diagnostics["refusals"] == [
        ["a", "refused"],
        ["b", "refused"],
        ["c", "refused"],
    ]


def test_unsafe_allow_all_logs_a_warning_each_time_it_is_used() -> None:
    """UnsafeAllowAll grants, and says so in the operational log with ids only."""
    policy = UnsafeAllowAll()
    with capture_logs() as logs:
        policy.check(ROW)
        policy.check(ROW)
    assert [entry["log_level"] for entry in logs] == ["warning", "warning"]
    assert logs[0]["event"] == "unsafe_policy_used"
    assert logs[0]["agency_id"] == ROW.caller.id
    assert logs[0]["nominal_id"] == ROW.nominal.id


def test_unsafe_allow_all_cannot_invent_approved_parts() -> None:
    """Even the unsafe policy refuses to fabricate an onward-disclosure approval."""
    with pytest.raises(ValueError, match="approved parts"):
        UnsafeAllowAll(View.APPROVED_PARTS)


def test_allow_validates_its_invariants() -> None:
    """Approved parts go with the approved-parts view and only with it."""
    with pytest.raises(ValueError):
        Allow("r", "why", view=View.APPROVED_PARTS)
    with pytest.raises(ValueError):
        Allow("r", "why", view=View.FULL, approved_parts=("actions",))


def test_explain_lists_every_rule_for_the_resource_once_in_evaluation_order() -> None:
    """explain names each rule that applies to the resource, matched or not, with a reason."""
    housing = agency(AgencyType.HOUSING)
    row = facts(housing, meetings=(meeting(housing),))
    lines = explain(row)
    assert [line.rule for line in lines] == [
        "category-4-named-agencies",
        "other-contributor-recorded",
        "lead-agency",
        "responsible-authority-of-area",
        "level-1-monthly-list-only",
        "involved-referral",
        "involved-meeting",
        "involved-action",
    ]
    assert {line.rule for line in lines if line.matched} == {
        "category-4-named-agencies",
        "other-contributor-recorded",
        "level-1-monthly-list-only",
        "involved-meeting",
    }
    assert all(line.why for line in lines)


def test_render_explanation_says_who_what_and_the_decision() -> None:
    """The text form names the agency, nominal, resource, each rule and the outcome."""
    jcp = agency(AgencyType.JOBCENTRE_PLUS)
    row = facts(
        jcp, target=MinutesTarget("meet-1"), meetings=(meeting(jcp, Participation.INVITED),)
    )
    text = render_explanation(row)
    assert text.startswith(f"policy {POLICY_VERSION}\n")
    assert f"agency   {jcp.id} (jobcentre_plus, duty_to_cooperate" in text
    assert "resource minutes" in text
    assert "[ ] minutes-participant" in text and "not a participant" in text
    assert "] lead-agency " not in text
    assert text.rstrip().endswith("REFUSED by default-deny: no rule allows")


def test_render_explanation_of_a_grant() -> None:
    """An allowed request ends with the granting rule and the view."""
    police = agency(AgencyType.POLICE)
    text = default_policy_set().need_to_know.render_explanation(facts(police))
    assert "[x] responsible-authority-of-area" in text
    assert text.rstrip().endswith("ALLOWED by responsible-authority-of-area: view full")
