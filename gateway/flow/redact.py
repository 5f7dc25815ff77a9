"""The redaction stage: what of a document leaves the gateway for one recipient.

Each function runs the policies' chain for the recipient, then the recipient's explicit view
schema (:mod:`gateway.contract.views`): third-party sources withheld from all but their
originator, handling caveats honoured, the recipient's allow-list applied (an unclassified field
is withheld), and nothing serialised that the view does not define. Every withheld field comes
back with its rule (never its value) for the audit entry.

Any failure is :class:`gateway.errors.RedactionFailed` (503): the caller then releases nothing,
never a partial or unredacted document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

import policies
from gateway import errors
from gateway.contract import views
from gateway.domain import RecordKind
from gateway.flow.audit import Withheld

__all__ = [
    "Released",
    "action_point",
    "allow_listed",
    "approved_parts",
    "hazard_flag",
    "redact",
    "withheld_action",
    "withheld_by_caveat",
    "withheld_names",
]

_VIEWS: dict[tuple[policies.Resource, policies.View], type[BaseModel]] = {
    (policies.Resource.NOMINAL, policies.View.FULL): views.NominalView,
    (policies.Resource.LEVEL_1_LIST, policies.View.MONTHLY_LIST_MINIMAL): views.Level1EntryView,
    (policies.Resource.RECORD, policies.View.FULL): views.RecordView,
    (policies.Resource.MINUTES, policies.View.FULL): views.MinutesView,
    (policies.Resource.MINUTES, policies.View.APPROVED_PARTS): views.MinutesApprovedView,
    (policies.Resource.HAZARD_FLAG, policies.View.FULL): views.HazardFlagView,
    (policies.Resource.HAZARD_FLAG, policies.View.HAZARD_FLAG_ONLY): views.HazardFlagView,
}


@dataclass(frozen=True, slots=True)
class Released:
    """What may leave for one recipient, what was withheld (field and rule), the version."""

    document: dict[str, Any]
    withheld: tuple[Withheld, ...]
    policy_version: str


def _failed(exc: policies.PolicyError) -> errors.RedactionFailed:
    return errors.RedactionFailed(diagnostics=exc.audit_fields())


def _release(context: policies.RedactionContext, redacted: policies.Redacted) -> Released:
    model = _VIEWS.get((context.resource, context.view))
    if model is None:
        raise errors.RedactionFailed(
            diagnostics={"rule": "view-schema", "why": f"no schema for {context.resource}"}
        )
    document = _shaped(model, redacted.to_dict(), redacted.policy_version)
    return Released(document, _withheld(redacted), redacted.policy_version)


def _shaped(model: type[BaseModel], document: Mapping[str, Any], version: str) -> dict[str, Any]:
    """``document`` as its view schema serialises it; a field it does not define fails (503)."""
    try:
        return views.shape(model, document)
    except views.ViewRefused as exc:
        raise errors.RedactionFailed(
            diagnostics={"rule": "view-schema", "policy_version": version, "why": str(exc)}
        ) from exc


def _withheld(redacted: policies.Redacted) -> tuple[Withheld, ...]:
    return tuple(Withheld(field=w.field[:200], rule=w.rule[:128]) for w in redacted.withheld)


def redact(
    decision: policies.Decision,
    recipient: policies.CallerAgency,
    document: Mapping[str, Any],
    *,
    purpose: str,
    originator_agency_id: str | None = None,
    record_kind: RecordKind | None = None,
) -> Released:
    """``document`` as ``recipient`` may receive it under ``decision``."""
    try:
        context = policies.RedactionContext.for_decision(
            decision,
            recipient,
            purpose,
            originator_agency_id=originator_agency_id,
            record_kind=record_kind,
        )
        return _release(context, policies.redact(context, document))
    except policies.PolicyError as exc:
        raise _failed(exc) from exc
    except ValueError as exc:  # a context that cannot exist: a bug upstream, fail closed
        raise errors.RedactionFailed(diagnostics={"rule": "redaction-context"}) from exc


def approved_parts(
    decision: policies.Decision,
    recipient: policies.CallerAgency,
    minutes: Mapping[str, Any],
    *,
    purpose: str,
    originator_agency_id: str | None,
) -> Released:
    """An onward disclosure: exactly the approved parts of the minutes, no third party."""
    try:
        context = policies.RedactionContext.for_decision(
            decision, recipient, purpose, originator_agency_id=originator_agency_id
        )
        return _release(context, policies.approved_view(minutes, decision.approved_parts, context))
    except policies.PolicyError as exc:
        raise _failed(exc) from exc
    except ValueError as exc:
        raise errors.RedactionFailed(diagnostics={"rule": "redaction-context"}) from exc


def hazard_flag(
    recipient: policies.CallerAgency,
    source: Mapping[str, Any],
    *,
    purpose: str,
    view: policies.View = policies.View.HAZARD_FLAG_ONLY,
) -> Released:
    """The ``HZD`` flag built from its allow-list alone, whatever ``source`` holds."""
    context, built = _chain(recipient, source, policies.Resource.HAZARD_FLAG, view, purpose)
    return _release(context, built)


def _chain(
    recipient: policies.CallerAgency,
    document: Mapping[str, Any],
    resource: policies.Resource,
    view: policies.View,
    purpose: str,
    originator_agency_id: str | None = None,
) -> tuple[policies.RedactionContext, policies.Redacted]:
    """``document`` through the policies' chain for ``recipient``, or RedactionFailed."""
    try:
        context = policies.RedactionContext(
            recipient_agency_id=recipient.id,
            recipient_agency_type=recipient.agency_type,
            recipient_role=recipient.role,
            resource=resource,
            view=view,
            purpose=purpose,
            originator_agency_id=originator_agency_id,
        )
        return context, policies.redact(context, document)
    except policies.PolicyError as exc:
        raise _failed(exc) from exc
    except ValueError as exc:
        raise errors.RedactionFailed(diagnostics={"rule": "redaction-context"}) from exc


