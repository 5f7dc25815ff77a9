"""Leasing outbox rows to one relay, and settling them: the only SQL the relay runs.

A row is *due* when it is pending and its ``next_attempt_at`` has come, or when it is leased and
the lease has run out (its relay died mid-delivery). :func:`claim` leases due rows in one short
write transaction: on PostgreSQL with ``SELECT ... FOR UPDATE SKIP LOCKED``, so relays sharing a
database never take the same row at once; on SQLite the writer's ``BEGIN IMMEDIATE`` transaction
is the only writer. Per recipient and nominal only the oldest undelivered message is claimed
(:func:`in_turn`), so a partner receives the messages about one nominal in the order they were
written, retries included; others go concurrently. Claiming spends an attempt, so a message
that kills its relay cannot loop for ever. Only partners that are active, have a push endpoint
and hold a current encryption key are served; the others' rows wait (or are pulled from
``/v1/inbox``). A row queued longer ago than a partner accepts a push (``PUSH_MAX_AGE``) is
dead-lettered (``expired``, :func:`expire_stale`), never pushed; so is a row sealed to a key its
recipient has since retired (``recipient_key_retired``, :func:`retire_unopenable`), and a row
need-to-know no longer lets its recipient have, decided again as it is claimed
(``recipient_may_not_know``, :mod:`gateway.delivery.redecide`).

:func:`settle` ends a lease, but only a lease this relay still holds: if the lease expired and
another relay took the row, or the agency acknowledged it through the inbox, nothing changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from gateway.delivery import redecide
from gateway.delivery.dead_letters import DeadLetter, dead_letter
from gateway.delivery.outbox import EXPIRED, KEY_RETIRED, OutboxStatus, sealed_to
from gateway.delivery.push import Endpoint
from gateway.domain import AgencyStatus
from gateway.flow.seal import agency_public_jwks
from gateway.flow.signed_push import PUSH_MAX_AGE
from gateway.logs import get_logger
from gateway.store.models import Agency, OutboxMessage

__all__ = [
    "EXPIRY_BATCH",
    "Claim",
    "Claimed",
    "anything_due",
    "anything_unserved",
    "claim",
    "due",
    "expire_stale",
    "expire_unserved",
    "in_turn",
    "openable_kids",
    "retire_unopenable",
    "settle",
]

log = get_logger("gateway.delivery")


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    kind: str
    body: str
    attempts: int
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class Claim:
    rows: tuple[Claimed, ...]
    #: Partners with due rows but no current encryption key: their rows wait.
    keyless: frozenset[str]
    #: Rows dead-lettered instead of claimed (the relay counts them once the claim's
    #: transaction has committed): sealed to a key their recipient has retired, or that
    #: need-to-know no longer lets their recipient have (:mod:`gateway.delivery.redecide`).
    dead: tuple[DeadLetter, ...] = ()

    @property
    def retired(self) -> tuple[tuple[str, str], ...]:
        """The rows dead-lettered as ``recipient_key_retired``, as (id, kind)."""
        return tuple((d.id, d.kind) for d in self.dead if d.code == KEY_RETIRED)

    @property
    def expired(self) -> tuple[tuple[str, str], ...]:
        """The rows dead-lettered as ``expired``, as (id, kind)."""
        return tuple((d.id, d.kind) for d in self.dead if d.code == EXPIRED)

    @property
    def refused(self) -> tuple[tuple[str, str], ...]:
        """The rows dead-lettered as ``recipient_may_not_know``, as (id, kind)."""
        return tuple((d.id, d.kind) for d in self.dead if d.code == redecide.NOT_KNOWN)


def due(now: dt.datetime) -> ColumnElement[bool]:
    return or_(
        and_(
            OutboxMessage.status == OutboxStatus.PENDING.value,
            OutboxMessage.next_attempt_at <= now,
        ),
        and_(
            OutboxMessage.status == OutboxStatus.LEASED.value,
            OutboxMessage.lease_expires_at <= now,
        ),
    )


_EARLIER = aliased(OutboxMessage, name="earlier")
#: What holds back a later message about the same nominal: one not yet delivered, and not given
#: up on (a dead letter no longer blocks: see :func:`in_turn`).
_UNSETTLED = (OutboxStatus.PENDING.value, OutboxStatus.LEASED.value)


def in_turn() -> ColumnElement[bool]:
    """A row is in turn when no earlier message to its recipient about its nominal is still
    pending (waiting for its retry included) or leased: per (recipient, ``nominal_ref``) the
    relay pushes one message at a time, oldest first (by ``created_at``, then id). Rows
    without a nominal, and rows about different nominals, are independent of each other.

    A dead letter does not block: the messages after it go on, and a dead letter an operator
    puts back (``outbox retry``) then arrives after them. Delivery stays at least once and
    unordered across nominals, so a partner dedupes on the signed ``jti`` and keeps, per
    entity, the state with the latest signed ``iat`` (docs/partners.md)."""
    earlier = _EARLIER
    return or_(
        OutboxMessage.nominal_ref.is_(None),
        ~exists().where(
            earlier.recipient_agency_id == OutboxMessage.recipient_agency_id,
            earlier.nominal_ref == OutboxMessage.nominal_ref,
            earlier.status.in_(_UNSETTLED),
            or_(
                earlier.created_at < OutboxMessage.created_at,
                and_(
                    earlier.created_at == OutboxMessage.created_at,
                    earlier.id < OutboxMessage.id,
                ),
            ),
        ),
    )


async def openable_kids(session: AsyncSession, agency_id: str, now: dt.datetime) -> set[str]:
    """The ids of the agency's encryption keys valid at ``now`` (current, or retiring within
    their overlap): a message sealed to any other key is one the agency can no longer open."""
    keys = await agency_public_jwks(session, agency_id, "enc", now)
    return {str(key["kid"]) for key in keys if key.get("kid")}


def expire_stale(
    session: AsyncSession,
    rows: Sequence[OutboxMessage],
    *,
    now: dt.datetime,
    delivery: str,
) -> tuple[list[OutboxMessage], list[DeadLetter]]:
    """Dead-letter the rows queued more than ``PUSH_MAX_AGE`` ago (``expired``,
    :func:`gateway.delivery.dead_letters.dead_letter`: logged and audited by ids); returns the
    others, and what it dead-lettered. A push is signed once, when it is queued (its ``iat`` is
    the row's ``created_at``), and a partner refuses one older than ``PUSH_MAX_AGE`` as stale
    (and may have forgotten its ``jti``), so pushing or listing it again is useless: the
    operator sees the dead letter and has the act issued again, which seals a new message."""
    kept: list[OutboxMessage] = []
    expired: list[DeadLetter] = []
    for row in rows:
        if now - row.created_at > PUSH_MAX_AGE:
            queued = row.created_at.isoformat()
            expired.append(
                dead_letter(session, row, EXPIRED, now=now, delivery=delivery, queued_at=queued)
            )
        else:
            kept.append(row)
    return kept, expired


#: The most rows one :func:`expire_unserved` transaction dead-letters.
EXPIRY_BATCH = 200


def _unserved(now: dt.datetime) -> ColumnElement[bool]:
    """Queued longer ago than ``PUSH_MAX_AGE`` and in no relay's hands: pending (waiting for a
    push, a retry or a pull), or leased with the lease run out."""
    return and_(
        OutboxMessage.created_at < now - PUSH_MAX_AGE,
        or_(
            OutboxMessage.status == OutboxStatus.PENDING.value,
            and_(
                OutboxMessage.status == OutboxStatus.LEASED.value,
                OutboxMessage.lease_expires_at <= now,
            ),
        ),
    )


async def anything_unserved(session: AsyncSession, now: dt.datetime) -> bool:
    """Whether :func:`expire_unserved` has anything to do (a cheap read first)."""
    found = await session.scalar(select(OutboxMessage.id).where(_unserved(now)).limit(1))
    return found is not None


async def expire_unserved(
    session: AsyncSession, *, now: dt.datetime, limit: int = EXPIRY_BATCH
) -> list[DeadLetter]:
    """Dead-letter up to ``limit`` rows still queued ``PUSH_MAX_AGE`` after they were written,
    whoever their recipient, oldest first (delivery ``sweep``); what was dead-lettered.
    :func:`claim` and the inbox give up on the rows they meet; this reaches the rows neither
    meets: those of a partner that pulls and stopped pulling, of a suspended partner, of one
    with no current encryption key. So every message too old to go is alerted and audited
    within a sweep interval of its expiry, as docs/partners.md promises, instead of waiting
    unseen. Each row gets the code a claim would give it: ``recipient_key_retired`` if sealed
    to a key its recipient has retired (when it holds a current one), ``recipient_may_not_know``
    if need-to-know no longer lets it have the row, else ``expired``; every row taken ends
    dead, so none is met again. A row in a relay's hands (a live lease) is left to its relay.
    If choosing the codes fails for a recipient's rows (anything but the store), they end
    ``expired`` and the failure is alerted (``outbox_expiry_judge_failed``); what the failed
    attempt had dead-lettered is rolled back (its savepoint), though its log lines stand."""
    rows = (
        await session.scalars(
            select(OutboxMessage)
            .where(_unserved(now))
            .order_by(OutboxMessage.created_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    by_recipient: dict[str, list[OutboxMessage]] = {}
    for row in rows:
        by_recipient.setdefault(row.recipient_agency_id, []).append(row)
    dead: list[DeadLetter] = []
    for agency_id, queued in by_recipient.items():
        ids = [row.id for row in queued]  # read now: a rolled back savepoint expires the rows
        try:
            async with session.begin_nested():
                dead.extend(await _expire_for(session, agency_id, queued, now))
        except DBAPIError:
            raise  # the store failed, not the rows: the look fails (and is logged)
        except Exception as exc:
            # Choosing the code failed (a bug, a row no rule foresaw): the rows are too old to
            # go whatever the code, so they end ``expired``, and the look goes on; else one bad
            # row among the oldest would stop every look, and rows older than it never end.
            log.error(
                "outbox_expiry_judge_failed",
                alert=True,
                recipient=agency_id,
                rows=len(queued),
                error=type(exc).__name__,
            )
            # read again, at once, as the savepoint's rollback left them (expired in the ORM)
            again = select(OutboxMessage).where(OutboxMessage.id.in_(ids))
            await session.execute(again.execution_options(populate_existing=True))
            dead.extend(expire_stale(session, queued, now=now, delivery="sweep")[1])
    return dead


async def _expire_for(
    session: AsyncSession, agency_id: str, queued: Sequence[OutboxMessage], now: dt.datetime
) -> list[DeadLetter]:
    """:func:`expire_unserved` for one recipient's rows: each dead-lettered with its code."""
    kids = await openable_kids(session, agency_id, now)
    openable, retired = (
        retire_unopenable(session, agency_id, queued, kids, now=now, delivery="sweep")
        if kids
        else (queued, [])
    )
    judged = await redecide.judge(session, agency_id, openable, now=now, delivery="sweep")
    stale = expire_stale(session, judged.kept, now=now, delivery="sweep")[1]
    return [*retired, *judged.refused, *stale]


