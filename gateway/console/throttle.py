"""Console sign-in throttling: per officer id, in the database; per client address and for the
whole process, in memory.

- **Per officer id.** Every failed sign-in is already an audit entry (``console`` / ``refused`` /
  ``bad_credentials``, with the id as typed), so the count of those within
  ``console_login_window_seconds`` is the same on every replica and survives restarts. At
  ``console_login_max_failures`` the id is locked until the oldest counted failure leaves the
  window. Ids that do not exist are counted and locked exactly like real ones, so a lockout
  reveals nothing about which accounts exist. Attempts refused by the lock are audited
  (``login_throttled``) but not counted, so the lock ends on time.

  The check and the count are one step: before its password is checked an attempt is reserved
  (:meth:`LoginThrottle.reserve`, a :class:`~gateway.store.models.ConsoleLoginAttempt` row)
  under a per-id lock (SQLite's one writer; ``pg_advisory_xact_lock`` on PostgreSQL, so across
  replicas too), and reserved attempts count as failures. The transaction that records the
  outcome takes the reservation away (:func:`settle`): a failure's audit entry then counts in
  its place, a success counts nothing. So however many attempts arrive at once, at most
  ``console_login_max_failures`` passwords are checked per id and window; the rest are locked.
- **Per client address.** A token bucket per address (`gateway.http.ratelimit.RateLimiter`,
  per process) caps how fast one address can guess across many ids. The address is the one the
  token endpoint uses (:func:`gateway.oauth.mtls.client_address`): the socket's peer, or behind
  a proxy in ``trusted_proxies`` the address that proxy appended to ``X-Forwarded-For``.
- **Per process.** The argon2id verifications run on at most :data:`HASH_THREADS` worker threads
  (never on the event loop), and at most :data:`MAX_IN_FLIGHT` sign-ins wait for them or run;
  one more is refused at once, before anything is reserved or hashed.

Either way the answer is the one a wrong password gets (the same page, the same 401); only the
audit entry says why.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.errors import RateLimited
from gateway.http.ratelimit import RateLimiter
from gateway.settings import Settings
from gateway.store import Database
from gateway.store.models import AuditEntry, ConsoleLoginAttempt

__all__ = [
    "BAD_CREDENTIALS",
    "HASH_THREADS",
    "LOGIN_THROTTLED",
    "MAX_IN_FLIGHT",
    "LoginAttempt",
    "LoginThrottle",
    "officer_key",
    "recent_failures",
    "settle",
]

#: The audit reason codes of a failed sign-in and of one refused by the throttle.
BAD_CREDENTIALS = "bad_credentials"
LOGIN_THROTTLED = "login_throttled"

#: Password verifications running at once in one process (each argon2id: 64 MiB, one core).
HASH_THREADS = 2
#: Password sign-ins admitted at once in one process (verifying, or waiting for a thread).
MAX_IN_FLIGHT = 16
#: Every so many reservations, reservations older than the window are purged (for any id).
PURGE_EVERY = 100
_PURGE_BATCH = 1000
#: The first key of the PostgreSQL advisory locks taken per officer id ("mapp"); the two-key
#: space does not overlap the one-key space of the audit sequencer's lock.
_LOCK_SPACE = 0x6D617070
_LOCK = text("SELECT pg_advisory_xact_lock(CAST(:space AS integer), CAST(:key AS integer))")


def officer_key(officer_id: str) -> str:
    """What a reservation stores for an officer id as typed: its SHA-256, never the text."""
    return hashlib.sha256(officer_id.encode("utf-8", "surrogatepass")).hexdigest()


def _failures(officer_id: str, since: dt.datetime) -> Any:
    return select(func.count(AuditEntry.id)).where(
        AuditEntry.officer_id == officer_id,
        AuditEntry.operation == "console",
        AuditEntry.outcome == "refused",
        AuditEntry.reason_code == BAD_CREDENTIALS,
        AuditEntry.occurred_at >= since,
    )


def _reserved(key: str, since: dt.datetime) -> Any:
    return select(func.count(ConsoleLoginAttempt.id)).where(
        ConsoleLoginAttempt.officer_key == key, ConsoleLoginAttempt.attempted_at >= since
    )


async def recent_failures(session: AsyncSession, officer_id: str, since: dt.datetime) -> int:
    """Failed console sign-ins recorded for ``officer_id`` (as typed) since ``since``."""
    return int(await session.scalar(_failures(officer_id, since)) or 0)


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """A reserved sign-in attempt: counted as a failure until :func:`settle` takes it away."""

    id: int


async def settle(session: AsyncSession, attempt: LoginAttempt) -> None:
    """Take the reservation away, in the transaction that records the attempt's outcome."""
    await session.execute(delete(ConsoleLoginAttempt).where(ConsoleLoginAttempt.id == attempt.id))


