"""Composable need-to-know policies: small typed objects with one method that allows or raises.

A :class:`Policy` has a ``rule`` id and ``check(facts)``, which returns an :class:`Allow` or raises
:class:`~policies.errors.NoNeedToKnow` naming the rule that refused. Two kinds of allow exist:

* a **grant** (``view`` set): the rule lets the caller see the resource in that :class:`View`;
* a **pass** (``view`` None): a restriction held (e.g. "not a category 4 nominal") and grants
  nothing by itself.

Compose with :class:`AllOf` (every member must allow; the views narrow: ``full`` narrowed by
another view is that view, two different narrower views grant nothing) and :class:`AnyOf` (the
first member that allows). An empty ``AllOf`` or ``AnyOf`` denies, and an ``AllOf`` whose members
only pass grants nothing, so a restriction alone can never open anything. Anything unsafe is
named ``Unsafe...`` and logs a warning each time it is used. The model is sigstore-python's
``verify/policy.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from .errors import NoNeedToKnow
from .facts import Facts

__all__ = ["AllOf", "Allow", "AnyOf", "Policy", "UnsafeAllowAll", "View", "leaves"]

_log = structlog.get_logger("policies")
UNVERSIONED = "unversioned"


class View(enum.StrEnum):
    """How much of the resource a grant opens; redaction then applies the recipient allow-list."""

    FULL = "full"
    #: The monthly level 1 list entry: minimal fields.
    MONTHLY_LIST_MINIMAL = "monthly-list-minimal"
    #: The hazard flag built from its allow-list, nothing else.
    HAZARD_FLAG_ONLY = "hazard-flag-only"
    #: What the chair or co-ordinator approved for onward disclosure, nothing else.
    APPROVED_PARTS = "approved-parts"
    #: The s.325(4A)(c) decisions naming the caller, without the RA's reasons.
    OWN_CONTRIBUTOR_DECISIONS = "own-contributor-decisions"


@dataclass(frozen=True, slots=True)
class Allow:
    """A policy allowed: a grant when ``view`` is set, a pass of a restriction otherwise."""

    rule: str
    why: str
    view: View | None = None
    approved_parts: tuple[str, ...] = ()
    #: Every rule that held on the way, in order (restrictions first, the grant last); a leaf's
    #: trail is empty and stands for its own rule.
    trail: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.view is not None and not isinstance(self.view, View):
            raise ValueError("view must be a View")
        if (self.view is View.APPROVED_PARTS) != bool(self.approved_parts):
            raise ValueError("approved parts go with the approved-parts view, and only with it")

    def with_trail(self, trail: tuple[str, ...]) -> Allow:
        return Allow(self.rule, self.why, self.view, self.approved_parts, trail)

    @property
    def grants(self) -> bool:
        return self.view is not None


class Policy(Protocol):
    """One rule, or a composition of rules, over the need-to-know :class:`Facts`."""

    @property
    def rule(self) -> str: ...

    @property
    def policy_version(self) -> str: ...

    def check(self, facts: Facts) -> Allow:
        """Allow, or raise :class:`NoNeedToKnow` naming the rule that refused."""
        ...


def _version(policies: Sequence[Policy]) -> str:
    versions = {p.policy_version for p in policies}
    return versions.pop() if len(versions) == 1 else UNVERSIONED


def _narrow(current: Allow, new: Allow) -> Allow | None:
    """The intersection of two grants' views; None when they do not intersect."""
    if new.view is View.FULL:
        return current
    if current.view is View.FULL:
        return new
    if current.view is not new.view:
        return None
    if current.view is View.APPROVED_PARTS:
        parts = tuple(p for p in current.approved_parts if p in new.approved_parts)
        return Allow(new.rule, new.why, new.view, parts, new.trail) if parts else None
    return new


class AllOf:
    """Every member must allow. Empty denies; members that only pass grant nothing."""

    def __init__(self, *policies: Policy, rule: str = "all-of") -> None:
        self.policies = tuple(policies)
        self.rule = rule
        self.policy_version = _version(self.policies)

    def check(self, facts: Facts) -> Allow:
        if not self.policies:
            raise NoNeedToKnow(
                "an empty AllOf denies", rule=self.rule, policy_version=self.policy_version
            )
        trail: list[str] = []
        granted: Allow | None = None
        for policy in self.policies:
            allowed = policy.check(facts)
            trail.extend(allowed.trail or (allowed.rule,))
            if allowed.view is None:
                continue  # a restriction held
            if granted is None:
                granted = allowed
                continue
            narrowed = _narrow(granted, allowed)
            if narrowed is None:
                raise NoNeedToKnow(
                    f"{allowed.rule} grants {allowed.view}, which does not meet "
                    f"{granted.rule} granting {granted.view}",
                    rule=self.rule,
                    policy_version=self.policy_version,
                )
            granted = narrowed
        if granted is None:
            return Allow(self.rule, "every restriction held; nothing granted", trail=tuple(trail))
        return granted.with_trail(tuple(trail))

    def __repr__(self) -> str:
        return f"AllOf({', '.join(p.rule for p in self.policies)}, rule={self.rule!r})"


class AnyOf:
    """The first member that allows. Empty denies; all refusing denies with this rule's id.

    The refusal's diagnostics list every leaf rule's refusal (nested AnyOf refusals flattened),
    so the audit record says why each rule did not grant.
    """

    def __init__(self, *policies: Policy, rule: str = "any-of") -> None:
        self.policies = tuple(policies)
        self.rule = rule
        self.policy_version = _version(self.policies)

    def check(self, facts: Facts) -> Allow:
        refusals: list[list[str]] = []
        for policy in self.policies:
            try:
                return policy.check(facts)
            except NoNeedToKnow as refusal:
                nested = refusal.diagnostics.get("refusals")
                refusals.extend(nested if nested else [[refusal.rule, refusal.why]])
        why = "no rule allows" if self.policies else "an empty AnyOf denies"
        raise NoNeedToKnow(
            why,
            rule=self.rule,
            policy_version=self.policy_version,
            diagnostics={"refusals": refusals},
        )

    def __repr__(self) -> str:
        return f"AnyOf({', '.join(p.rule for p in self.policies)}, rule={self.rule!r})"


class UnsafeAllowAll:
    """Grants everything. For development fixtures only: every use logs a warning."""

    rule = "unsafe-allow-all"

    def __init__(self, view: View = View.FULL, *, policy_version: str = UNVERSIONED) -> None:
        if view is View.APPROVED_PARTS:
            raise ValueError("UnsafeAllowAll cannot invent approved parts")
        self.view = view
        self.policy_version = policy_version

    def check(self, facts: Facts) -> Allow:
        _log.warning(
            "unsafe_policy_used",
            rule=self.rule,
            agency_id=facts.caller.id,
            nominal_id=facts.nominal.id,
            resource=str(facts.resource),
        )
        return Allow(self.rule, "UnsafeAllowAll allows everything", view=self.view)


def leaves(policy: Policy) -> Iterator[Policy]:
    """The rules of a composition, depth first, in evaluation order."""
    if isinstance(policy, AllOf | AnyOf):
        for member in policy.policies:
            yield from leaves(member)
    else:
        yield policy