def retire_unopenable(
    session: AsyncSession,
    agency_id: str,
    rows: Sequence[OutboxMessage],
    kids: Collection[str],
    *,
    now: dt.datetime,
    delivery: str,
) -> tuple[list[OutboxMessage], list[DeadLetter]]:
    """Dead-letter the rows sealed to a key no longer in ``kids`` (``recipient_key_retired``,
    :func:`gateway.delivery.dead_letters.dead_letter`: logged and audited by ids, the entry
    naming the key); returns the others, and what it dead-lettered. A key retired with no
    overlap (say, compromised) must not be sent to: a message sealed to it stays unsent, for an
    operator to see. ``outbox retry`` cannot deliver it, since a retired key is never registered
    again (:func:`gateway.agencies.rotate_agency_keys`): the act must be issued again, which
    seals a new message to the recipient's current key. A row whose header names no key is taken
    as openable."""
    kept: list[OutboxMessage] = []
    retired: list[DeadLetter] = []
    for row in rows:
        kid = sealed_to(row.body)
        if kid is None or kid in kids:
            kept.append(row)
        else:
            retired.append(
                dead_letter(session, row, KEY_RETIRED, now=now, delivery=delivery, sealed_to=kid)
            )
    return kept, retired


async def anything_due(session: AsyncSession, now: dt.datetime) -> bool:
    """Whether any row is due at all (a cheap read before taking the write lock)."""
    found = await session.scalar(select(OutboxMessage.id).where(due(now)).limit(1))
    return found is not None


