"""The relay: lease due outbox rows, push them outside any transaction, settle on the answer.

One :class:`Relay` runs as a background task of ``mappa-gateway serve`` (``relay_interval``
seconds between sweeps, 0 to turn it off) or alone as ``mappa-gateway relay``. Each sweep leases
rows in one short transaction (:func:`gateway.delivery.lease.claim`), then starts one task per
row and returns at once: a slow partner ties up only its own ``partner_concurrency`` slots and
never the sweep, so other partners' messages keep flowing. A row is marked delivered only on the
partner's 2xx; otherwise it is rescheduled with exponential backoff and full jitter
(:mod:`gateway.delivery.backoff`), and after ``max_attempts`` it is dead-lettered with a metric
and an ``outbox_dead_letter`` alert log line (ids and codes only, never a body).

Every ``expiry_interval`` seconds a sweep also dead-letters the messages still queued
``PUSH_MAX_AGE`` after they were written that no claim or inbox pull met (a partner that
stopped pulling, a suspended one, one with no current key): ``expired``, or the code a claim
would have given first (key retired, need-to-know refused); alerted and audited as any other.

If the process dies mid-delivery the lease runs out and a relay delivers the row again with the
same ``Idempotency-Key``, on which the partner dedupes: at least once on the wire, once logically.

A sweep that fails with anything unexpected (a bug, the audit log unavailable, an integrity
error) does not end the relay: :meth:`Relay.run` logs it (``relay_sweep_failed``: the error's
type and code, never its message, which could carry case data), counts it
(``mappa_gateway_outbox_sweep_failures``), waits a little longer after each failure in a row (at
most :data:`SWEEP_FAILURE_BACKOFF_CAP` seconds) and sweeps again. Should the loop end anyway, an
alert log line says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.delivery.backoff import CircuitBreaker, next_delay
from gateway.delivery.dead_letters import DeadLetter
from gateway.delivery.lease import (
    EXPIRY_BATCH,
    Claim,
    Claimed,
    anything_due,
    anything_unserved,
    claim,
    expire_unserved,
    settle,
)
from gateway.delivery.push import PushConfig, Pusher, PushResult
from gateway.errors import StoreUnavailable
from gateway.logs import get_logger
from gateway.store import Database

if TYPE_CHECKING:
    from gateway.delivery.metrics import RelayMetrics
    from gateway.settings import Settings

__all__ = ["Relay", "RelayConfig", "relay_config"]

log = get_logger("gateway.delivery")

#: The most batches of expired messages one look dead-letters (`Relay._expire_unserved`).
EXPIRY_BATCHES = 10
#: The longest wait after sweeps failed in a row (seconds): the wait doubles from the interval.
SWEEP_FAILURE_BACKOFF_CAP = 30.0
#: What of an unexpected error's ``code`` may be logged: a short code, nothing else.
_CODE = re.compile(r"[a-z][a-z0-9_]{0,39}")


def _error_code(exc: BaseException) -> str:
    """The error's own short code (a gateway or keys error, say), else ``unexpected``."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "unexpected"


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """The relay's knobs; the defaults are the settings' (``MAPPA_RELAY_*``, `relay_config`)."""

    interval: float = 1.0
    lease_seconds: float = 60.0
    max_attempts: int = 12
    backoff_base: float = 2.0
    backoff_cap: float = 900.0
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0
    #: Most deliveries in flight in this process, all partners together.
    max_in_flight: int = 64
    #: Seconds between looks for messages queued too long that no push or pull will take
    #: (:func:`gateway.delivery.lease.expire_unserved`); 0 looks on every sweep.
    expiry_interval: float = 60.0
    push: PushConfig = field(default_factory=PushConfig)

    def __post_init__(self) -> None:
        if self.lease_seconds <= self.push.total_timeout:
            raise ValueError("the lease must outlast a whole push (lease_seconds > total timeout)")
        if self.max_attempts < 1 or self.backoff_base <= 0 or self.backoff_cap < self.backoff_base:
            raise ValueError("retry settings out of range")


