"""The pull side: an agency's undelivered messages, oldest first, and its acknowledgements.

An agency that cannot receive pushes (or missed some) pulls ``GET /v1/inbox``: every message
addressed to it that is not yet delivered (pending, in a relay's hands, or dead-lettered after
failed pushes), each with the body sealed to it at enqueue. A message sealed to a key the agency
has since retired (its overlap over) is not listed: it is dead-lettered as
``recipient_key_retired`` (:func:`gateway.delivery.lease.retire_unopenable`), as the relay
does before a push; nor is one need-to-know no longer lets the agency have, decided again as it
is listed (``recipient_may_not_know``, :mod:`gateway.delivery.redecide`: after a category 4
change, deregistration, a level change or a review date passing, minutes queued for a
participant are not handed over); nor is one queued longer ago than a partner accepts a push
(``PUSH_MAX_AGE``: ``expired``, :func:`gateway.delivery.lease.expire_stale`), which the
agency would refuse as stale. Paging is by an opaque cursor over
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
from gateway.delivery import redecide
from gateway.delivery.dead_letters import DeadLetter
from gateway.delivery.lease import expire_stale, openable_kids, retire_unopenable
from gateway.delivery.outbox import EXPIRED, KEY_RETIRED, OutboxStatus, sealed_to
from gateway.delivery.redecide import NOT_KNOWN
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
    #: The messages this read dead-lettered instead of listing them (for the dead-letter
    #: metric, counted once the read's transaction has committed).
    dead: tuple[DeadLetter, ...] = ()

    @property
    def retired_kinds(self) -> tuple[str, ...]:
        """The kinds of the messages dead-lettered as ``recipient_key_retired``."""
        return tuple(d.kind for d in self.dead if d.code == KEY_RETIRED)

    @property
    def expired_kinds(self) -> tuple[str, ...]:
        """The kinds of those dead-lettered as ``expired`` (queued too long ago)."""
        return tuple(d.kind for d in self.dead if d.code == EXPIRED)

    @property
    def refused_kinds(self) -> tuple[str, ...]:
        """The kinds of those dead-lettered as ``recipient_may_not_know``
        (:mod:`gateway.delivery.redecide`)."""
        return tuple(d.kind for d in self.dead if d.code == NOT_KNOWN)


async def list_inbox(
    session: AsyncSession,
    agency_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    now: dt.datetime | None = None,
) -> InboxPage:
    """A page of the agency's open messages; those queued too long ago, or sealed to a key it
    no longer holds, are dead-lettered instead (in the caller's write transaction), so a page
    may hold fewer than ``limit`` with a ``next_cursor`` all the same."""
    query = select(OutboxMessage).where(
        OutboxMessage.recipient_agency_id == agency_id,
        OutboxMessage.status.in_(_OPEN),
        or_(
            OutboxMessage.status != OutboxStatus.DEAD.value,
            OutboxMessage.last_error_code.is_(None),
            OutboxMessage.last_error_code.not_in((KEY_RETIRED, NOT_KNOWN, EXPIRED)),
        ),
    )
    if cursor:
        after, after_id = decode_cursor(cursor)
        query = query.where(
            or_(
                OutboxMessage.created_at > after,
                and_(OutboxMessage.created_at == after, OutboxMessage.id > after_id),
            )
        )
    # Locked (PostgreSQL; SQLite's writers take turns) until the caller's transaction ends:
    # what this page dead-letters, no relay on another replica dead-letters as well (its claim
    # and its expiry sweep skip locked rows), and a row such a relay is giving up on meanwhile
    # is read once it has, dead, and so left out.
    rows = (
        await session.scalars(
            query.order_by(OutboxMessage.created_at, OutboxMessage.id)
            .limit(limit + 1)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()
    page, more = rows[:limit], len(rows) > limit
    at = now or dt.datetime.now(dt.UTC)
    kids = await openable_kids(session, agency_id, at)
    retired: list[DeadLetter] = []
    if kids:
        openable, retired = retire_unopenable(
            session, agency_id, page, kids, now=at, delivery="pull"
        )
    else:  # no valid key at all: as for the relay, wait for one; list nothing sealed to a key
        openable = [row for row in page if sealed_to(row.body) is None]
    judged = await redecide.judge(session, agency_id, openable, now=at, delivery="pull")
    listed, expired = expire_stale(session, judged.kept, now=at, delivery="pull")  # as claim
    items = tuple(InboxItem(r.id, r.kind, r.created_at, r.body) for r in listed)
    return InboxPage(
        items,
        encode_cursor(page[-1].created_at, page[-1].id) if more and page else None,
        (*retired, *judged.refused, *expired),
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
