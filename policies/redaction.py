"""Redaction: a chain of small typed steps between a document and the agency that receives it.

:func:`redact` runs a chain of :data:`~policies.redaction_steps.Step` over a deep, read-only copy
of the document and returns a frozen :class:`Redacted` (the document, every withheld field with
its rule, the policy version). The chains (:func:`chain_for`):

* nominal, record, minutes and level 1 list entries: ``withhold_third_party_sources``,
  ``honour_caveats``, ``apply_allow_list``;
* hazard flags: ``build_hazard_flag`` alone, which builds a new flag from its allow-list;
* onward disclosure (:func:`approved_view`): ``withhold_every_third_party_source``,
  ``honour_caveats``, ``select_approved_parts``, ``apply_allow_list``.

If any step raises, :func:`redact` raises :class:`~policies.errors.RedactionFailed` and returns no
document at all: the caller must then send nothing (503), never a partial or unredacted one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .errors import RedactionFailed
from .facts import Resource
from .policy import View
from .redaction_steps import (
    Draft,
    MalformedDocument,
    RedactionContext,
    Step,
    Withheld,
    apply_allow_list,
    build_hazard_flag,
    honour_caveats,
    select_approved_parts,
    withhold_every_third_party_source,
    withhold_third_party_sources,
)

__all__ = ["Redacted", "approved_view", "chain_for", "redact"]


@dataclass(frozen=True, slots=True)
class Redacted:
    """The document as it may leave the gateway, what was withheld (and why), the version."""

    document: Mapping[str, Any]
    withheld: tuple[Withheld, ...]
    policy_version: str

    def to_dict(self) -> dict[str, Any]:
        return {key: _thaw(value) for key, value in self.document.items()}

    def to_json(self) -> bytes:
        """Canonical JSON bytes of the document (sorted keys, UTF-8)."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return text.encode("utf-8")

    def audit_withheld(self) -> list[dict[str, str]]:
        """The withheld list as the audit entry stores it: field names and rules only."""
        return [{"field": w.field, "rule": w.rule} for w in self.withheld]


# ------------------------------------------------------------------------------- the chain


def chain_for(context: RedactionContext) -> tuple[Step, ...]:
    """The steps for this resource and view (onward disclosures go through approved_view)."""
    if context.resource is Resource.HAZARD_FLAG:
        return (build_hazard_flag,)
    if context.view is View.APPROVED_PARTS:
        raise RedactionFailed(
            "an onward disclosure needs its approved parts: use approved_view",
            rule="redaction-chain",
            policy_version=context.policy_version,
        )
    return (withhold_third_party_sources, honour_caveats, apply_allow_list)


def redact(
    context: RedactionContext, document: Mapping[str, Any], steps: Sequence[Step] | None = None
) -> Redacted:
    """Run the chain (default: :func:`chain_for`) over ``document``, or raise RedactionFailed."""
    version = context.policy_version
    chain = chain_for(context) if steps is None else tuple(steps)
    if not chain:
        raise RedactionFailed(
            "an empty chain redacts nothing", rule="redaction-chain", policy_version=version
        )
    name = "input"
    try:
        frozen = _freeze(document, "document")
        if not isinstance(frozen, Mapping):
            raise MalformedDocument("the document is not an object")
        draft = Draft(frozen)
        for step in chain:
            name = getattr(step, "__name__", type(step).__name__)
            draft = step(context, draft)
            if not isinstance(draft, Draft):
                raise MalformedDocument("a step returned something other than a Draft")
        name = "output"
        output = _freeze(draft.fields, "document")
        if not isinstance(output, Mapping):
            raise MalformedDocument("the output is not an object")
    except RedactionFailed:
        raise
    except Exception as exc:
        detail = str(exc) if isinstance(exc, MalformedDocument) else type(exc).__name__
        raise RedactionFailed(
            f"redaction step {name} failed: {detail}",
            rule=f"redaction-step:{name}",
            policy_version=version,
        ) from exc
    return Redacted(output, draft.withheld, version)


def approved_view(
    minutes_document: Mapping[str, Any],
    approved_parts: Sequence[str],
    context: RedactionContext,
) -> Redacted:
    """What an onward-disclosure recipient receives: the approved conclusions and action points.

    ``context`` must be for the minutes in the approved-parts view. Every third-party source is
    removed, released or not, with every item citing one; items whose caveats forbid onward
    disclosure are removed; then only the approved parts (and the meeting reference) are kept
    and the recipient's allow-list applies.
    """
    if context.resource is not Resource.MINUTES or context.view is not View.APPROVED_PARTS:
        raise RedactionFailed(
            "approved_view is for minutes in the approved-parts view",
            rule="redaction-chain",
            policy_version=context.policy_version,
        )
    try:
        select = select_approved_parts(approved_parts)
    except ValueError as exc:
        raise RedactionFailed(
            f"approved parts: {exc}", rule="redaction-chain", policy_version=context.policy_version
        ) from exc
    chain = (withhold_every_third_party_source, honour_caveats, select, apply_allow_list)
    return redact(context, minutes_document, chain)


def _freeze(value: Any, where: str) -> Any:
    """A deep, read-only copy of JSON-shaped data; anything else is refused."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedDocument(f"{where}: not a finite number")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise MalformedDocument(f"{where}: keys must be text")
            out[key] = _freeze(item, where)
        return MappingProxyType(out)
    if isinstance(value, list | tuple):
        return tuple(_freeze(item, where) for item in value)
    raise MalformedDocument(f"{where}: {type(value).__name__} is not JSON data")


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return value
