"""The relay as a process: killed with SIGKILL mid-delivery, and two relays on one PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from gateway.delivery.relay import Relay
from gateway.store import Database
from tests.gateway.delivery.stub import PartnerPKI, PartnerStub
from tests.gateway.delivery.support import fast_config, partner, queue, rows, until

pytestmark = pytest.mark.slow


def _relay_process(database_url: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MAPPA_PROFILE": "development",  # the stub partner listens on the loopback
        "MAPPA_DATABASE_URL": database_url,
        "MAPPA_ISSUER": "https://gateway.test",
        "MAPPA_KEYS_DIR": str(tmp_path / "no-keys"),
        "MAPPA_RELAY_INTERVAL_SECONDS": "0.05",
        "MAPPA_RELAY_LEASE_SECONDS": "5",
        "MAPPA_RELAY_TOTAL_TIMEOUT_SECONDS": "4",
        "MAPPA_RELAY_READ_TIMEOUT_SECONDS": "4",
        "MAPPA_RELAY_BACKOFF_BASE_SECONDS": "0.05",
        "MAPPA_RELAY_BACKOFF_CAP_SECONDS": "0.1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "relay", "--no-migrate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[3],
    )


async def test_relay_killed_mid_delivery_delivers_after_restart_once_logically(
    sqlite_url: str, stub: PartnerStub, pki: PartnerPKI, tmp_path: Path
) -> None:
    """SIGKILL after the partner committed but before its 2xx reached the relay: after the
    restart the message is pushed again with the same Idempotency-Key, the partner dedupes, and
    the row ends delivered: no loss, no logical duplicate."""
    db = Database(sqlite_url)
    try:
        await partner(db, "cs-a", stub.url, pki.ca_pem)
        [mid] = await queue(db, "cs-a")
        stub.script.append("slow")
        stub.slow_seconds = 30
        first = _relay_process(sqlite_url, tmp_path)
        try:

            async def pushed() -> bool:
                return len(stub.requests) == 1

            await until(pushed, within=20)
            assert (await rows(db))[mid].status == "leased"
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        second = _relay_process(sqlite_url, tmp_path)
        try:

            async def delivered() -> bool:
                return (await rows(db))[mid].status == "delivered"

            await until(delivered, within=30)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
        assert [r.idempotency_key for r in stub.requests] == [mid, mid]  # at least once on the wire
        assert list(stub.accepted) == [mid]  # once logically
        assert (await rows(db))[mid].attempts == 2
    finally:
        await db.dispose()


async def test_two_relays_on_postgresql_never_deliver_a_row_twice(
    postgres_url: str, pki: PartnerPKI
) -> None:
    """SKIP LOCKED leases: two relays sharing a database split the rows; none is sent twice."""
    stub = await PartnerStub(pki=pki).start()
    first_db, second_db = Database(postgres_url), Database(postgres_url)
    try:
        await partner(first_db, "cs-a", stub.url, pki.ca_pem)
        await partner(first_db, "housing-a", stub.url, pki.ca_pem)
        ids = await queue(first_db, "cs-a", 60) + await queue(first_db, "housing-a", 60)
        # Timeouts generous enough that a handshake slowed by a loaded machine is not a failed
        # attempt: what is measured is that the two relays never share a row.
        config = fast_config(
            partner_concurrency=6,
            max_attempts=20,
            connect_timeout=10.0,
            read_timeout=10.0,
            total_timeout=20.0,
            lease_seconds=30.0,
        )
        relays = [Relay(first_db, config), Relay(second_db, config)]
        for relay in relays:
            relay.start()

        async def all_delivered() -> bool:
            return all(r.status == "delivered" for r in (await rows(first_db)).values())

        await until(all_delivered, within=30)
        for relay in relays:
            await relay.stop()
        sent = Counter(r.idempotency_key for r in stub.requests)
        assert sorted(sent) == sorted(ids)
        assert max(sent.values()) == 1
        final = await rows(first_db)
        assert Counter(final[i].attempts for i in ids) == {1: len(ids)}
    finally:
        await stub.stop()
        await first_db.dispose()
        await second_db.dispose()


async def test_relay_once_command_delivers_and_exits(
    sqlite_url: str, stub: PartnerStub, pki: PartnerPKI, tmp_path: Path
) -> None:
    """``mappa-gateway relay --once`` sweeps, waits for its deliveries and exits 0."""
    db = Database(sqlite_url)
    try:
        await partner(db, "cs-a", stub.url, pki.ca_pem)
        [mid] = await queue(db, "cs-a")
        env_proc = _relay_process(sqlite_url, tmp_path)
        env_proc.send_signal(signal.SIGTERM)
        env_proc.wait(20)
        proc = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "gateway.cli", "relay", "--no-migrate", "--once"],
            env={
                **os.environ,
                "MAPPA_PROFILE": "development",
                "MAPPA_DATABASE_URL": sqlite_url,
                "MAPPA_ISSUER": "https://gateway.test",
                "MAPPA_KEYS_DIR": str(tmp_path / "no-keys"),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert (await rows(db))[mid].status == "delivered"
    finally:
        await db.dispose()
