"""The housing property warning marker: a property to take care at, and nothing else.

The Responsible Authority marks the property of a nominal it may know, for a housing provider
(``POST /v1/warning-markers``): the property's UPRN, a marker code (``PWM``), a contact and a
review date. The marker is built by the policies' warning marker builder from its allow-list
alone (``[warning_marker]`` in ``recipients.toml``) and shaped by its view schema, so no name,
offence, intelligence or third party can reach it; it does not even name the nominal. It is
sealed to the housing provider and pushed through the outbox in the same transaction as its
audit entry; a provider without a usable encryption key gets nothing (503, never in clear).

The provider must be one need-to-know lets know of the nominal: it may see the nominal (it is
involved in the case, or is its lead agency) or, for a level 1 nominal, has it on the monthly
level 1 list (:data:`RECIPIENT_TARGETS`). So a category 4 nominal's property is never marked for
housing, nor a deregistered nominal's; otherwise the write is refused (409
``recipient_may_not_know``, audited with the rule that refused the provider) and nothing is
stored or sent. The disclosure's audit entry names the rule that let the provider have it.

The gateway keeps the marker (its allow-listed fields sealed at rest) so that the Responsible
Authority can list the markers raised on a nominal it may know
(``GET /v1/nominals/{id}/warning-markers``, cursor pages) and revoke one
(``POST /v1/warning-markers/{id}/revocation``, a reason code): the revocation is audited and
pushes a ``warning_marker_revocation`` to the housing provider through the outbox in the same
transaction, and the housing adapter removes the PWM from the property. The revocation is bare:
what the provider already holds of the marker (``revocation_fields``: its id, the UPRN, the
code) and ``revoked``, never the reason or the date (the RA's list keeps those). It is decided
for the provider as the marker was (:data:`RECIPIENT_TARGETS`) and audited under the rule that
let the provider have it; a provider need-to-know no longer lets know of the nominal is still
sent it, under ``warning-marker-revocation`` (``revocation_to_any_recipient`` in
``recipients.toml``: a stale PWM wrongly warns staff, and removing one discloses nothing new),
the entry naming the rule that refused the provider too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway import errors
from gateway.audit.commit import Audited
from gateway.cases.context import READ, WRITE, Call, Written, inbound, released, write
from gateway.cases.paging import encode_cursor, page_of
from gateway.cases.subjects import (
    recipient_may_know,
    responsible_authority_only,
    sent_by_the_ra,
    visible_nominal,
    well_formed,
)
from gateway.contract import AckOut, WarningMarkerIn, WarningMarkerView
from gateway.contract.markers import WarningMarkerEntry, WarningMarkerRevocationIn
from gateway.contract.views import ViewRefused, shape
from gateway.flow import deliver, lawful_basis, need_to_know
from gateway.flow.audit import Operation, Outcome, Withheld
from gateway.store.models import Agency, Nominal, WarningMarker, new_id
from policies.flag_values import contact_problem
from policies.warning_marker import RULE_WARNING_MARKER_REVOCATION

__all__ = [
    "KIND",
    "RECIPIENT_TARGETS",
    "REVOCATION_KIND",
    "REVOKED",
    "SENT",
    "build",
    "list_warning_markers",
    "raise_warning_marker",
    "revocation_body",
    "revocation_rule",
    "revoke_warning_marker",
]

KIND = "warning_marker"
REVOCATION_KIND = "warning_marker_revocation"
#: A marker's states: raised and sent to the provider, then revoked.
SENT = "sent"
REVOKED = "revoked"
#: What of a built marker is sealed at rest (the review date is a clear column).
_STORED = ("uprn", "marker", "contact")
_TABLE = "warning_markers"
#: What the housing provider must be let know to be sent a marker (the first that grants): the
#: nominal itself, or its entry on the monthly level 1 list (a level 1 nominal, which only its
#: lead agency and the Responsible Authority see in full).
RECIPIENT_TARGETS: tuple[policies.Target, ...] = (
    policies.NominalTarget(),
    policies.Level1ListTarget(),
)


def build(
    recipient: policies.CallerAgency, source: dict[str, object]
) -> tuple[dict[str, object], policies.WarningMarker]:
    """The marker for ``recipient`` from its allow-list, shaped by its view; RedactionFailed
    (nothing is sent) if anything about it is wrong."""
    try:
        built = policies.build_warning_marker(recipient, source)
        return shape(WarningMarkerView, built.document), built
    except policies.PolicyError as exc:
        raise errors.RedactionFailed(diagnostics=exc.audit_fields()) from exc
    except ViewRefused as exc:
        raise errors.RedactionFailed(diagnostics={"rule": "view-schema", "why": str(exc)}) from exc


async def raise_warning_marker(call: Call) -> Response:
    """POST /v1/warning-markers: the RA marks a nominal's property for a housing provider that
    may know of the nominal (409 if it may not)."""
    rules = policies.default_policy_set().recipients.warning_marker
    addressed = await sent_by_the_ra(
        call,
        WarningMarkerIn,
        recipient_types=rules.recipient_agency_types,
        refusal="not_a_warning_marker_recipient",
        targets=lambda _: RECIPIENT_TARGETS,
    )
    if isinstance(addressed, Response):
        return addressed
    body, nominal, decision = addressed.body, addressed.nominal, addressed.decision
    marker_in, recipient, keys = body.body, addressed.recipient, addressed.keys
    recipient_decision = addressed.recipient_decision
    source = marker_in.model_dump(mode="json", exclude={"nominal_id", "recipient_agency_id"})
    document, built = build(need_to_know.agency_facts(recipient), source)
    marker_id = new_id()
    push = deliver.prepare_push(
        call.sealer,
        {"marker_id": marker_id, **document},
        recipient_id=recipient.id,
        keys=keys,
        kind=KIND,
        nominal_ref=nominal.id,
        now=call.now,
    )
    call.record_refs = (marker_id,)
    stored = {k: v for k, v in document.items() if k in _STORED}

    async def act(session: AsyncSession) -> Audited[Written]:
        session.add(
            WarningMarker(
                id=marker_id,
                nominal_id=nominal.id,
                recipient_agency_id=recipient.id,
                raised_by_agency_id=call.caller.agency_id,
                review_date=marker_in.review_date,
                status=SENT,
                details_sealed=call.case_sealer.seal(_TABLE, marker_id, "details_sealed", stored),
                created_at=call.now,
            )
        )
        await session.flush()
        await deliver.enqueue(session, push, now=call.now)
        ack = AckOut(id=marker_id, status=SENT, nominal_id=nominal.id)
        event = call.event(
            Outcome.ALLOWED,
            operation=Operation.DISCLOSURE,
            recipients=(recipient.id,),
            rule=recipient_decision.rule,
            policy_version=built.policy_version,
            withheld=tuple(Withheld(field=w.field, rule=w.rule) for w in built.withheld),
            payload_digest=push.sealed.digest,
            detail={
                "resource": KIND,
                "delivery": "outbox",
                "kind": KIND,
                "builder": built.rule,
                "caller_rule": decision.rule,
            },
        )
        return Audited(Written(ack), event)

    return await write(call, body, act)


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _entry(call: Call, row: WarningMarker) -> dict[str, Any]:
    """The stored marker as the RA lists it, shaped by its view (allow-listed fields only)."""
    details = call.case_sealer.unseal(_TABLE, row.id, "details_sealed", row.details_sealed)
    entry = {
        "id": row.id,
        "nominal_id": row.nominal_id,
        "recipient_agency_id": row.recipient_agency_id,
        "raised_by_agency_id": row.raised_by_agency_id,
        **{k: details[k] for k in _STORED},
        "review_date": _iso(row.review_date),
        "status": row.status,
        "raised_at": _iso(row.created_at),
        "revoked_at": _iso(row.revoked_at),
        "revoked_by_agency_id": row.revoked_by_agency_id,
        "revoked_reason": row.revoked_reason,
    }
    if contact_problem(entry.get("contact")) is not None:
        del entry["contact"]  # stored before contacts had a shape: never shown as text
    return shape(WarningMarkerEntry, {k: v for k, v in entry.items() if v is not None})


async def list_warning_markers(call: Call, nominal_id: str) -> Response:
    """GET /v1/nominals/{id}/warning-markers: the markers raised on a nominal the caller (a
    Responsible Authority agency that may know it) may see, oldest first, a page at a time."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    page = page_of(call.request)
    async with call.db.read() as session:
        nominal, decision = await visible_nominal(call, session, nominal_id)
        responsible_authority_only(call, nominal)
        query = select(WarningMarker).where(WarningMarker.nominal_id == nominal.id)
        rows = (
            await session.scalars(page.select(query, WarningMarker.created_at, WarningMarker.id))
        ).all()
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    answer: dict[str, Any] = {"warning_markers": [_entry(call, row) for row in rows]}
    if len(rows) == page.limit:
        answer["next_cursor"] = encode_cursor(rows[-1].created_at, rows[-1].id)
    sealed = call.answer(answer, caller_keys)
    await released(
        call,
        decision,
        (),
        sealed,
        record_refs=tuple(row.id for row in rows),
        detail={"listed": KIND},
    )
    return deliver.jose_response(sealed)


