"""The housing property warning marker: a property to take care at, and nothing else.

The Responsible Authority marks the property of a nominal it may know, for a housing provider
(``POST /v1/warning-markers``): the property's UPRN, a marker code (``PWM``), a contact and a
review date. The marker is built by the policies' warning marker builder from its allow-list
alone (``[warning_marker]`` in ``recipients.toml``) and shaped by its view schema, so no name,
offence, intelligence or third party can reach it; it does not even name the nominal. It is
sealed to the housing provider and pushed through the outbox in the same transaction as its
audit entry; a provider without a usable encryption key gets nothing (503, never in clear).
The marker is not kept by the gateway beyond the sealed message: the housing system holds it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway import errors
from gateway.audit.commit import Audited
from gateway.cases.context import WRITE, Call, Written, inbound, write
from gateway.cases.subjects import responsible_authority_only, visible_nominal
from gateway.contract import AckOut, WarningMarkerIn, WarningMarkerView
from gateway.contract.views import ViewRefused, shape
from gateway.flow import deliver, lawful_basis, need_to_know
from gateway.flow.audit import Operation, Outcome, Withheld
from gateway.store.models import Agency, new_id

__all__ = ["KIND", "SENT", "build", "raise_warning_marker"]

KIND = "warning_marker"
SENT = "sent"


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
    """POST /v1/warning-markers: the RA marks a nominal's property for a housing provider."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, WarningMarkerIn)
        if body.replay is not None:
            return body.replay
        marker_in = body.body
        nominal, decision = await visible_nominal(call, session, marker_in.nominal_id)
        responsible_authority_only(call)
        recipient = await session.get(Agency, marker_in.recipient_agency_id)
        rules = policies.default_policy_set().recipients.warning_marker
        if recipient is None or recipient.agency_type not in rules.recipient_agency_types:
            raise errors.ValidationFailed(
                errors=[{"loc": ["recipient_agency_id"], "type": "not_a_warning_marker_recipient"}]
            )
        keys = await call.keys(session, recipient.id, "enc")
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

    async def act(session: AsyncSession) -> Audited[Written]:
        await deliver.enqueue(session, push, now=call.now)
        ack = AckOut(id=marker_id, status=SENT, nominal_id=nominal.id)
        event = call.event(
            Outcome.ALLOWED,
            operation=Operation.DISCLOSURE,
            recipients=(recipient.id,),
            rule=decision.rule,
            policy_version=built.policy_version,
            withheld=tuple(Withheld(field=w.field, rule=w.rule) for w in built.withheld),
            payload_digest=push.sealed.digest,
            detail={
                "resource": KIND,
                "delivery": "outbox",
                "kind": KIND,
                "builder": built.rule,
            },
        )
        return Audited(Written(ack), event)

    return await write(
        call, key=body.key, digest=body.digest, caller_keys=body.caller_keys, act=act
    )
