"""Need-to-know, default deny: may this agency see this nominal, record, minutes, flag, entry or
s.325(4A)(c) decision?

The rules are reviewed data (``policies/data/need_to_know.toml``); this module builds them into
the composition below, once per resource with only the branches that apply to that resource (the
nominal's tree has no minutes rules, the minutes' tree no involvement rules), and decides::

    AllOf(rule="need-to-know")
    ├── category-4-named-agencies          restrictions: each must hold
    ├── other-contributor-recorded
    └── AnyOf(rule="default-deny")         grants: the first that grants decides the view
        ├── lead-agency
        ├── responsible-authority-of-area
        ├── record-owner
        ├── AllOf(rule="involvement")
        │   ├── level-1-monthly-list-only
        │   └── AnyOf(rule="no-live-involvement")
        │       ├── involved-referral
        │       ├── involved-meeting
        │       └── involved-action
        ├── minutes-participant
        ├── minutes-mappa-coordinator
        ├── onward-disclosure-approved
        ├── hazard-flag-recipient
        ├── level-1-monthly-list
        └── contributor-named-in-decision

A rule left out of the data file is left out of the tree (it grants nothing); an empty file
denies everything. Before any of it, a nominal whose case data the Responsible Authority erased
is refused to everyone (:data:`NOMINAL_ERASED`): not a rule of the data file, which could be
left out, but what erasure means (its data is gone; it is as an id that does not exist).
:func:`decide` returns a frozen :class:`Decision` (rule, view, policy version) or raises
:class:`~policies.errors.NoNeedToKnow` with the refusing rule; :func:`explain` and
:func:`render_explanation` say, rule by rule, why (``mappa-gateway policy explain``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.domain import NominalStatus

from ._data import DataFiles, Table, read_data
from ._rules import GRANTS, RESTRICTIONS, Rule, Settings
from .errors import NoNeedToKnow
from .facts import Facts, Resource
from .policy import AllOf, Allow, AnyOf, Policy, View, leaves

__all__ = [
    "DEFAULT_DENY",
    "NOMINAL_ERASED",
    "Decision",
    "Explanation",
    "NeedToKnowPolicy",
    "decide",
    "decide_first",
    "explain",
    "load_need_to_know",
    "render_explanation",
]

_FILE = "need_to_know.toml"
DEFAULT_DENY = "default-deny"
#: The refusal of anything about an erased nominal, whoever asks (the engine's, not the file's).
NOMINAL_ERASED = "nominal-erased"
_ERASED_WHY = "the Responsible Authority erased the nominal's case data"
_INVOLVEMENT = ("involved-referral", "involved-meeting", "involved-action")


@dataclass(frozen=True, slots=True)
class Decision:
    """The caller may see the resource in ``view``; ``rule`` granted it (``policy_version``)."""

    rule: str
    view: View
    resource: Resource
    policy_version: str
    why: str
    #: For the approved-parts view: exactly what the chair or co-ordinator approved.
    approved_parts: tuple[str, ...] = ()
    #: Every rule that held, restrictions first and the grant last (for the audit record).
    trail: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.view, View):
            raise ValueError("a decision grants a view")
        if (self.view is View.APPROVED_PARTS) != bool(self.approved_parts):
            raise ValueError("approved parts go with the approved-parts view, and only with it")


class Explanation(NamedTuple):
    """One rule's verdict on the facts: whether it matched (granted or held), and why."""

    rule: str
    matched: bool
    why: str


