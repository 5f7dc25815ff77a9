"""Information records on a nominal: the supplying agency keeps ownership.

A record is stored sealed with its sources (each with its third-party flag). Every reader gets
it through the redaction chain: a third-party source, and every item citing it, reaches only the
owner unless the owner released it. A new record from an agency that is not the lead agency is
also pushed to the lead agency, redacted for it, through the outbox. When another agency reads
a record, its owner is told (:mod:`gateway.cases.notifications`), in the read's transaction, if
need-to-know still lets the owner see its record.

A written report for a meeting (:mod:`gateway.cases.reports`) is a record of the same kind,
attached to the meeting: it is built, pushed, stored and read with the functions here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

import policies
from gateway import errors
from gateway.audit.commit import Audited
from gateway.cases import documents, notifications
from gateway.cases.context import (
    READ,
    WRITE,
    Call,
    Inbound,
    Written,
    inbound,
    pushed,
    released,
    write,
)
from gateway.cases.paging import collect, page_of
from gateway.cases.subjects import visible_nominal, well_formed
from gateway.contract import AckOut, RecordIn
from gateway.flow import deliver, lawful_basis, need_to_know, redact
from gateway.flow.audit import Outcome, Withheld
from gateway.store.direct import ByKey
from gateway.store.models import Agency, InformationRecord, Nominal, new_id

__all__ = [
    "RecordPush",
    "create_record",
    "list_records",
    "new_record",
    "push_record",
    "read_record",
    "release_records",
    "store_record",
]

#: A new record sealed to one recipient, what redaction withheld from it, and the decision.
RecordPush = tuple[deliver.Push, redact.Released, policies.Decision]
#: The agency a new record is pushed to, read on every write: below the ORM.
_AGENCY = ByKey(Agency)


def _target(row: InformationRecord) -> policies.RecordTarget:
    return policies.RecordTarget(row.id, row.owner_agency_id, row.kind)


async def push_record(
    call: Call,
    session: AsyncSession,
    nominal: Nominal,
    row: InformationRecord,
    body: Mapping[str, Any],
    recipient_id: str,
    not_sent: list[dict[str, str]] | None = None,
) -> RecordPush | None:
    """The new record, redacted for ``recipient_id`` and sealed to it; None if it may not see
    the record or has no usable key (it reads the record when it asks: never sent in clear),
    and then, but for the caller itself, why is added to ``not_sent`` (for the audit entry)."""
    if recipient_id == call.caller.agency_id:
        return None
    skipped = not_sent if not_sent is not None else []
    recipient = await _AGENCY.get(session, recipient_id)
    keys = await call.keys(session, recipient_id, "enc")
    if recipient is None or not keys:
        skipped.append({"agency": recipient_id, "why": "no_encryption_key"})
        return None
    facts = need_to_know.agency_facts(recipient)
    tied = (
        policies.Involvements()
        if recipient_id == nominal.lead_agency_id  # the lead sees the case without them
        else await need_to_know.involvements(session, recipient_id, nominal.id)
    )
    try:
        decision = need_to_know.decide_with(facts, nominal, _target(row), call.now, tied)
    except errors.NotFound as refused:
        rule = str(refused.diagnostics.get("rule", "default-deny"))
        skipped.append({"agency": recipient_id, "rule": rule})
        return None
    release = redact.redact(
        decision,
        facts,
        documents.record_document(row, body),
        purpose=call.caller.purpose,
        originator_agency_id=row.owner_agency_id,
        record_kind=row.kind,
    )
    if (caveat := redact.withheld_by_caveat(release)) is not None:
        skipped.append({"agency": recipient_id, "rule": caveat})  # nothing is pushed
        return None
    push = deliver.prepare_push(
        call.sealer,
        {"record": release.document},
        recipient_id=recipient.id,
        keys=keys,
        kind="record",
        nominal_ref=nominal.id,
        now=call.now,
    )
    return push, release, decision


def new_record(
    call: Call, nominal: Nominal, record_in: RecordIn, *, meeting_id: str | None = None
) -> tuple[InformationRecord, dict[str, Any]]:
    """A record of the caller's (not yet stored), its body sealed at rest, and the body."""
    row = InformationRecord(
        id=new_id(),
        nominal_id=nominal.id,
        meeting_id=meeting_id,
        owner_agency_id=call.caller.agency_id,
        officer=call.caller.officer,
        kind=record_in.kind,
        marking=documents.MARKING,
        caveats=[str(c) for c in record_in.caveats],
        has_third_party_source=record_in.has_third_party_source,
        origin_jws_digest=(call.payload_digest or "").removeprefix("sha256:")[:64] or None,
        created_at=call.now,
    )
    body = documents.record_body(record_in)
    row.body_sealed = call.case_sealer.seal("information_records", row.id, "body_sealed", body)
    return row, body


