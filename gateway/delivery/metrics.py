"""The outbox relay's Prometheus metrics: pushes, dead letters, the queue's depth and age.

:class:`RelayMetrics` holds them in a registry of their own, which is what the relay run alone
(``mappa-gateway relay``) serves on its metrics listener
(:mod:`gateway.delivery.metrics_listener`). A gateway process's metrics
(:class:`gateway.http.metrics.GatewayMetrics`) are these and its own in one registry, so a relay
run inside ``serve`` counts into the ``/metrics`` of that process, under the same names.

Labels are outcomes, codes and message kinds: a fixed, small set. No label or value carries an
id of a message, an agency, a nominal or a record. The gauges are read from the store when the
metrics are scraped (:meth:`RelayMetrics.refresh_outbox`), never on a timer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.delivery.dead_letters import DeadLetter
from gateway.delivery.operations import depth, oldest_waiting

__all__ = ["RelayMetrics"]


class RelayMetrics:
    """The relay's metrics, in ``registry`` (a new one by default, so tests stay apart)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.outbox_depth = Gauge(
            "mappa_gateway_outbox_depth",
            "Messages waiting in the delivery outbox (pending, leased or dead)",
            registry=self.registry,
        )
        self.outbox_oldest_age = Gauge(
            "mappa_gateway_outbox_oldest_age_seconds",
            "Age of the oldest message still waiting for delivery (pending or leased; 0 when none)",
            registry=self.registry,
        )
        self.outbox_deliveries = Counter(
            "mappa_gateway_outbox_deliveries",
            "Push attempts by the relay, by outcome (delivered, retry, dead) and code",
            ["outcome", "code"],
            registry=self.registry,
        )
        self.outbox_dead_letters = Counter(
            "mappa_gateway_outbox_dead_letters",
            "Messages dead-lettered (after their last attempt, queued longer ago than a partner "
            "accepts a push, sealed to a key their recipient has retired, or that their "
            "recipient may no longer know of), by kind and last code",
            ["kind", "code"],
            registry=self.registry,
        )

        self.relay_sweep_failures = Counter(
            "mappa_gateway_outbox_sweep_failures",
            "Relay sweeps that failed with an unexpected error (the relay backs off and goes "
            "on), by the error's type",
            ["error"],
            registry=self.registry,
        )

    def dead_lettered(self, letters: Iterable[DeadLetter]) -> None:
        """Count messages given up on, once the transaction that did so has committed."""
        for letter in letters:
            self.outbox_dead_letters.labels(letter.kind, letter.code).inc()

    async def refresh_outbox(self, session: AsyncSession, now: dt.datetime) -> None:
        """Read the outbox gauges from the store (at a scrape)."""
        self.outbox_depth.set(await depth(session))
        self.outbox_oldest_age.set(await oldest_waiting(session, now))
