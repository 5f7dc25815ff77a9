"""Owner notifications: a record's owner is told whenever another agency consults or receives it.

As the NHS Child Protection Information Sharing service tells a local authority each time a
flagged child's record is read, the agency that supplied an information record (it keeps
ownership and answers subject access requests) receives an ``owner_notification`` message when
another agency, by its own act, reads the record (``GET`` of one record or of a page of records)
or is sent it (an approved onward disclosure of minutes the owner wrote). The message says who
(agency and officer), when, under which legal basis and purpose, and which records: references
only, never content. It is sealed to the owner (signed by the gateway, encrypted to the owner's
registered key) before the transaction opens and enqueued in the same transaction as the
consultation's audit entry, whose detail names each notification (owner, message id, digest).

Nothing is sent when the owner acts itself (it reads its own record, or pushes it): it knows.

Nothing is sent either to an owner that need-to-know no longer lets know of what the
notification reports, decided for the owner when the notification is sealed: its record
(:class:`policies.RecordTarget`, so ``record-owner`` under the restrictions) or, for what is
no information record (the minutes it wrote), the nominal. A nominal made category 4, say, is
for police and probation of the area alone: the housing provider that supplied a record on it
is no longer told who consults it. The consultation's audit entry records such a notification
as ``not_sent`` with the rule that refused the owner.

An owner without a usable encryption key is not sent anything, since nothing is ever sent in
clear; the consultation still goes ahead, because the notification is a transparency duty to
the owner and must not let an owner's lapsed key block another agency's lawful safeguarding
read. Instead the notification is *held*: the consultation's audit entry records it as
``held`` with the reason (``recipient_key_unavailable``), and a second entry in the same
transaction (outcome ``failed``, reason ``owner_notification_held``, the owner as recipient)
makes it findable in the IG console (outcome ``failed``). The notification itself is kept,
sealed at rest, as a :class:`~gateway.store.models.HeldNotification` in the same transaction;
when the owner later registers a usable key it is sealed to that key and sent, exactly once,
if need-to-know still lets the owner know of it then (:func:`held_owner_decision`,
:mod:`gateway.cases.held_notifications`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import policies
from gateway import errors
from gateway.cases.context import Call
from gateway.cases.subjects import load_nominal
from gateway.delivery.outbox import new_message_id
from gateway.flow import deliver, need_to_know
from gateway.flow.audit import Operation, Outcome, record
from gateway.logs import get_logger
from gateway.store.models import Agency, HeldNotification, InformationRecord, Nominal

__all__ = [
    "HELD",
    "HELD_TABLE",
    "KIND",
    "NOT_SENT",
    "QUEUED",
    "Notices",
    "OwnerNotice",
    "held_owner_decision",
    "notify_owners",
]

KIND = "owner_notification"
#: The states of a notification, as the consultation's audit entry records them.
QUEUED = "queued"
HELD = "held"
#: Need-to-know no longer lets the owner know of what the notification reports: nothing sent.
NOT_SENT = "not_sent"
#: Where held notifications wait, sealed at rest.
HELD_TABLE = "held_notifications"
#: Most record ids named in one notification (a page of records holds at most 100).
_MAX_RECORDS = 200

log = get_logger("gateway.cases.notifications")


@dataclass(frozen=True, slots=True)
class OwnerNotice:
    """One owner's notification: sealed and ready to enqueue, or held (no usable key)."""

    owner_id: str
    message_id: str
    record_ids: tuple[str, ...]
    push: deliver.Push | None
    reason: str | None = None
    #: What a held notification says (references and codes only), kept sealed until it goes.
    body: dict[str, Any] | None = None
    #: The rule that refused the owner need-to-know: the notification is not sent (nor held).
    refused_by: str | None = None

    @property
    def sent(self) -> bool:
        """Whether the notification goes now or later (held); not if need-to-know refused."""
        return self.refused_by is None

    def audit_detail(self) -> dict[str, Any]:
        """What the consultation's audit entry says of this notification (references only)."""
        if not self.sent:
            return {"owner": self.owner_id, "status": NOT_SENT, "rule": self.refused_by}
        if self.push is None:
            return {"owner": self.owner_id, "status": HELD, "reason": self.reason}
        return {
            "owner": self.owner_id,
            "status": QUEUED,
            "message_id": self.message_id,
            "payload_digest": self.push.sealed.digest,
        }


