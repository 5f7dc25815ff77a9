"""Backoff and jitter as a failing partner sees them: the relay of ``serve``, on the wire.

``test_backoff_and_codes.py`` checks :func:`gateway.delivery.backoff.next_delay` on its own;
here the relay the app runs (its settings, its sweep loop, its real random source) pushes
messages over TLS to a partner that answers every one with a 500 and notes when each attempt
arrived. THREATS.md asks for retries "with backoff and jitter, capped":

- capped: every delay the relay draws for a retry is at most its ceiling,
  ``min(cap, base * 2**(n-1))`` (the draws are recorded as the relay makes them), and the relay
  waits that long at least: no retry arrives sooner than the shortest delay drawn for it;
- the gaps grow: the later retries (ceiling the cap) wait longer on average than the first ones;
- the messages, queued together, drift apart: their last attempts fall far apart (no lockstep).

Nothing here bounds how late a retry may arrive: on a machine shared with other work a sweep,
a handshake or a commit can take any time (speed is measured in benchmarks/, not asserted).
The backoff is scaled down by its settings (``MAPPA_RELAY_BACKOFF_BASE_SECONDS``,
``..._CAP_SECONDS``): 0.1 s doubling to a cap of 0.8 s, seven attempts, about two seconds.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.delivery import relay as relay_module
from gateway.delivery.backoff import next_delay
from gateway.settings import Settings
from gateway.state import GatewayState
from tests.gateway.delivery.stub import PartnerPKI, PartnerStub
from tests.gateway.delivery.support import development_keys, partner, queue, rows, until

BASE = 0.1
CAP = 0.8
ATTEMPTS = 7
MESSAGES = 8


def _ceiling(attempt: int) -> float:
    """The most the relay may wait after failed attempt ``attempt`` (counted from 1)."""
    return min(CAP, BASE * 2 ** (attempt - 1))


async def test_a_failing_partner_sees_capped_growing_jittered_retries(
    sqlite_url: str,
    gateway_keys: tuple[Path, Path],
    stub: PartnerStub,
    pki: PartnerPKI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[tuple[int, float]] = []  # (failed attempt, delay drawn), as the relay draws them

    def recorded(attempt: int, **kwargs: Any) -> float:
        delay = next_delay(attempt, **kwargs)
        drawn.append((attempt, delay))
        return delay

    monkeypatch.setattr(relay_module, "next_delay", recorded)
    keys_dir, kek_file = development_keys(gateway_keys, tmp_path)
    settings = Settings(
        profile="development",  # the stub partner listens on the loopback
        database_url=sqlite_url,
        issuer="https://gateway.test",
        keys_dir=keys_dir,
        kek_file=kek_file,
        relay_interval_seconds=0.01,
        relay_backoff_base_seconds=BASE,
        relay_backoff_cap_seconds=CAP,
        relay_max_attempts=ATTEMPTS,
        relay_partner_concurrency=MESSAGES,  # all of them sent at once, first time round
        relay_breaker_threshold=1000,  # the circuit stays closed: each retry is the backoff's
    )
    stub.default = "500"
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: GatewayState = app.state.gateway
        assert state.relay is not None
        await partner(state.db, "cs-a", stub.url, pki.ca_pem)
        ids = await queue(state.db, "cs-a", MESSAGES)

        async def all_dead() -> bool:
            return all(row.status == "dead" for row in (await rows(state.db)).values())

        await until(all_dead, within=30)
        stored = await rows(state.db)
    settled = {(row.attempts, row.last_error_code) for row in stored.values()}
    assert settled == {(ATTEMPTS, "http_5xx")}

    arrived: dict[str, list[float]] = defaultdict(list)
    for received in stub.requests:
        arrived[received.idempotency_key].append(received.at)
    assert sorted(arrived) == sorted(ids)
    gaps = {mid: [b - a for a, b in pairwise(at)] for mid, at in arrived.items()}
    assert {len(g) for g in gaps.values()} == {ATTEMPTS - 1}, gaps

    # capped: every delay drawn is within its ceiling (one draw a failed attempt) ...
    assert len(drawn) == MESSAGES * ATTEMPTS
    for attempt, delay in drawn:
        assert 0 <= delay <= _ceiling(attempt), (attempt, delay)
    # ... and waited: no retry came sooner than the shortest delay drawn after that attempt
    shortest = {n: min(d for a, d in drawn if a == n) for n in range(1, ATTEMPTS)}
    for mid, waited in gaps.items():
        for attempt, gap in enumerate(waited, start=1):
            assert gap >= shortest[attempt] - 0.005, (mid, attempt, gap, shortest)

    # growing: the retries whose ceiling is the cap wait longer than the first two did
    early = statistics.mean(g[k] for g in gaps.values() for k in (0, 1))  # ceilings 0.1, 0.2
    late = statistics.mean(g[k] for g in gaps.values() for k in (3, 4, 5))  # ceiling 0.8
    assert late - early > 0.15, (early, late, gaps)

    # jittered: the time each message took from its first attempt to its last differs widely
    last = [at[-1] - at[0] for at in arrived.values()]
    assert max(last) - min(last) > 0.3, last
