"""The durable, shared replay store for client-assertion and DPoP-proof ``jti`` values.

:func:`consume` inserts a row keyed by SHA-256(kind, issuer, jti) into ``used_jtis`` in the
caller's transaction, inside a savepoint. The primary key does the work: of two replicas that
race to accept the same ``jti``, the database lets exactly one insert commit, and the other gets
:class:`Replayed`. Because the table lives in the shared database, a restart forgets nothing.

Every API call adds a row. :class:`JtiPurger`, a background task of each running gateway (started
and stopped by the app's lifespan), deletes the rows past their ``expires_at`` every
:data:`PURGE_INTERVAL` seconds, in transactions of its own of at most :data:`PURGE_BATCH` rows,
never inside a request. ``expires_at`` already holds the margin for a replica whose clock runs
ahead (:mod:`gateway.oauth.assertion`, :mod:`gateway.oauth.dpop`), so a purge by any replica's
clock never forgets a ``jti`` another replica could still accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.errors import StoreUnavailable
from gateway.logs import get_logger
from gateway.store import Database
from gateway.store.models import UsedJti

__all__ = [
    "PURGE_BATCH",
    "PURGE_INTERVAL",
    "JtiKind",
    "JtiPurger",
    "Replayed",
    "consume",
    "purge_all_expired",
    "purge_expired",
    "replay_key",
]

JtiKind = Literal["client_assertion", "dpop"]

#: Seconds between two purges of spent jtis past their expiry, in a running gateway.
PURGE_INTERVAL = 60.0
#: The most rows one purge transaction deletes: the write lock (SQLite's one, PostgreSQL's row
#: locks) is held for a short statement, whatever the backlog.
PURGE_BATCH = 1000

log = get_logger("gateway.oauth")


class Replayed(Exception):
    """This ``jti`` was already used by this issuer."""

    def __init__(self, kind: JtiKind) -> None:
        super().__init__(f"{kind} jti replayed")
        self.kind = kind


def replay_key(kind: JtiKind, issuer: str, jti: str) -> str:
    material = "\x00".join((kind, issuer, jti)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(material).hexdigest()


async def consume(
    session: AsyncSession,
    *,
    kind: JtiKind,
    issuer: str,
    jti: str,
    expires_at: dt.datetime,
    agency_id: str | None,
    now: dt.datetime,
) -> None:
    """Record ``jti`` as spent, or raise :class:`Replayed` if it already is."""
    row = UsedJti(
        key=replay_key(kind, issuer, jti),
        kind=kind,
        agency_id=agency_id,
        seen_at=now,
        expires_at=expires_at,
    )
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError as exc:
        raise Replayed(kind) from exc


async def purge_expired(
    session: AsyncSession, *, now: dt.datetime, limit: int = PURGE_BATCH
) -> int:
    """Delete at most ``limit`` spent ``jti`` rows past their ``expires_at`` (the oldest first),
    whose assertion or proof every replica refuses as expired anyway; returns how many."""
    expired = (
        select(UsedJti.key)
        .where(UsedJti.expires_at < now)
        .order_by(UsedJti.expires_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Replicas purging at once each take rows no other holds, and never wait on each other.
        expired = expired.with_for_update(skip_locked=True)
    result = await session.execute(
        delete(UsedJti).where(UsedJti.key.in_(expired)).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def purge_all_expired(
    db: Database,
    *,
    now: dt.datetime,
    batch: int = PURGE_BATCH,
    stop: asyncio.Event | None = None,
) -> int:
    """Purge the spent jtis past their expiry at ``now``, ``batch`` rows per transaction, until
    a batch comes up short (or ``stop`` is set); returns how many rows went."""
    total = 0
    while stop is None or not stop.is_set():
        async with db.write() as session:
            purged = await purge_expired(session, now=now, limit=batch)
        total += purged
        if purged < batch:
            break
        await asyncio.sleep(0)  # requests waiting for the write lock go first
    return total


@dataclass
class JtiPurger:
    """The periodic :func:`purge_all_expired` of a running gateway: every ``interval`` seconds,
    by ``clock``; logs only how many rows went."""

    db: Database
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    interval: float = PURGE_INTERVAL
    batch: int = PURGE_BATCH
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def once(self) -> int:
        """One purge. Whatever fails (the database, the pool's wait for a connection, a bug) is
        logged by the error's name only, never its text, and tried again at the next turn: a
        purge that stopped for good would let the table grow without bound again."""
        try:
            purged = await purge_all_expired(
                self.db, now=self.clock(), batch=self.batch, stop=self._stop
            )
        except (StoreUnavailable, DBAPIError) as exc:
            log.warning("used_jtis_purge_failed", error=type(exc).__name__)
            return 0
        except Exception as exc:  # the loop must outlive any one failure
            log.error("used_jtis_purge_failed", error=type(exc).__name__, alert=True)
            return 0
        if purged:
            log.info("used_jtis_purged", rows=purged)
        return purged

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.interval)
            if not self._stop.is_set():
                await self.once()

    def start(self) -> None:
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="used-jtis-purge")
            self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Say so if the loop ends other than by :meth:`stop` (it should not: :meth:`once`
        catches every failure)."""
        if not self._stop.is_set() and not task.cancelled():
            error = task.exception()
            log.error(
                "used_jtis_purge_ended",
                error=type(error).__name__ if error is not None else None,
                alert=True,
            )

    async def stop(self) -> None:
        """Stop after the current transaction: a purge under way ends at its next batch, never
        halfway through one. A loop that ended with an error does not make shutdown fail."""
        task, self._task = self._task, None
        if task is not None:
            self._stop.set()
            with contextlib.suppress(Exception):
                await task
