"""Per-client quotas: a token bucket per key, in memory, bounded in size.

Protected calls are limited per verified client id (after the access token and DPoP proof are
checked, before any database work), so one agency over its quota gets ``429`` with
``Retry-After`` and no other agency notices. The token endpoint is limited per peer address,
because the client id in a token request is not yet proven and keying on it would let anyone
exhaust another agency's quota. Refused calls to the API are limited per peer address too, in a
bucket of their own beside the token endpoint's: each refusal is audited, and a garbage token
needs no key, so past that quota a refusal is 429 and not audited (it is logged with its code).

Quotas are per process: with ``N`` replicas behind a load balancer an agency may reach ``N``
times the configured rate. Memory is bounded: at most ``max_keys`` buckets, the least recently
used dropped first (a dropped bucket starts full again, which only ever favours the caller).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import RateLimited

__all__ = ["RateLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Take one token from ``key``'s bucket, or raise :class:`RateLimited`."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = _Bucket(tokens=float(self.burst), updated=now)
            else:
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
                bucket.updated = now
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait = (1.0 - bucket.tokens) / self.rate
        raise RateLimited(retry_after=max(1, math.ceil(wait)), diagnostics={"key": key[:64]})

    def __len__(self) -> int:
        return len(self._buckets)
