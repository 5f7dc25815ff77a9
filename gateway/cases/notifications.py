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

An owner without a usable encryption key is not sent anything, since nothing is ever sent in
clear; the consultation still goes ahead, because the notification is a transparency duty to
the owner and must not let an owner's lapsed key block another agency's lawful safeguarding
read. Instead the notification is *held*: the consultation's audit entry records it as
``held`` with the reason (``recipient_key_unavailable``), and a second entry in the same
transaction (outcome ``failed``, reason ``owner_notification_held``, the owner as recipient)
makes it findable in the IG console (outcome ``failed``). The notification itself is kept,
sealed at rest, as a :class:`~gateway.store.models.HeldNotification` in the same transaction;
when the owner later registers a usable key it is sealed to that key and sent, exactly once
(:mod:`gateway.cases.held_notifications`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gateway import errors
from gateway.cases.context import Call
from gateway.flow import deliver
from gateway.flow.audit import Operation, Outcome, record
from gateway.logs import get_logger
from gateway.store.models import HeldNotification

__all__ = [
    "HELD",
    "HELD_TABLE",
    "KIND",
    "QUEUED",
    "Notices",
    "OwnerNotice",
    "notify_owners",
]

KIND = "owner_notification"
#: The states of a notification, as the consultation's audit entry records them.
QUEUED = "queued"
HELD = "held"
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

    def audit_detail(self) -> dict[str, Any]:
        """What the consultation's audit entry says of this notification (references only)."""
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


async def notify_owners(
    call: Call,
    owned: Iterable[tuple[str, str]],
    *,
    nominal_id: str,
    session: AsyncSession | None = None,
    recipient_id: str | None = None,
    event: str = "record_consulted",
    purpose: str | None = None,
) -> Notices:
    """The notifications owed for releasing ``owned`` ((owner agency id, record id) pairs) to
    ``recipient_id`` (default: the caller), sealed now, outside the write transaction.

    One notification per owner, naming all of its records released by this one consultation;
    none for the caller's own records, nor for records the recipient itself owns. The owners'
    keys are read in ``session``, or in a read transaction of its own when none is given.
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
            keys = {o: await call.keys(own_session, o, "enc") for o in sorted(by_owner)}
    else:
        keys = {o: await call.keys(session, o, "enc") for o in sorted(by_owner)}
    notices = []
    for owner_id, ids in sorted(by_owner.items()):
        record_ids = tuple(ids[:_MAX_RECORDS])
        message_id = str(uuid.uuid4())
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
                keys=keys[owner_id],
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
