"""The hazard flag for children's services: the ICS ``HZD`` marker, and nothing else.

The Responsible Authority raises a flag against a child's or family's record saying that a
relative is known to MAPPA, with a contact. The flag is built by the policies' hazard flag
builder from its allow-list alone (the reference, ``HZD``, the relationship, "known to MAPPA",
the contact, the review date): no offence, no intelligence, no third party can reach it. It is
stored sealed and pushed, sealed to the children's services agency, through the outbox, only if
need-to-know lets that agency have the flag (``hazard-flag-recipient``, so never for a category 4
or deregistered nominal); otherwise the write is refused (409 ``recipient_may_not_know``, audited
with the rule that refused the recipient) and nothing is stored or sent. The disclosure's audit
entry names the rule that let the recipient have the flag (the caller's own in its detail).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway.audit.commit import Audited
from gateway.cases import documents
from gateway.cases.context import READ, Call, Written, released, write
from gateway.cases.subjects import (
    sent_by_the_ra,
    visible_nominal,
    well_formed,
)
from gateway.contract import AckOut, HazardFlagIn
from gateway.flow import deliver, lawful_basis, need_to_know, redact
from gateway.flow.audit import Operation, Outcome
from gateway.store.models import HazardFlag, new_id

__all__ = ["ACTIVE", "raise_hazard_flag", "read_hazard_flag"]

ACTIVE = "active"
#: What of a built flag is sealed at rest (the review date is a clear column; the rest constant).
_STORED = ("child_or_family_ref", "relationship", "contact")


async def raise_hazard_flag(call: Call) -> Response:
    """POST /v1/hazard-flags: raise an HZD flag for a children's services agency that may
    have it (need-to-know decides the flag for the recipient: 409 if it may not)."""
    flag_id = new_id()
    addressed = await sent_by_the_ra(
        call,
        HazardFlagIn,
        recipient_types=policies.default_policy_set().recipients.hazard_flag.recipient_agency_types,
        refusal="not_a_hazard_flag_recipient",
        targets=lambda recipient: (policies.HazardFlagTarget(flag_id, recipient.id),),
    )
    if isinstance(addressed, Response):
        return addressed
    body, nominal, decision = addressed.body, addressed.nominal, addressed.decision
    flag_in, recipient, keys = body.body, addressed.recipient, addressed.keys
    recipient_decision = addressed.recipient_decision
    source = flag_in.model_dump(mode="json", exclude={"nominal_id", "recipient_agency_id"})
    built = redact.hazard_flag(
        need_to_know.agency_facts(recipient), source, purpose=call.caller.purpose
    )
    push = deliver.prepare_push(
        call.sealer,
        {"hazard_flag": built.document, "flag_id": flag_id},
        recipient_id=recipient.id,
        keys=keys,
        kind="hazard_flag",
        nominal_ref=nominal.id,
        now=call.now,
    )
    stored = {k: v for k, v in built.document.items() if k in _STORED}
    call.record_refs = (flag_id,)

    async def act(session: AsyncSession) -> Audited[Written]:
        session.add(
            HazardFlag(
                id=flag_id,
                nominal_id=nominal.id,
                recipient_agency_id=recipient.id,
                raised_by_agency_id=call.caller.agency_id,
                review_date=flag_in.review_date,
                status=ACTIVE,
                details_sealed=call.case_sealer.seal(
                    "hazard_flags", flag_id, "details_sealed", stored
                ),
                created_at=call.now,
            )
        )
        await session.flush()
        await deliver.enqueue(session, push, now=call.now)
        ack = AckOut(id=flag_id, status=ACTIVE, nominal_id=nominal.id)
        event = call.event(
            Outcome.ALLOWED,
            operation=Operation.DISCLOSURE,
            recipients=(recipient.id,),
            rule=recipient_decision.rule,
            policy_version=built.policy_version,
            withheld=built.withheld,
            payload_digest=push.sealed.digest,
            detail={
                "resource": "hazard_flag",
                "delivery": "outbox",
                "kind": push.kind,
                "caller_rule": decision.rule,
            },
        )
        return Audited(Written(ack), event)

    return await write(call, body, act)


async def read_hazard_flag(call: Call, flag_id: str) -> Response:
    """GET /v1/hazard-flags/{id}: the flag, to its recipient or the case's RA and lead."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        flag = await session.get(HazardFlag, flag_id) if well_formed(flag_id) else None
        if flag is None:
            raise need_to_know.not_found("hazard flag")
        call.record_refs = (flag.id,)
        target = policies.HazardFlagTarget(
            flag.id, flag.recipient_agency_id, active=flag.status == ACTIVE
        )
        _, decision = await visible_nominal(call, session, flag.nominal_id, target)
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    built = redact.hazard_flag(
        call.agency,
        documents.flag_source(flag, call.case_sealer),
        purpose=call.caller.purpose,
        view=decision.view,
    )
    sealed = call.answer(built.document, caller_keys)
    await released(call, decision, built.withheld, sealed)
    return deliver.jose_response(sealed)