class NeedToKnowPolicy:
    """The loaded rules as one composition, with their settings and version."""

    def __init__(self, roots: Mapping[Resource, Policy], settings: Settings) -> None:
        #: One composition per resource, holding only the rules that apply to that resource.
        self.roots = MappingProxyType(dict(roots))
        self.settings = settings
        self.policy_version = settings.policy_version
        self._early: dict[tuple[Resource, frozenset[str]], Policy | None] = {}

    def decide(self, facts: Facts) -> Decision:
        """Grant with a :class:`Decision`, or raise :class:`NoNeedToKnow` naming the rule."""
        self._not_erased(facts)
        allowed = self.roots[facts.resource].check(facts)
        if allowed.view is None:
            raise NoNeedToKnow(
                "restrictions held but no rule grants",
                rule=DEFAULT_DENY,
                policy_version=self.policy_version,
            )
        return self._decision(facts, allowed)

    def decide_first(self, facts: Facts, grants: frozenset[str]) -> Decision | None:
        """The decision :meth:`decide` makes if one of ``grants`` makes it, found by trying only
        the restrictions and the grants that come before any other grant; None otherwise.

        For a caller that none of them grants, this stops where :meth:`decide` would go on to
        rules that need facts still to be loaded (the involvements): those are loaded, and
        :meth:`decide` run, only then. None also when a restriction refuses, or the nominal was
        erased (:meth:`decide` refuses it)."""
        if facts.nominal.status is NominalStatus.ERASED:
            return None
        early = self._leading(facts.resource, grants)
        if early is None:
            return None
        try:
            allowed = early.check(facts)
        except NoNeedToKnow:
            return None
        return None if allowed.view is None else self._decision(facts, allowed)

    def _leading(self, resource: Resource, grants: frozenset[str]) -> Policy | None:
        """The resource's composition cut after the leading grants named in ``grants`` (built
        once per policy): the same restrictions, and the grants in the same order."""
        key = (resource, grants)
        if key in self._early:
            return self._early[key]
        root = self.roots[resource]
        early: Policy | None = None
        if isinstance(root, AllOf) and root.policies and isinstance(root.policies[-1], AnyOf):
            *guards, any_of = root.policies
            assert isinstance(any_of, AnyOf)
            leading = list(takewhile(lambda member: member.rule in grants, any_of.policies))
            if leading:
                early = AllOf(*guards, AnyOf(*leading, rule=any_of.rule), rule=root.rule)
        self._early[key] = early
        return early

    def _not_erased(self, facts: Facts) -> None:
        """Refuse anything about an erased nominal, before any rule is asked."""
        if facts.nominal.status is NominalStatus.ERASED:
            raise NoNeedToKnow(_ERASED_WHY, rule=NOMINAL_ERASED, policy_version=self.policy_version)

    def _decision(self, facts: Facts, allowed: Allow) -> Decision:
        assert allowed.view is not None
        return Decision(
            rule=allowed.rule,
            view=allowed.view,
            resource=facts.resource,
            policy_version=self.policy_version,
            why=allowed.why,
            approved_parts=allowed.approved_parts,
            trail=allowed.trail or (allowed.rule,),
        )

    def explain(self, facts: Facts) -> list[Explanation]:
        """Every rule that applies to the resource, in order, with whether it matched and why
        (led by the refusal of an erased nominal, which no rule is then asked about)."""
        if facts.nominal.status is NominalStatus.ERASED:
            return [Explanation(NOMINAL_ERASED, False, _ERASED_WHY)]
        out = []
        for rule in leaves(self.roots[facts.resource]):
            try:
                allowed = rule.check(facts)
            except NoNeedToKnow as refusal:
                out.append(Explanation(refusal.rule, False, refusal.why))
            else:
                out.append(Explanation(allowed.rule, True, allowed.why))
        return out

    def render_explanation(self, facts: Facts) -> str:
        """``policy explain`` as text: the question, each rule, and the decision."""
        return _render(facts, self.explain(facts), self._outcome(facts), self.policy_version)

    def _outcome(self, facts: Facts) -> str:
        try:
            decision = self.decide(facts)
        except NoNeedToKnow as refusal:
            return f"REFUSED by {refusal.rule}: {refusal.why}"
        parts = f" ({', '.join(decision.approved_parts)})" if decision.approved_parts else ""
        return f"ALLOWED by {decision.rule}: view {decision.view}{parts}"

    @classmethod
    def from_data(cls, files: DataFiles) -> NeedToKnowPolicy:
        top = files.table(_FILE)
        top.only({"settings", "restrictions", "rules"})
        settings = _settings(top.sub("settings"), files.version)
        restrictions = _build(top.sub("restrictions"), RESTRICTIONS, settings)
        grants = _build(top.sub("rules"), GRANTS, settings)
        roots = {resource: _tree(resource, restrictions, grants) for resource in Resource}
        return cls(roots, settings)