async def claim(
    session: AsyncSession,
    *,
    owner: str,
    now: dt.datetime,
    lease: dt.timedelta,
    slots: Callable[[str], int],
    limit: int | None = None,
    after: str | None = None,
) -> Claim:
    """Lease up to ``slots(partner)`` due rows of each pushable partner, oldest first, and of
    those about one nominal only the oldest not yet delivered (:func:`in_turn`); at most
    ``limit`` rows in all (the relay's room for deliveries in flight, all partners together),
    counting the rows this call already leased to the partners before (None: no limit).

    Partners are served in order of their ids, beginning after ``after`` (the last partner the
    previous claim leased to) and coming round, so that when ``limit`` runs out the partners
    it did not reach come first next time rather than wait behind the same few."""
    partners = (
        await session.execute(
            select(Agency.id, Agency.endpoint_url, Agency.endpoint_ca_pem)
            .where(
                Agency.status == AgencyStatus.ACTIVE,
                Agency.endpoint_url.is_not(None),
                Agency.id.in_(select(OutboxMessage.recipient_agency_id).where(due(now)).distinct()),
            )
            .order_by(Agency.id)
        )
    ).all()
    if after is not None:
        partners = [p for p in partners if p.id > after] + [p for p in partners if p.id <= after]
    claimed: list[Claimed] = []
    keyless: set[str] = set()
    dead: list[DeadLetter] = []
    for agency_id, url, ca_pem in partners:
        # ``slots`` knows the deliveries already in flight, not the rows leased above: what is
        # left of ``limit`` bounds each partner too, or each would be given the whole room.
        free = slots(agency_id)
        if limit is not None:
            if len(claimed) >= limit:
                break
            free = min(free, limit - len(claimed))
        if free <= 0:
            continue
        kids = await openable_kids(session, agency_id, now)
        if not kids:
            keyless.add(agency_id)
            continue
        found = (
            await session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.recipient_agency_id == agency_id,
                    # Implied by due(), and said so the planner reads the partner's open rows
                    # by ix_outbox_inbox, never every message it was ever sent: SQLite, with no
                    # statistics, took the partner alone (ix_outbox_nominal), so each sweep
                    # cost the partner's whole delivered history.
                    OutboxMessage.status.in_(_UNSETTLED),
                    due(now),
                    in_turn(),
                )
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.created_at)
                .limit(free)
                .with_for_update(skip_locked=True)
            )
        ).all()
        openable, retired = retire_unopenable(
            session, agency_id, found, kids, now=now, delivery="push"
        )
        judged = await redecide.judge(session, agency_id, openable, now=now, delivery="push")
        # Expired last: a message the recipient may no longer have is refused as such (audited
        # with the refusing rule), not merely too old to go.
        rows, expired = expire_stale(session, judged.kept, now=now, delivery="push")
        dead.extend([*retired, *judged.refused, *expired])
        endpoint = Endpoint(agency_id, str(url), ca_pem)
        for row in rows:
            row.status = OutboxStatus.LEASED.value
            row.lease_owner = owner
            row.lease_expires_at = now + lease
            row.attempts += 1
            claimed.append(Claimed(row.id, row.kind, row.body, row.attempts, endpoint))
    return Claim(tuple(claimed), frozenset(keyless), tuple(dead))


async def settle(
    session: AsyncSession,
    message_id: str,
    *,
    owner: str,
    now: dt.datetime,
    delivered: bool,
    code: str | None = None,
    next_attempt_at: dt.datetime | None = None,
    dead: bool = False,
) -> bool:
    """End this relay's lease on one row; False when the lease was no longer ours."""
    values: dict[str, object] = {"lease_owner": None, "lease_expires_at": None}
    if delivered:
        values.update(status=OutboxStatus.DELIVERED.value, delivered_at=now, last_error_code=None)
    elif dead:
        values.update(status=OutboxStatus.DEAD.value, last_error_code=code)
    else:
        values.update(
            status=OutboxStatus.PENDING.value,
            last_error_code=code,
            next_attempt_at=next_attempt_at or now,
        )
    result = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.status == OutboxStatus.LEASED.value,
            OutboxMessage.lease_owner == owner,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))
