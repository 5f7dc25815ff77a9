"""The relay's loop outlives a sweep that fails: logged by type and code, counted, backed off."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

import gateway.delivery.relay as relay_module
from gateway.delivery.lease import claim
from gateway.delivery.metrics import RelayMetrics
from gateway.delivery.relay import SWEEP_FAILURE_BACKOFF_CAP, Relay
from gateway.errors import AuditUnavailable
from gateway.store import Database
from tests.gateway.delivery.stub import PartnerPKI, PartnerStub
from tests.gateway.delivery.support import fast_config, partner, queue, rows, until

#: What an error's message could carry: it must never reach a log line.
SECRET = "PNC 11/0456123K"


async def test_a_sweep_that_fails_is_logged_counted_and_the_relay_goes_on(
    sqlite_db: Database, stub: PartnerStub, pki: PartnerPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sweeps fail (a bug, then the audit log unavailable); the relay still delivers the
    message after them. Each failure is one alert log line naming the error's type and code,
    never its message, and one count. (The first failure ended the loop for good, silently,
    and nothing was delivered to any partner again.)"""
    await partner(sqlite_db, "cs-a", stub.url, pki.ca_pem)
    [mid] = await queue(sqlite_db, "cs-a")
    failures: list[BaseException] = [ValueError(SECRET), AuditUnavailable(SECRET)]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return await claim(*args, **kwargs)

    monkeypatch.setattr(relay_module, "claim", flaky)
    metrics = RelayMetrics()
    relay = Relay(sqlite_db, fast_config(), metrics=metrics)
    with capture_logs() as logs:
        relay.start()

        async def delivered() -> bool:
            return (await rows(sqlite_db))[mid].status == "delivered"

        await until(delivered, within=10)
        await relay.stop()
    failed = [e for e in logs if e["event"] == "relay_sweep_failed"]
    assert [(e["error"], e["code"], e["failures"]) for e in failed] == [
        ("ValueError", "unexpected", 1),
        ("AuditUnavailable", "audit_unavailable", 2),
    ]
    assert all(e["alert"] is True for e in failed)
    assert SECRET not in repr(logs)
    assert not [e for e in logs if e["event"] == "relay_loop_ended"]
    count = metrics.registry.get_sample_value
    assert count("mappa_gateway_outbox_sweep_failures_total", {"error": "ValueError"}) == 1
    assert count("mappa_gateway_outbox_sweep_failures_total", {"error": "AuditUnavailable"}) == 1


async def test_the_wait_after_failed_sweeps_doubles_up_to_a_cap(sqlite_db: Database) -> None:
    """Failures in a row wait longer each time, never more than the cap; a freed delivery slot
    does not cut the wait short."""
    relay = Relay(sqlite_db, fast_config(interval=1.0))
    with capture_logs():
        waits = [relay._sweep_failed(RuntimeError(SECRET)) for _ in range(8)]
    assert waits[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert waits[5:] == [SWEEP_FAILURE_BACKOFF_CAP] * 3


class _Fatal(BaseException):
    """Something no ``except Exception`` catches."""


async def test_a_loop_that_ends_anyway_is_an_alert(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the loop's task end other than by stop(), an alert line says so."""
    relay = Relay(sqlite_db, fast_config())

    async def fatal() -> int:
        raise _Fatal(SECRET)

    monkeypatch.setattr(relay, "sweep", fatal)
    with capture_logs() as logs:
        relay.start()
        for _ in range(50):
            await asyncio.sleep(0.01)
            if any(e["event"] == "relay_loop_ended" for e in logs):
                break
        await relay.stop()
    [ended] = [e for e in logs if e["event"] == "relay_loop_ended"]
    assert (ended["error"], ended["code"], ended["alert"]) == ("_Fatal", "unexpected", True)
    assert SECRET not in repr(logs)


async def test_a_loop_stopped_is_no_alert(sqlite_db: Database) -> None:
    relay = Relay(sqlite_db, fast_config())
    with capture_logs() as logs:
        relay.start()
        await asyncio.sleep(0.05)
        await relay.stop()
    assert not [e for e in logs if e["event"] in ("relay_loop_ended", "relay_sweep_failed")]