async def store_record(
    call: Call,
    body: Inbound[Any],
    row: InformationRecord,
    decision: policies.Decision,
    pushes: Iterable[RecordPush],
    detail: Mapping[str, Any],
) -> Response:
    """Store the record, enqueue its pushes (each audited as a disclosure) and audit the
    collection, in one transaction with the Idempotency-Key; answer sealed to the caller."""
    sent = tuple(pushes)

    async def act(session: AsyncSession) -> Audited[Written]:
        session.add(row)
        await session.flush()
        for push, release, push_decision in sent:
            await pushed(
                call, session, push, push_decision, resource="record", withheld=release.withheld
            )
        ack = AckOut(id=row.id, status="stored", nominal_id=row.nominal_id, kind=str(row.kind))
        event = call.event(
            Outcome.ALLOWED,
            rule=decision.rule,
            policy_version=decision.policy_version,
            detail={**detail, "third_party_sources": row.has_third_party_source},
        )
        return Audited(Written(ack), event)

    return await write(call, body, act)


async def create_record(call: Call, nominal_id: str) -> Response:
    """POST /v1/nominals/{id}/records: share a record about a nominal the caller may know."""
    call.require_scope(WRITE)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        body = await inbound(call, session, RecordIn)
        if body.replay is not None:
            return body.replay
        nominal, decision = await visible_nominal(call, session, nominal_id)
        row, sealed_body = new_record(call, nominal, body.body)
        not_sent: list[dict[str, str]] = []
        lead = await push_record(
            call, session, nominal, row, sealed_body, nominal.lead_agency_id, not_sent
        )
    call.record_refs = (row.id,)
    pushes = [lead] if lead is not None else []
    detail = {"resource": "record", **({"not_sent": not_sent} if not_sent else {})}
    return await store_record(call, body, row, decision, pushes, detail)


