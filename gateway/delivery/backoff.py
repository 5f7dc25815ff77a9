"""When to try a partner again: exponential backoff with full jitter, and a circuit breaker.

:func:`next_delay` is the AWS "full jitter" schedule: a uniform draw in
``[0, min(cap, base * 2**(attempt - 1))]``, never below a partner's ``Retry-After`` (itself
capped). :class:`CircuitBreaker` is per partner and per relay process: after ``threshold``
consecutive failures it opens for ``cooldown`` seconds, during which none of the partner's rows
is claimed (they stay pending, so nothing is lost and no attempt is spent); then one probe is
let through (half open), and its outcome closes or reopens the circuit.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

__all__ = ["BreakerState", "CircuitBreaker", "next_delay"]


def next_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
    ceiling = min(cap, base * (2 ** max(0, min(attempt - 1, 62))))
    delay = rng.uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class _Partner:
    failures: int = 0
    opened_until: float | None = None
    probing: bool = False


@dataclass
class CircuitBreaker:
    threshold: int = 5
    cooldown: float = 30.0
    _partners: dict[str, _Partner] = field(default_factory=dict)

    def state(self, partner: str, now: float) -> BreakerState:
        p = self._partners.get(partner)
        if p is None or p.opened_until is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if now < p.opened_until else BreakerState.HALF_OPEN

    def slots(self, partner: str, now: float, concurrency: int) -> int:
        """How many new deliveries to this partner may start now."""
        state = self.state(partner, now)
        if state is BreakerState.CLOSED:
            return concurrency
        if state is BreakerState.OPEN:
            return 0
        return 0 if self._partners[partner].probing else 1

    def started(self, partner: str, now: float) -> None:
        if self.state(partner, now) is BreakerState.HALF_OPEN:
            self._partners[partner].probing = True

    def succeeded(self, partner: str) -> None:
        self._partners.pop(partner, None)

    def failed(self, partner: str, now: float) -> bool:
        """Record a failure; True when this one opened (or reopened) the circuit."""
        p = self._partners.setdefault(partner, _Partner())
        p.failures += 1
        was_probe, p.probing = p.probing, False
        if was_probe or p.failures >= self.threshold:
            p.opened_until = now + self.cooldown
            return True
        return False

    def open_partners(self, now: float) -> set[str]:
        return {name for name in self._partners if self.state(name, now) is BreakerState.OPEN}
