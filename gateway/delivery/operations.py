"""What an operator does with the outbox: look, retry dead letters, purge what is finished.

Each change is one transaction with an ``administration`` audit entry (ids and counts only).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.delivery.outbox import EXPIRED, KEY_RETIRED, OutboxStatus
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.flow.signed_push import PUSH_MAX_AGE
from gateway.store import Database
from gateway.store.models import OutboxMessage

__all__ = [
    "RETRY_MARGIN",
    "OutboxRow",
    "Retried",
    "depth",
    "list_outbox",
    "oldest_waiting",
    "purge",
    "retry",
]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """What an operator may see of a message: never its body."""

    id: str
    recipient_agency_id: str
    kind: str
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    last_error_code: str | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None


async def list_outbox(
    db: Database,
    *,
    status: str | None = None,
    agency_id: str | None = None,
    limit: int = 100,
) -> list[OutboxRow]:
    query = select(OutboxMessage).order_by(OutboxMessage.created_at).limit(limit)
    if status:
        query = query.where(OutboxMessage.status == OutboxStatus(status).value)
    if agency_id:
        query = query.where(OutboxMessage.recipient_agency_id == agency_id)
    async with db.read() as session:
        rows = (await session.scalars(query)).all()
    return [
        OutboxRow(
            r.id,
            r.recipient_agency_id,
            r.kind,
            r.status,
            r.attempts,
            r.next_attempt_at,
            r.last_error_code,
            r.created_at,
            r.delivered_at,
        )
        for r in rows
    ]


#: Every status but delivered.
_NOT_DELIVERED = tuple(s.value for s in OutboxStatus if s is not OutboxStatus.DELIVERED)


async def depth(session: AsyncSession) -> int:
    """Messages not yet delivered (the ``mappa_gateway_outbox_depth`` gauge)."""
    count = await session.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        # The open statuses named (the check constraint allows no others), so the count reads
        # them from ix_outbox_due: ``!= delivered`` read every message ever delivered.
        .where(OutboxMessage.status.in_(_NOT_DELIVERED))
    )
    return int(count or 0)


#: What waits for delivery: not given up on (dead) and not delivered.
_WAITING = (OutboxStatus.PENDING.value, OutboxStatus.LEASED.value)


async def oldest_waiting(session: AsyncSession, now: dt.datetime) -> float:
    """Seconds since the oldest message still waiting for delivery (pending or leased) was
    queued, 0 when none waits (the ``mappa_gateway_outbox_oldest_age_seconds`` gauge). Dead
    letters do not count: the dead-letter counter tells of them, and one left unpurged would
    hold the age up for good."""
    oldest = await session.scalar(
        select(func.min(OutboxMessage.created_at)).where(OutboxMessage.status.in_(_WAITING))
    )
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())


def _audit(session: AsyncSession, action: str, now: dt.datetime, **detail: object) -> None:
    record(
        session,
        AuditEvent(
            occurred_at=now,
            operation=Operation.ADMINISTRATION,
            outcome=Outcome.ALLOWED,
            reason_code=action,
            detail={"action": action, **detail},
        ),
    )


#: How long before ``PUSH_MAX_AGE`` a dead letter is still put back: one younger by less would
#: expire before its retry went, to be dead-lettered, alerted and audited again.
RETRY_MARGIN = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Retried:
    """What ``outbox retry`` did: dead letters queued again, and those it left dead because no
    retry can deliver them (:func:`retry`)."""

    queued: int
    left: int


async def retry(
    db: Database,
    *,
    message_ids: list[str] | None = None,
    agency_id: str | None = None,
    now: dt.datetime | None = None,
) -> Retried:
    """Put dead letters (the given ids, or all of one agency, or all) back to pending, except
    those no retry can deliver, which stay dead and are counted: a message written longer ago
    than ``PUSH_MAX_AGE`` less :data:`RETRY_MARGIN` (``expired``, or out of attempts that long
    ago: its partner refuses it as stale, and it is signed once, when queued) and one sealed to
    a key its recipient has retired (``recipient_key_retired``: a retired key is never
    registered again). Put back, each would only be dead-lettered again, alerted and audited a
    second time; the act must be issued again instead, which seals a new message."""
    at = now or dt.datetime.now(dt.UTC)
    chosen = [OutboxMessage.status == OutboxStatus.DEAD.value]
    if message_ids:
        chosen.append(OutboxMessage.id.in_(message_ids))
    if agency_id:
        chosen.append(OutboxMessage.recipient_agency_id == agency_id)
    deliverable = and_(
        OutboxMessage.created_at > at - PUSH_MAX_AGE + RETRY_MARGIN,
        or_(
            OutboxMessage.last_error_code.is_(None),
            OutboxMessage.last_error_code.not_in((KEY_RETIRED, EXPIRED)),
        ),
    )
    async with db.write() as session:
        left = int(
            await session.scalar(
                select(func.count()).select_from(OutboxMessage).where(*chosen, not_(deliverable))
            )
            or 0
        )
        result = await session.execute(
            update(OutboxMessage)
            .where(*chosen, deliverable)
            .values(status=OutboxStatus.PENDING.value, attempts=0, next_attempt_at=at)
            .execution_options(synchronize_session=False)
        )
        count = int(getattr(result, "rowcount", 0))
        _audit(
            session,
            "outbox_retry",
            at,
            count=count,
            left=left,
            agency=agency_id,
            ids=message_ids or [],
        )
    return Retried(count, left)


async def purge(db: Database, *, older_than_days: int, now: dt.datetime | None = None) -> int:
    """Delete delivered and dead messages created more than ``older_than_days`` ago."""
    if older_than_days < 1:
        raise ValueError("purge keeps at least one day")
    at = now or dt.datetime.now(dt.UTC)
    cutoff = at - dt.timedelta(days=older_than_days)
    async with db.write() as session:
        result = await session.execute(
            delete(OutboxMessage)
            .where(
                OutboxMessage.status.in_([OutboxStatus.DELIVERED.value, OutboxStatus.DEAD.value]),
                OutboxMessage.created_at < cutoff,
            )
            .execution_options(synchronize_session=False)
        )
        count = int(getattr(result, "rowcount", 0))
        _audit(session, "outbox_purge", at, count=count, older_than_days=older_than_days)
    return count