def revocation_body(
    rules: policies.WarningMarkerRules, marker_id: str, details: dict[str, Any]
) -> dict[str, object]:
    """A revocation as the provider is sent it: the ``revocation_fields`` of the marker it
    already holds (its id, the UPRN, the code) and ``revoked``, never the reason or the date."""
    held: dict[str, object] = {"marker_id": marker_id, **details}
    return {**{k: held[k] for k in rules.revocation_fields}, "revoked": True}


async def revocation_rule(
    call: Call, session: AsyncSession, nominal: Nominal, recipient_id: str
) -> tuple[str | None, str | None, str]:
    """Under which rule the provider is sent a revocation: the rule that lets it know of the
    nominal (:data:`RECIPIENT_TARGETS`, as when the marker was raised), else
    ``warning-marker-revocation`` if the policy sends revocations to any provider, else None
    (not sent); with the rule that refused the provider (or None) and the policy version."""
    recipient = await session.get(Agency, recipient_id)
    rules = policies.default_policy_set().recipients
    refused_by: str | None = None
    if recipient is not None:
        try:
            decision = await recipient_may_know(
                call, session, nominal, recipient, RECIPIENT_TARGETS
            )
        except errors.Conflict as refused:
            refused_by = str(refused.diagnostics.get("rule") or policies.DEFAULT_DENY)
        else:
            return decision.rule, None, decision.policy_version
    granted = (
        RULE_WARNING_MARKER_REVOCATION if rules.warning_marker.revocation_to_any_recipient else None
    )
    return granted, refused_by or policies.DEFAULT_DENY, rules.policy_version


