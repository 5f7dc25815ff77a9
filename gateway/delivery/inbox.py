"""The pull side: an agency's undelivered messages, oldest first, and its acknowledgements.

An agency that cannot receive pushes (or missed some) pulls ``GET /v1/inbox``: every message
addressed to it that is not yet delivered (pending, in a relay's hands, or dead-lettered after
failed pushes), each with the body sealed to it at enqueue. Paging is by an opaque cursor over
``(created_at, id)``, the case API's (`gateway.cases.paging`). ``POST /v1/inbox/{id}/ack``
marks one delivered; a message addressed to any other agency is exactly as unknown as one that
does not exist.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import errors
from gateway.cases.paging import decode_cursor, encode_cursor
from gateway.delivery.outbox import OutboxStatus
from gateway.store.models import OutboxMessage

__all__ = ["InboxItem", "InboxPage", "acknowledge", "list_inbox"]

_OPEN = (OutboxStatus.PENDING.value, OutboxStatus.LEASED.value, OutboxStatus.DEAD.value)


@dataclass(frozen=True, slots=True)
class InboxItem:
    id: str
    kind: str
    created_at: dt.datetime
    body: str

    def as_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "kind": self.kind,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "body": self.body,
        }


@dataclass(frozen=True, slots=True)
class InboxPage:
    items: tuple[InboxItem, ...]
    next_cursor: str | None


async def list_inbox(
    session: AsyncSession, agency_id: str, *, limit: int, cursor: str | None = None
) -> InboxPage:
    query = select(OutboxMessage).where(
        OutboxMessage.recipient_agency_id == agency_id, OutboxMessage.status.in_(_OPEN)
    )
    if cursor:
        after, after_id = decode_cursor(cursor)
        query = query.where(
            or_(
                OutboxMessage.created_at > after,
                and_(OutboxMessage.created_at == after, OutboxMessage.id > after_id),
            )
        )
    rows = (
        await session.scalars(
            query.order_by(OutboxMessage.created_at, OutboxMessage.id).limit(limit + 1)
        )
    ).all()
    items = tuple(InboxItem(r.id, r.kind, r.created_at, r.body) for r in rows[:limit])
    more = len(rows) > limit
    return InboxPage(
        items, encode_cursor(items[-1].created_at, items[-1].id) if more and items else None
    )


async def acknowledge(
    session: AsyncSession, agency_id: str, message_id: str, *, now: dt.datetime
) -> OutboxMessage:
    """Mark the agency's message delivered (idempotent); another agency's id is NotFound."""
    row = await session.get(OutboxMessage, message_id)
    if row is None or row.recipient_agency_id != agency_id:
        raise errors.NotFound(diagnostics={"reason": "no_such_message"})
    if row.status != OutboxStatus.DELIVERED.value:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)
            .values(
                status=OutboxStatus.DELIVERED.value,
                delivered_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
            .execution_options(synchronize_session=False)
        )
    return row
