"""Information records on a nominal: the supplying agency keeps ownership.

A record is stored sealed with its sources (each with its third-party flag). Every reader gets
it through the redaction chain: a third-party source, and every item citing it, reaches only the
owner unless the owner released it. A new record from an agency that is not the lead agency is
also pushed to the lead agency, redacted for it, through the outbox. When another agency reads
a record, its owner is told (:mod:`gateway.cases.notifications`), in the read's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway import errors
from gateway.audit.commit import Audited
from gateway.cases import documents, notifications
from gateway.cases.context import READ, WRITE, Call, Written, inbound, released, write
from gateway.cases.paging import encode_cursor, page_of
from gateway.cases.subjects import visible_nominal, well_formed
from gateway.contract import AckOut, RecordIn
from gateway.flow import deliver, lawful_basis, need_to_know, redact
from gateway.flow.audit import Operation, Outcome, Withheld, record
from gateway.store.models import Agency, InformationRecord, Nominal, new_id

__all__ = ["create_record", "list_records", "read_record"]


def _target(row: InformationRecord) -> policies.RecordTarget:
    return policies.RecordTarget(row.id, row.owner_agency_id, row.kind)


async def _lead_push(
    call: Call,
    session: AsyncSession,
    nominal: Nominal,
    row: InformationRecord,
    body: Mapping[str, Any],
) -> tuple[deliver.Push, redact.Released, policies.Decision] | None:
    """The new record, redacted for the lead agency and sealed to it (None if none is owed)."""
    if nominal.lead_agency_id == call.caller.agency_id:
        return None
    lead = await session.get(Agency, nominal.lead_agency_id)
    keys = await call.keys(session, nominal.lead_agency_id, "enc")
    if lead is None or not keys:
        return None  # the lead reads it when it asks; nothing is ever sent in clear
    lead_facts = need_to_know.agency_facts(lead)
    try:
        decision = need_to_know.decide_with(
            lead_facts, nominal, _target(row), call.now, policies.Involvements()
        )
    except errors.NotFound:
        return None
    document = documents.record_document(row, body)
    release = redact.redact(
        decision,
        lead_facts,
        document,
        purpose=call.caller.purpose,
        originator_agency_id=row.owner_agency_id,
        record_kind=row.kind,
    )
    push = deliver.prepare_push(
        call.sealer,
        {"record": release.document},
        recipient_id=lead.id,
        keys=keys,
        kind="record",
        nominal_ref=nominal.id,
        now=call.now,
    )
    return push, release, decision


async def create_record(call: Call, nominal_id: str) -> Response:
    """POST /v1/nominals/{id}/records: share a record about a nominal the caller may know."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, RecordIn)
        if body.replay is not None:
            return body.replay
        nominal, decision = await visible_nominal(call, session, nominal_id)
        record_in = body.body
        row = InformationRecord(
            id=new_id(),
            nominal_id=nominal.id,
            owner_agency_id=call.caller.agency_id,
            officer=call.caller.officer,
            kind=record_in.kind,
            marking=documents.MARKING,
            caveats=[str(c) for c in record_in.caveats],
            has_third_party_source=record_in.has_third_party_source,
            origin_jws_digest=(call.payload_digest or "").removeprefix("sha256:")[:64] or None,
            created_at=call.now,
        )
        sealed_body = documents.record_body(record_in)
        row.body_sealed = call.case_sealer.seal(
            "information_records", row.id, "body_sealed", sealed_body
        )
        lead = await _lead_push(call, session, nominal, row, sealed_body)
    call.record_refs = (row.id,)

    async def act(session: AsyncSession) -> Audited[Written]:
        session.add(row)
        await session.flush()
        if lead is not None:
            push, release, lead_decision = lead
            await deliver.enqueue(session, push, now=call.now)
            record(
                session,
                call.event(
                    Outcome.ALLOWED,
                    operation=Operation.DISCLOSURE,
                    recipients=(push.recipient_id,),
                    rule=lead_decision.rule,
                    policy_version=lead_decision.policy_version,
                    withheld=release.withheld,
                    payload_digest=push.sealed.digest,
                    detail={"resource": "record", "delivery": "outbox", "kind": push.kind},
                ),
            )
        ack = AckOut(id=row.id, status="stored", nominal_id=nominal.id, kind=str(row.kind))
        event = call.event(
            Outcome.ALLOWED,
            rule=decision.rule,
            policy_version=decision.policy_version,
            detail={"resource": "record", "third_party_sources": row.has_third_party_source},
        )
        return Audited(Written(ack), event)

    return await write(
        call, key=body.key, digest=body.digest, caller_keys=body.caller_keys, act=act
    )