async def revoke_warning_marker(call: Call, marker_id: str) -> Response:
    """POST /v1/warning-markers/{id}/revocation: the RA withdraws a marker; the housing
    provider is sent the bare revocation (sealed, through the outbox) in the same transaction,
    under the rule that lets it have it (:func:`revocation_rule`)."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, WarningMarkerRevocationIn)
        if body.replay is not None:
            return body.replay
        row = await session.get(WarningMarker, marker_id) if well_formed(marker_id) else None
        if row is None:
            raise need_to_know.not_found("warning marker")
        call.record_refs = (row.id,)
        nominal, decision = await visible_nominal(call, session, row.nominal_id)
        responsible_authority_only(call, nominal)
        if row.status != SENT:
            raise errors.Conflict(diagnostics={"reason": f"already_{row.status}"})
        rule, refused_by, policy_version = await revocation_rule(
            call, session, nominal, row.recipient_agency_id
        )
        keys = await call.keys(session, row.recipient_agency_id, "enc") if rule else ()
    details = call.case_sealer.unseal(_TABLE, row.id, "details_sealed", row.details_sealed)
    reason = body.body.reason
    rules = policies.default_policy_set().recipients.warning_marker
    push = (
        deliver.prepare_push(
            call.sealer,
            revocation_body(rules, row.id, details),
            recipient_id=row.recipient_agency_id,
            keys=keys,
            kind=REVOCATION_KIND,
            nominal_ref=nominal.id,
            now=call.now,
        )
        if rule
        else None
    )

    async def act(session: AsyncSession) -> Audited[Written]:
        changed = await session.execute(
            update(WarningMarker)
            .where(WarningMarker.id == row.id, WarningMarker.status == SENT)
            .values(
                status=REVOKED,
                revoked_at=call.now,
                revoked_by_agency_id=call.caller.agency_id,
                revoked_reason=reason,
            )
        )
        if getattr(changed, "rowcount", 0) != 1:  # another revocation committed first
            raise errors.Conflict(diagnostics={"reason": "already_revoked"})
        if push is not None:
            await deliver.enqueue(session, push, now=call.now)
        ack = AckOut(id=row.id, status=REVOKED, nominal_id=nominal.id, kind=KIND)
        detail: dict[str, Any] = {
            "resource": KIND,
            "action": "revoked",
            "reason": reason,
            "delivery": "outbox" if push is not None else "none",
            "kind": REVOCATION_KIND,
            "caller_rule": decision.rule,
        }
        if refused_by is not None:
            detail["recipient_refused_by"] = refused_by
        event = call.event(
            Outcome.ALLOWED,
            operation=Operation.ALTERATION,
            recipients=(row.recipient_agency_id,) if push is not None else (),
            rule=rule or decision.rule,
            policy_version=policy_version,
            payload_digest=push.sealed.digest if push is not None else None,
            detail=detail,
        )
        return Audited(Written(ack, 200), event)

    return await write(call, body, act)