def action_point(
    recipient: policies.CallerAgency,
    minutes: Mapping[str, Any],
    *,
    action_id: str,
    purpose: str,
    originator_agency_id: str | None,
) -> Released:
    """One action point as ``recipient`` may read it: ``minutes`` (the meeting's minutes holding
    that action point among its ``actions``) through the minutes' own chain, as a participant's
    copy of the minutes is (third-party sources and the items citing them withheld, caveats
    honoured, the minutes allow-list), then the action point alone, shaped by
    :class:`~gateway.contract.views.ActionView`. If the chain withheld it (a caveat on the
    minutes, a source the recipient may not see), the document is empty: see
    :func:`withheld_action`."""
    _, redacted = _chain(
        recipient,
        minutes,
        policies.Resource.MINUTES,
        policies.View.FULL,
        purpose,
        originator_agency_id,
    )
    kept, version = redacted.to_dict(), redacted.policy_version
    item = next((a for a in kept.get("actions") or () if a.get("id") == action_id), None)
    if item is None:
        return Released({}, _withheld(redacted), version)
    document = {"meeting_id": kept.get("meeting_id"), "nominal_id": kept.get("nominal_id"), **item}
    return Released(_shaped(views.ActionView, document, version), _withheld(redacted), version)


def withheld_action(release: Released, minutes: Mapping[str, Any], action_id: str) -> str | None:
    """The rule that withheld the action point of :func:`action_point` (``action_id`` among
    the ``minutes``' actions) from its recipient (a caveat on the whole minutes, or on the item;
    a third-party source it cites), or None. To that recipient the action point is one it may
    not know of."""
    if release.document:
        return None
    place = next(
        (at for at, a in enumerate(minutes.get("actions") or ()) if a.get("id") == action_id),
        None,
    )
    if place is None:
        return policies.DEFAULT_DENY  # not among the minutes' actions at all
    whole = withheld_by_caveat(release)
    if whole is not None:
        return whole
    item = policies.withheld_entry("actions", place)  # the audit names it by its place
    found = (withheld.rule for withheld in release.withheld if withheld.field == item)
    return next(found, policies.DEFAULT_DENY)  # else the allow-list: nothing to release


def allow_listed(
    model: type[BaseModel], document: Mapping[str, Any], policy_version: str
) -> Released:
    """A document of identifiers, codes and dates only (a meeting's participants, an onward
    disclosure request's status: no free text, no source to redact) as its view schema lists
    it; a field the schema does not list fails the release (503), never leaves."""
    return Released(_shaped(model, document, policy_version), (), policy_version)


def withheld_by_caveat(release: Released) -> str | None:
    """The caveat rule that withheld the whole document from its recipient, or None. To that
    recipient the document is one it may not know of: a 404 for a single record, left out of a
    list, never pushed, never an empty shell that says it exists."""
    if release.document:
        return None
    # a whole-document caveat withholds every top-level field left (an item's is ``name[id]``)
    whole = (w.rule for w in release.withheld if w.rule.startswith("caveat") and "[" not in w.field)
    return next(whole, None)


def withheld_names(released: Sequence[Released]) -> tuple[Withheld, ...]:
    """Withheld fields of several releases, each (field, rule) once, in first-seen order."""
    seen: dict[tuple[str, str], Withheld] = {}
    for one in released:
        for item in one.withheld:
            seen.setdefault((item.field, item.rule), item)
    return tuple(seen.values())