def _tree(resource: Resource, restrictions: list[Rule], grants: list[Rule]) -> Policy:
    """The composition for one resource, from the rules that apply to it (module docstring)."""
    applies = [r for r in restrictions if resource in r.resources]
    level_1 = [r for r in applies if r.rule == "level-1-monthly-list-only"]
    involvement = [r for r in grants if r.rule in _INVOLVEMENT and resource in r.resources]
    members: list[Policy] = []
    for rule in grants:
        if resource not in rule.resources:
            continue
        if rule.rule not in _INVOLVEMENT:
            members.append(rule)
        elif rule is involvement[0]:
            any_involved = AnyOf(*involvement, rule="no-live-involvement")
            members.append(AllOf(*level_1, any_involved, rule="involvement"))
    guards = [r for r in applies if r not in level_1]
    return AllOf(*guards, AnyOf(*members, rule=DEFAULT_DENY), rule="need-to-know")


def decide(facts: Facts, *, policy: NeedToKnowPolicy | None = None) -> Decision:
    """Decide with ``policy`` (default: the packaged rules); see :meth:`NeedToKnowPolicy.decide`."""
    return (policy or _default()).decide(facts)


def decide_first(
    facts: Facts, grants: frozenset[str], *, policy: NeedToKnowPolicy | None = None
) -> Decision | None:
    """See :meth:`NeedToKnowPolicy.decide_first` (default: the packaged rules)."""
    return (policy or _default()).decide_first(facts, grants)


def explain(facts: Facts, *, policy: NeedToKnowPolicy | None = None) -> list[Explanation]:
    """Every rule's verdict on ``facts``; see :meth:`NeedToKnowPolicy.explain`."""
    return (policy or _default()).explain(facts)


def render_explanation(facts: Facts, *, policy: NeedToKnowPolicy | None = None) -> str:
    """The text of ``mappa-gateway policy explain``: the question, each rule, the decision."""
    return (policy or _default()).render_explanation(facts)


def _default() -> NeedToKnowPolicy:
    from .policy_set import default_policy_set  # late: the set imports this module

    return default_policy_set().need_to_know


def _render(facts: Facts, explanations: Sequence[Explanation], outcome: str, version: str) -> str:
    """Text for IG officers: identifiers and codes only, never personal data."""
    caller, nominal = facts.caller, facts.nominal
    width = max((len(e.rule) for e in explanations), default=0)
    lines = [
        f"policy {version}",
        f"agency   {caller.id} ({caller.agency_type}, {caller.role}, area {caller.area})",
        f"nominal  {nominal.id} (category {int(nominal.category)}, level {int(nominal.level)}, "
        f"{nominal.status}, area {nominal.area}, lead {nominal.lead_agency_id})",
        f"resource {facts.resource}",
        f"at       {facts.now.isoformat()}",
        "",
    ]
    lines += [
        f"  [{'x' if e.matched else ' '}] {e.rule.ljust(width)}  {e.why}" for e in explanations
    ]
    lines += ["", outcome]
    return "\n".join(lines) + "\n"


def _settings(table: Table, version: str) -> Settings:
    table.only({"time_zone", "meeting_without_review_date_days", "referral_open_days"})
    name = table.string("time_zone") if table.has("time_zone") else "Europe/London"
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise table.fail(f"unknown time zone {name!r}") from exc
    days = table.integer("meeting_without_review_date_days", 0)
    referral_days = (
        table.integer("referral_open_days", 0) if table.has("referral_open_days") else 90
    )
    return Settings(version, zone, days, referral_days)


def _build(table: Table, known: Sequence[type[Rule]], settings: Settings) -> list[Rule]:
    classes = {cls.rule: cls for cls in known}
    unknown = sorted(set(table.keys()) - classes.keys())
    if unknown:
        raise table.fail(f"unknown rule id(s) {', '.join(unknown)}")
    rules = []
    for cls in known:  # evaluation order is the engine's, whatever the file's order
        if not table.has(cls.rule):
            continue
        sub = table.sub(cls.rule)
        sub.only(cls.params | ({"resources"} if cls.configurable_resources else set()))
        resources = cls.covers
        if cls.configurable_resources:
            resources = frozenset(sub.enums("resources", Resource))
            if not resources or not resources <= cls.covers:
                raise sub.fail(
                    f"resources must be a non-empty subset of {sorted(map(str, cls.covers))}"
                )
        try:
            rules.append(cls(settings, resources, sub))
        except ValueError as exc:
            raise sub.fail(str(exc)) from exc
    return rules


def load_need_to_know(directory: Path | None = None) -> NeedToKnowPolicy:
    """Load and validate the need-to-know rules of ``directory`` (default: the packaged data)."""
    return NeedToKnowPolicy.from_data(read_data(directory))