def relay_config(settings: Settings) -> RelayConfig:
    """The relay's configuration from the gateway's settings."""
    return RelayConfig(
        interval=settings.relay_interval_seconds,
        lease_seconds=settings.relay_lease_seconds,
        max_attempts=settings.relay_max_attempts,
        backoff_base=settings.relay_backoff_base_seconds,
        backoff_cap=settings.relay_backoff_cap_seconds,
        breaker_threshold=settings.relay_breaker_threshold,
        breaker_cooldown=settings.relay_breaker_cooldown_seconds,
        max_in_flight=settings.relay_max_in_flight,
        push=PushConfig(
            connect_timeout=settings.relay_connect_timeout_seconds,
            read_timeout=settings.relay_read_timeout_seconds,
            total_timeout=settings.relay_total_timeout_seconds,
            max_response_bytes=settings.relay_max_response_bytes,
            partner_concurrency=settings.relay_partner_concurrency,
            client_cert_file=str(settings.relay_client_cert_file)
            if settings.relay_client_cert_file
            else None,
            client_key_file=str(settings.relay_client_key_file)
            if settings.relay_client_key_file
            else None,
            unsafe_plain_http=settings.unsafe_relay_plain_http_loopback,
            development=settings.profile == "development",
        ),
    )


class Relay:
    def __init__(
        self,
        db: Database,
        config: RelayConfig | None = None,
        *,
        metrics: RelayMetrics | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        owner: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.config = config or RelayConfig()
        self.metrics = metrics
        self.clock = clock
        self.owner = owner or f"relay-{uuid.uuid4().hex[:12]}"
        self.rng = rng or random.SystemRandom()
        self.pusher = Pusher(self.config.push)
        self.breaker = CircuitBreaker(self.config.breaker_threshold, self.config.breaker_cooldown)
        self._in_flight: dict[str, set[asyncio.Task[None]]] = {}
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Sweeps failed in a row (unexpected errors): what the wait before the next grows with.
        self._failures = 0
        self._keyless_logged: set[str] = set()
        #: The partner the last sweep leased to last: the next sweep begins after it.
        self._served_last: str | None = None
        #: When (monotonic) the sweep next looks for queued messages too old to go.
        self._next_expiry = 0.0

    # -- one sweep ----------------------------------------------------------------------------

    def _room(self) -> int:
        """How many more deliveries may start in this process, all partners together."""
        total = sum(len(tasks) for tasks in self._in_flight.values())
        return max(0, self.config.max_in_flight - total)

    def _slots(self, partner: str) -> int:
        busy = len(self._in_flight.get(partner, ()))
        free = self.breaker.slots(partner, time.monotonic(), self.config.push.partner_concurrency)
        return max(0, min(self._room(), free - busy))

    async def sweep(self) -> int:
        """Lease what is due and start delivering it; returns how many deliveries started."""
        now = self.clock()
        lease = dt.timedelta(seconds=self.config.lease_seconds)
        try:
            async with self.db.read() as session:
                due = await anything_due(session, now)
            if not due:  # no write transaction when there is nothing to do
                await self._expire_unserved(now)
                return 0
            async with self.db.write() as session:
                claimed = await claim(
                    session,
                    owner=self.owner,
                    now=now,
                    lease=lease,
                    slots=self._slots,
                    limit=self._room(),
                    after=self._served_last,
                )
        except StoreUnavailable:
            log.warning("relay_store_unavailable", relay=self.owner)
            return 0
        started = self._start(claimed)
        # After the claim (which gives up on the rows it meets as a push) and once its
        # deliveries have started, so that a failure here holds none of them up.
        try:
            await self._expire_unserved(now)
        except StoreUnavailable:
            log.warning("relay_store_unavailable", relay=self.owner)
        return started

    def _start(self, claimed: Claim) -> int:
        """Count what the claim dead-lettered and start a delivery per row it leased."""
        if self.metrics is not None:
            self.metrics.dead_lettered(claimed.dead)
        for partner in claimed.keyless - self._keyless_logged:
            log.warning("relay_recipient_key_unavailable", agency_id=partner, relay=self.owner)
        self._keyless_logged = set(claimed.keyless)
        if claimed.rows:
            self._served_last = claimed.rows[-1].endpoint.agency_id
        for row in claimed.rows:
            self.breaker.started(row.endpoint.agency_id, time.monotonic())
            task = asyncio.create_task(self._deliver(row), name=f"deliver-{row.id}")
            tasks = self._in_flight.setdefault(row.endpoint.agency_id, set())
            tasks.add(task)
            task.add_done_callback(functools.partial(self._done, tasks=tasks))
        return len(claimed.rows)

    async def _expire_unserved(self, now: dt.datetime) -> None:
        """Every ``expiry_interval``: dead-letter the messages queued too long that no push or
        pull took (:func:`gateway.delivery.lease.expire_unserved`), a batch per transaction,
        counted once each batch has committed; at most :data:`EXPIRY_BATCHES` batches a look
        (a backlog, say at the first look after an upgrade, is worked through a look per sweep,
        between the claims, not in one go). Its failure (but the store's, which the sweep logs)
        is logged and counted as ``relay_expiry_failed``, never raised: deliveries go on."""
        if time.monotonic() < self._next_expiry:
            return
        self._next_expiry = time.monotonic() + self.config.expiry_interval
        try:
            for _ in range(EXPIRY_BATCHES):
                async with self.db.read() as session:
                    if not await anything_unserved(session, now):
                        return
                async with self.db.write() as session:
                    expired = await expire_unserved(session, now=now, limit=EXPIRY_BATCH)
                if self.metrics is not None:
                    self.metrics.dead_lettered(expired)
                if len(expired) < EXPIRY_BATCH:
                    return
            self._next_expiry = 0.0  # more left: look again at the next sweep
        except StoreUnavailable:
            raise
        except Exception as exc:  # a bad row must not stop every partner's deliveries
            error = type(exc).__name__
            log.error("relay_expiry_failed", alert=True, relay=self.owner, error=error)
            if self.metrics is not None:
                self.metrics.relay_sweep_failures.labels(error).inc()

    def _done(self, task: asyncio.Task[None], *, tasks: set[asyncio.Task[None]]) -> None:
        tasks.discard(task)
        self._wake.set()  # a slot is free: look again without waiting a whole interval
        if not task.cancelled() and task.exception() is not None:
            log.error("relay_delivery_crashed", relay=self.owner, error=type(task.exception()))

    async def _deliver(self, row: Claimed) -> None:
        partner = row.endpoint.agency_id
        result = PushResult(False, "relay_error")
        try:
            result = await self.pusher.push(
                row.endpoint, message_id=row.id, kind=row.kind, body=row.body
            )
        except Exception as exc:  # a leased row is settled whatever happened
            log.error(
                "relay_push_crashed",
                message_id=row.id,
                agency_id=partner,
                relay=self.owner,
                error=type(exc).__name__,
            )
        finally:
            # The breaker hears of every delivery it let start, cancelled or crashed too: a
            # probe that never reported would keep the partner's circuit shut for good.
            if result.ok:
                self.breaker.succeeded(partner)
            elif self.breaker.failed(partner, time.monotonic()):
                log.warning("relay_circuit_open", agency_id=partner, code=result.code)
        now = self.clock()
        dead = False
        next_at: dt.datetime | None = None
        if not result.ok:
            dead = row.attempts >= self.config.max_attempts
            delay = next_delay(
                row.attempts,
                base=self.config.backoff_base,
                cap=self.config.backoff_cap,
                rng=self.rng,
                retry_after=result.retry_after,
            )
            next_at = now + dt.timedelta(seconds=delay)
        for attempt in range(5):
            try:
                async with self.db.write() as session:
                    ours = await settle(
                        session,
                        row.id,
                        owner=self.owner,
                        now=now,
                        delivered=result.ok,
                        code=None if result.ok else result.code,
                        next_attempt_at=next_at,
                        dead=dead,
                    )
                break
            except StoreUnavailable:
                # The lease will expire and the row be retried; the partner dedupes.
                await asyncio.sleep(0.2 * (attempt + 1))
        else:
            log.warning("relay_settle_failed", message_id=row.id, relay=self.owner)
            return
        self._observe(row, result, dead=dead, ours=ours)

    def _observe(self, row: Claimed, result: PushResult, *, dead: bool, ours: bool) -> None:
        outcome = "delivered" if result.ok else ("dead" if dead else "retry")
        if self.metrics is not None:
            self.metrics.outbox_deliveries.labels(outcome, result.code).inc()
            if dead and ours:
                self.metrics.dead_lettered([DeadLetter(row.id, row.kind, result.code)])
        fields = {
            "message_id": row.id,
            "agency_id": row.endpoint.agency_id,
            "kind": row.kind,
            "attempt": row.attempts,
            "code": result.code,
            "status": result.status,
            "elapsed_ms": round(result.elapsed * 1000),
        }
        if dead and ours:
            log.error("outbox_dead_letter", alert=True, **fields)
        elif result.ok:
            log.info("outbox_delivered", **fields)
        else:
            log.info("outbox_delivery_failed", **fields)

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Sweep until :meth:`stop`; waits ``interval`` between sweeps, less when a slot frees."""
        log.info("relay_started", relay=self.owner)
        while not self._stop.is_set():
            self._wake.clear()
            try:
                await self.sweep()
                self._failures = 0
            except Exception as exc:  # one failed sweep must not stop every partner's deliveries
                with contextlib.suppress(TimeoutError):  # backing off: a freed slot is no reason
                    async with asyncio.timeout(self._sweep_failed(exc)):
                        await self._stop.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.interval):
                    stop = asyncio.ensure_future(self._stop.wait())
                    wake = asyncio.ensure_future(self._wake.wait())
                    try:
                        await asyncio.wait({stop, wake}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        stop.cancel()
                        wake.cancel()
            if self._wake.is_set() and not self._stop.is_set():
                await asyncio.sleep(min(0.05, self.config.interval))  # coalesce wake-ups

    def _sweep_failed(self, exc: Exception) -> float:
        """Log and count a sweep's unexpected error; how long to wait before the next sweep."""
        self._failures += 1
        error = type(exc).__name__
        log.error(
            "relay_sweep_failed",
            alert=True,
            relay=self.owner,
            error=error,
            code=_error_code(exc),
            failures=self._failures,
        )
        if self.metrics is not None:
            self.metrics.relay_sweep_failures.labels(error).inc()
        base = max(self.config.interval, 0.05)
        return float(min(SWEEP_FAILURE_BACKOFF_CAP, base * 2 ** min(self._failures - 1, 16)))

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The loop's task ended: expected only after :meth:`stop`; otherwise an alert."""
        if task.cancelled():
            if not self._stop.is_set():
                log.error("relay_loop_ended", alert=True, relay=self.owner, error="cancelled")
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "relay_loop_ended",
                alert=True,
                relay=self.owner,
                error=type(exc).__name__,
                code=_error_code(exc),
            )
        elif not self._stop.is_set():
            log.error("relay_loop_ended", alert=True, relay=self.owner, error="returned")

    def start(self) -> None:
        if self._task is None and self.config.interval > 0:
            self._stop.clear()
            self._task = asyncio.create_task(self.run(), name=f"outbox-{self.owner}")
            self._task.add_done_callback(self._ended)

    async def drain(self, within: float | None = None) -> None:
        """Wait for the deliveries in flight (tests and a clean stop)."""
        tasks = [t for ts in self._in_flight.values() for t in ts]
        if tasks:
            await asyncio.wait(tasks, timeout=within)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop sweeping, let deliveries in flight finish for ``grace`` seconds, then cancel
        them (their rows keep a lease that runs out, and are delivered again later)."""
        self._stop.set()
        if self._task is not None:
            if not self._task.done():  # a loop that ended by itself was logged (_ended)
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            self._task = None
        await self.drain(grace)
        for tasks in self._in_flight.values():
            for task in list(tasks):
                task.cancel()
        await self.drain(1.0)
        await self.pusher.aclose()
        log.info("relay_stopped", relay=self.owner)