@dataclass(frozen=True, slots=True)
class Notices:
    """The owner notifications a consultation owes, staged in its transaction by :meth:`stage`."""

    call: Call
    nominal_id: str
    notices: tuple[OwnerNotice, ...] = ()

    def detail(self) -> dict[str, Any]:
        """The ``owner_notifications`` part of the consultation's audit detail (may be empty)."""
        if not self.notices:
            return {}
        return {"owner_notifications": [n.audit_detail() for n in self.notices]}

    async def stage(self, session: AsyncSession) -> None:
        """Enqueue each sealed notification; record each held one (in the open transaction)."""
        call = self.call
        for notice in self.notices:
            if not notice.sent:
                continue  # the consultation's audit entry says so, with the rule
            if notice.push is not None:
                await deliver.enqueue(session, notice.push, now=call.now)  # its signed jti
                continue
            log.warning("owner_notification_held", code=notice.reason, owner=notice.owner_id)
            if notice.body is not None:
                session.add(
                    HeldNotification(
                        id=notice.message_id,
                        owner_agency_id=notice.owner_id,
                        kind=KIND,
                        nominal_ref=self.nominal_id,
                        reason=notice.reason or "recipient_key_unavailable",
                        body_sealed=call.case_sealer.seal(
                            HELD_TABLE, notice.message_id, "body_sealed", notice.body
                        ),
                        held_at=call.now,
                    )
                )
            record(
                session,
                call.event(
                    Outcome.FAILED,
                    operation=Operation.DISCLOSURE,
                    recipients=(notice.owner_id,),
                    record_refs=notice.record_ids,
                    reason_code="owner_notification_held",
                    detail={
                        "resource": KIND,
                        "owner": notice.owner_id,
                        "reason": notice.reason,
                        "message_id": notice.message_id,
                    },
                ),
            )


def _body(
    call: Call,
    *,
    nominal_id: str,
    record_ids: Sequence[str],
    recipient_id: str,
    event: str,
    purpose: str,
) -> dict[str, Any]:
    """The notification: who, when, why, which records. References and codes only."""
    return {
        "notification": event,
        "nominal_id": nominal_id,
        "record_ids": list(record_ids),
        "by": {"agency_id": call.caller.agency_id, "officer": call.caller.officer},
        "recipient_agency_id": recipient_id,
        "at": call.now.isoformat().replace("+00:00", "Z"),
        "legal_basis": call.caller.legal_basis,
        "purpose": purpose,
        "request_id": call.caller.request_id,
    }


async def _owner_may_know(
    session: AsyncSession,
    owner_id: str,
    nominal: Nominal | None,
    targets: Sequence[tuple[str, policies.Target]],
    now: dt.datetime,
) -> tuple[tuple[str, ...], errors.NotFound | None]:
    """Of ``targets`` ((record id, target) pairs), the record ids need-to-know lets the owner
    know of now, and the first refusal (the refusing rule, for the audit)."""
    owner = await session.get(Agency, owner_id)
    if owner is None or nominal is None:
        return (), need_to_know.not_found("owner or nominal")
    facts = need_to_know.agency_facts(owner)
    kept: list[str] = []
    refused: errors.NotFound | None = None
    for record_id, target in targets:
        try:
            await need_to_know.decide(session, facts, nominal, target, now)
        except errors.NotFound as refusal:
            refused = refused or refusal
            continue
        kept.append(record_id)
    return tuple(kept), refused


async def held_owner_decision(
    session: AsyncSession, owner_id: str, body: Mapping[str, Any], now: dt.datetime
) -> dict[str, Any]:
    """A held owner notification as it may go out ``now``: naming only the records need-to-know
    still lets the owner know of (its own records, or for the minutes it wrote, the nominal),
    or :class:`gateway.errors.NotFound` with the refusing rule when it may know of none."""
    nominal_id = body.get("nominal_id")
    nominal = await load_nominal(session, nominal_id) if isinstance(nominal_id, str) else None
    record_ids = [str(r) for r in body.get("record_ids") or ()]
    rows = (
        await session.scalars(select(InformationRecord).where(InformationRecord.id.in_(record_ids)))
    ).all()
    records = {row.id: row for row in rows if row.nominal_id == nominal_id}
    targets = [(record_id, _target(records.get(record_id))) for record_id in record_ids]
    kept, refused = await _owner_may_know(session, owner_id, nominal, targets, now)
    if not kept:
        raise refused or need_to_know.not_found("record")
    return {**body, "record_ids": list(kept)}