class LoginThrottle:
    """The limits, as the console's sign-in routes ask them."""

    def __init__(
        self,
        settings: Settings,
        *,
        hash_threads: int = HASH_THREADS,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.max_failures = settings.console_login_max_failures
        self.window = dt.timedelta(seconds=settings.console_login_window_seconds)
        self.addresses = RateLimiter(
            rate=settings.console_login_per_address_per_minute / 60.0,
            burst=settings.console_login_address_burst,
        )
        #: The worker threads password verifications run on (see accounts.check_password).
        self.hashing = anyio.CapacityLimiter(hash_threads)
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._reserved_since_purge = 0

    def address_allows(self, address: str) -> bool:
        """Take one attempt from ``address``'s bucket; False when it is empty."""
        try:
            self.addresses.check(address)
        except RateLimited:
            return False
        return True

    @contextlib.contextmanager
    def admission(self) -> Iterator[bool]:
        """A place among the sign-ins this process runs at once: True for the block if one was
        free, False (take no place, refuse) when :attr:`max_in_flight` are already running."""
        if self.in_flight >= self.max_in_flight:
            yield False
            return
        self.in_flight += 1
        try:
            yield True
        finally:
            self.in_flight -= 1

    async def account_locked(
        self, session: AsyncSession, officer_id: str, now: dt.datetime
    ) -> bool:
        """Whether ``officer_id`` is locked now: its failures and reserved attempts in the
        window, counted in one statement (one snapshot), reach the limit."""
        since = now - self.window
        counted = await session.scalar(
            select(
                _failures(officer_id, since).scalar_subquery()
                + _reserved(officer_key(officer_id), since).scalar_subquery()
            )
        )
        return int(counted or 0) >= self.max_failures

    async def reserve(self, db: Database, officer_id: str, now: dt.datetime) -> LoginAttempt | None:
        """Reserve an attempt for ``officer_id`` unless it is locked (None): checked and counted
        in one write transaction under a lock on the id, so concurrent attempts take turns."""
        key = officer_key(officer_id)
        since = now - self.window
        async with db.write() as session:
            if not db.is_sqlite:  # SQLite's write transactions already take turns
                lock = int.from_bytes(bytes.fromhex(key[:8]), "big", signed=True)
                await session.execute(_LOCK, {"space": _LOCK_SPACE, "key": lock})
            await session.execute(
                delete(ConsoleLoginAttempt).where(
                    ConsoleLoginAttempt.officer_key == key, ConsoleLoginAttempt.attempted_at < since
                )
            )
            if await self.account_locked(session, officer_id, now):
                return None
            row = ConsoleLoginAttempt(officer_key=key, attempted_at=now)
            session.add(row)
            await session.flush()
            attempt = LoginAttempt(row.id)
        self._reserved_since_purge += 1
        if self._reserved_since_purge >= PURGE_EVERY:
            self._reserved_since_purge = 0
            await self._purge(db, since)
        return attempt

    @staticmethod
    async def _purge(db: Database, since: dt.datetime) -> None:
        """Delete reservations older than the window, whatever their id: left by attempts that
        never finished (a crash, a cancelled request); rows another transaction holds are
        skipped, so this never waits for a sign-in."""
        stale = (
            select(ConsoleLoginAttempt.id)
            .where(ConsoleLoginAttempt.attempted_at < since)
            .limit(_PURGE_BATCH)
            .with_for_update(skip_locked=True)
        )
        async with db.write() as session:
            await session.execute(
                delete(ConsoleLoginAttempt).where(ConsoleLoginAttempt.id.in_(stale))
            )