async def read_record(call: Call, nominal_id: str, record_id: str) -> Response:
    """GET /v1/nominals/{id}/records/{record_id}: one record, redacted for the caller."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        row = await session.get(InformationRecord, record_id) if well_formed(record_id) else None
        if row is None or row.nominal_id != nominal_id:
            call.nominal_ref = nominal_id[:64]
            raise need_to_know.not_found("record")
        call.record_refs = (row.id,)
        _, decision = await visible_nominal(call, session, nominal_id, _target(row))
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
        notices = await notifications.notify_owners(
            call, [(row.owner_agency_id, row.id)], nominal_id=row.nominal_id, session=session
        )
    release = redact.redact(
        decision,
        call.agency,
        documents.stored_record_document(row, call.case_sealer),
        purpose=call.caller.purpose,
        originator_agency_id=row.owner_agency_id,
        record_kind=row.kind,
    )
    sealed = call.answer(release.document, caller_keys)
    await released(
        call, decision, release.withheld, sealed, detail=notices.detail(), stage=notices.stage
    )
    return deliver.jose_response(sealed)


async def list_records(call: Call, nominal_id: str) -> Response:
    """GET /v1/nominals/{id}/records: the records the caller may see, a page at a time.

    Records the caller may not know of are left out of the page as if they did not exist."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    page = page_of(call.request)
    async with call.db.read() as session:
        nominal, decision = await visible_nominal(call, session, nominal_id)
        query = select(InformationRecord).where(InformationRecord.nominal_id == nominal.id)
        if page.after is not None:
            at, last = page.after
            query = query.where(
                or_(
                    InformationRecord.created_at > at,
                    and_(InformationRecord.created_at == at, InformationRecord.id > last),
                )
            )
        rows: Sequence[InformationRecord] = (
            await session.scalars(
                query.order_by(InformationRecord.created_at, InformationRecord.id).limit(page.limit)
            )
        ).all()
        tied = await need_to_know.involvements(session, call.caller.agency_id, nominal.id)
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    entries: list[dict[str, Any]] = []
    withheld: list[Withheld] = []
    rules: dict[str, str] = {}
    for row in rows:
        try:
            row_decision = need_to_know.decide_with(
                call.agency, nominal, _target(row), call.now, tied
            )
        except errors.NotFound:
            continue
        release = redact.redact(
            row_decision,
            call.agency,
            documents.stored_record_document(row, call.case_sealer),
            purpose=call.caller.purpose,
            originator_agency_id=row.owner_agency_id,
            record_kind=row.kind,
        )
        entries.append(release.document)
        withheld += (
            Withheld(field=f"records[{row.id}].{w.field}"[:200], rule=w.rule)
            for w in release.withheld
        )
        rules[row.id] = row_decision.rule
    cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if len(rows) == page.limit else None
    answer: dict[str, Any] = {"records": entries}
    if cursor:
        answer["next_cursor"] = cursor
    sealed = call.answer(answer, caller_keys)
    notices = await notifications.notify_owners(
        call,
        [(row.owner_agency_id, row.id) for row in rows if row.id in rules],
        nominal_id=nominal.id,
    )
    await released(
        call,
        decision,
        withheld,
        sealed,
        record_refs=tuple(rules),
        detail={"rules": rules, **notices.detail()},
        stage=notices.stage,
    )
    return deliver.jose_response(sealed)