def _target(row: InformationRecord | None) -> policies.Target:
    """What the owner must still be let know of to be told of a consultation: its record, or
    (for what is no information record: minutes) the nominal."""
    if row is None:
        return policies.NominalTarget()
    return policies.RecordTarget(row.id, row.owner_agency_id, row.kind)


async def notify_owners(
    call: Call,
    owned: Iterable[tuple[str, str]],
    *,
    nominal_id: str,
    session: AsyncSession | None = None,
    recipient_id: str | None = None,
    event: str = "record_consulted",
    purpose: str | None = None,
    nominal: Nominal | None = None,
    targets: Mapping[str, policies.Target] | None = None,
) -> Notices:
    """The notifications owed for releasing ``owned`` ((owner agency id, record id) pairs) to
    ``recipient_id`` (default: the caller), sealed now, outside the write transaction.

    One notification per owner, naming all of its records released by this one consultation;
    none for the caller's own records, nor for records the recipient itself owns. Each owner is
    told only of the records need-to-know lets it know of now: ``targets`` gives each record's
    target (the owner's :class:`policies.RecordTarget`), and a record without one is judged on
    the nominal (``nominal``, or loaded by ``nominal_id``). An owner that may know of none is
    sent nothing: the notice says ``not_sent`` with the refusing rule. The owners' keys and
    facts are read in ``session``, or in a read transaction of its own when none is given.
    """
    recipient = recipient_id or call.caller.agency_id
    by_owner: dict[str, list[str]] = {}
    for owner_id, record_id in owned:
        if owner_id in (call.caller.agency_id, recipient):
            continue
        ids = by_owner.setdefault(owner_id, [])
        if record_id not in ids:
            ids.append(record_id)
    if not by_owner:
        return Notices(call, nominal_id)
    if session is None:
        async with call.db.read() as own_session:
            judged = await _judge_owners(call, own_session, by_owner, nominal_id, nominal, targets)
    else:
        judged = await _judge_owners(call, session, by_owner, nominal_id, nominal, targets)
    notices = []
    for owner_id, (kept, refused, owner_keys) in sorted(judged.items()):
        message_id = new_message_id()  # time-ordered, as every message id
        if refused is not None:
            rule = str(refused.diagnostics.get("rule") or policies.DEFAULT_DENY)
            record_ids = tuple(by_owner[owner_id][:_MAX_RECORDS])
            notices.append(OwnerNotice(owner_id, message_id, record_ids, None, refused_by=rule))
            continue
        record_ids = tuple(kept[:_MAX_RECORDS])
        body = _body(
            call,
            nominal_id=nominal_id,
            record_ids=record_ids,
            recipient_id=recipient,
            event=event,
            purpose=purpose or call.caller.purpose,
        )
        try:
            push = deliver.prepare_push(
                call.sealer,
                body,
                recipient_id=owner_id,
                keys=owner_keys,
                kind=KIND,
                nominal_ref=nominal_id,
                now=call.now,
                message_id=message_id,
            )
        except errors.RecipientKeyUnavailable as exc:
            notices.append(
                OwnerNotice(owner_id, message_id, record_ids, None, reason=exc.code, body=body)
            )
            continue
        notices.append(OwnerNotice(owner_id, message_id, record_ids, push))
    return Notices(call, nominal_id, tuple(notices))


#: Per owner: the record ids it may be told of, the refusal if none, and its encryption keys.
_Judged = dict[str, tuple[tuple[str, ...], errors.NotFound | None, Sequence[Mapping[str, Any]]]]


async def _judge_owners(
    call: Call,
    session: AsyncSession,
    by_owner: Mapping[str, Sequence[str]],
    nominal_id: str,
    nominal: Nominal | None,
    targets: Mapping[str, policies.Target] | None,
) -> _Judged:
    """Need-to-know for each owner on its records (see :func:`notify_owners`), and its keys."""
    if nominal is None or nominal.id != nominal_id:
        nominal = await load_nominal(session, nominal_id)
    known = targets or {}
    judged: _Judged = {}
    for owner_id in sorted(by_owner):
        pairs = [(r, known.get(r) or policies.NominalTarget()) for r in by_owner[owner_id]]
        kept, refused = await _owner_may_know(session, owner_id, nominal, pairs, call.now)
        if kept:
            judged[owner_id] = (kept, None, await call.keys(session, owner_id, "enc"))
        else:
            judged[owner_id] = ((), refused or need_to_know.not_found("record"), ())
    return judged