async def read_record(call: Call, nominal_id: str, record_id: str) -> Response:
    """GET /v1/nominals/{id}/records/{record_id}: one record, redacted for the caller."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    async with call.db.read() as session:
        row = await session.get(InformationRecord, record_id) if well_formed(record_id) else None
        if row is None or row.nominal_id != nominal_id:
            call.nominal_ref = nominal_id if well_formed(nominal_id) else None
            raise need_to_know.not_found("record")
        call.record_refs = (row.id,)
        nominal, decision = await visible_nominal(call, session, nominal_id, _target(row))
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
        notices = await notifications.notify_owners(
            call,
            [(row.owner_agency_id, row.id)],
            nominal_id=row.nominal_id,
            session=session,
            nominal=nominal,
            targets={row.id: _target(row)},
        )
    release = _redacted(call, decision, row)
    if (caveat := redact.withheld_by_caveat(release)) is not None:
        raise need_to_know.caveat_refusal(caveat)  # as if it did not exist; no owner is told
    sealed = call.answer(release.document, caller_keys)
    await released(
        call, decision, release.withheld, sealed, detail=notices.detail(), stage=notices.stage
    )
    return deliver.jose_response(sealed)


async def list_records(call: Call, nominal_id: str) -> Response:
    """GET /v1/nominals/{id}/records: the records the caller may see, a page at a time.

    Records the caller may not know of are left out of the page as if they did not exist: the
    page is filled from past them, and its cursor is made from the last record returned."""
    call.require_scope(READ)
    call.basis = lawful_basis.check(call.caller, concerns_nominal=True)
    page = page_of(call.request)
    async with call.db.read() as session:
        nominal, decision = await visible_nominal(call, session, nominal_id)
        tied = await need_to_know.involvements(session, call.caller.agency_id, nominal.id)
        query = select(InformationRecord).where(InformationRecord.nominal_id == nominal.id)
        kept, cursor = await collect(
            session,
            page,
            query,
            InformationRecord.created_at,
            InformationRecord.id,
            lambda row: _released_row(call, nominal, row, tied),
        )
        caller_keys = await call.keys(session, call.caller.agency_id, "enc")
    return await _release_kept(
        call, nominal, decision, kept, caller_keys, "records", next_cursor=cursor
    )


def _released_row(
    call: Call, nominal: Nominal, row: InformationRecord, tied: policies.Involvements
) -> tuple[redact.Released, str] | None:
    """``row`` redacted for the caller and the rule that lets it see it; None if it may not
    know of the record (need-to-know, or a caveat that withholds the whole record)."""
    try:
        row_decision = need_to_know.decide_with(call.agency, nominal, _target(row), call.now, tied)
    except errors.NotFound:
        return None
    release = _redacted(call, row_decision, row)
    if redact.withheld_by_caveat(release) is not None:
        return None
    return release, row_decision.rule


def _redacted(call: Call, decision: policies.Decision, row: InformationRecord) -> redact.Released:
    """The stored record as the caller may see it under ``decision``."""
    return redact.redact(
        decision,
        call.agency,
        documents.stored_record_document(row, call.case_sealer),
        purpose=call.caller.purpose,
        originator_agency_id=row.owner_agency_id,
        record_kind=row.kind,
    )


async def release_records(
    call: Call,
    nominal: Nominal,
    decision: policies.Decision,
    rows: Sequence[InformationRecord],
    tied: policies.Involvements,
    caller_keys: Sequence[Mapping[str, Any]],
    name: str,
) -> Response:
    """``rows`` the caller may see, each redacted for it, as the list ``name`` sealed to it;
    the others left out as if they did not exist. One audit entry with each record's rule; the
    owners of the records released are told, in its transaction."""
    kept = [
        (row, released)
        for row in rows
        if (released := _released_row(call, nominal, row, tied)) is not None
    ]
    return await _release_kept(call, nominal, decision, kept, caller_keys, name)


async def _release_kept(
    call: Call,
    nominal: Nominal,
    decision: policies.Decision,
    kept: Sequence[tuple[InformationRecord, tuple[redact.Released, str]]],
    caller_keys: Sequence[Mapping[str, Any]],
    name: str,
    *,
    next_cursor: str | None = None,
) -> Response:
    withheld = [
        Withheld(field=f"{name}[{row.id}].{w.field}"[:200], rule=w.rule)
        for row, (release, _) in kept
        for w in release.withheld
    ]
    rules = {row.id: rule for row, (_, rule) in kept}
    answer: dict[str, Any] = {name: [release.document for _, (release, _) in kept]}
    if next_cursor:
        answer["next_cursor"] = next_cursor
    sealed = call.answer(answer, caller_keys)
    notices = await notifications.notify_owners(
        call,
        [(row.owner_agency_id, row.id) for row, _ in kept],
        nominal_id=nominal.id,
        nominal=nominal,
        targets={row.id: _target(row) for row, _ in kept},
    )
    await released(
        call,
        decision,
        withheld,
        sealed,
        record_refs=(*call.record_refs, *rules),
        detail={"rules": rules, **notices.detail()},
        stage=notices.stage,
    )
    return deliver.jose_response(sealed)
