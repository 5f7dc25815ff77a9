"""The relay run alone serves its own metrics (MAPPA_RELAY_METRICS_PORT): scraped over HTTP, its
counters move as it delivers and dead-letters, and nothing in them names a message, an agency or
a nominal. ``serve`` never opens that port: the relay inside it counts into its own /metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from gateway.delivery import enqueue, metrics_listener
from gateway.delivery.metrics import RelayMetrics
from gateway.delivery.metrics_listener import MetricsListener
from gateway.store import Database
from gateway.store.models import OutboxMessage
from tests.gateway.delivery.stub import PartnerPKI, PartnerStub, free_port
from tests.gateway.delivery.support import (
    JWE,
    development_keys,
    partner,
    queue,
    rows,
    sealed_to,
    until,
)

ROOT = Path(__file__).resolve().parents[3]
#: What the relay's metrics may be labelled by: a fixed, small set, never an id.
LABELS = {"outcome", "code", "kind"}
#: The series the scenario below moves, each to 1.
MOVED = [
    ("mappa_gateway_outbox_deliveries_total", {"outcome": "delivered", "code": "delivered"}),
    ("mappa_gateway_outbox_deliveries_total", {"outcome": "dead", "code": "http_5xx"}),
    ("mappa_gateway_outbox_dead_letters_total", {"kind": "hazard_flag", "code": "http_5xx"}),
    (
        "mappa_gateway_outbox_dead_letters_total",
        {"kind": "minutes", "code": "recipient_may_not_know"},
    ),
    (
        "mappa_gateway_outbox_dead_letters_total",
        {"kind": "record", "code": "recipient_key_retired"},
    ),
]


def _relay_process(database_url: str, tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    """``mappa-gateway relay`` with its metrics on ``port``; its stderr in ``tmp_path/stderr``."""
    with (tmp_path / "stderr").open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "relay", "--no-migrate"],
            env={
                **os.environ,
                "MAPPA_PROFILE": "development",  # the stub partners listen on the loopback
                "MAPPA_DATABASE_URL": database_url,
                "MAPPA_ISSUER": "https://gateway.test",
                "MAPPA_KEYS_DIR": str(tmp_path / "no-keys"),
                "MAPPA_RELAY_INTERVAL_SECONDS": "0.05",
                "MAPPA_RELAY_MAX_ATTEMPTS": "1",  # a failed push is a dead letter at once
                "MAPPA_RELAY_METRICS_PORT": str(port),
            },
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=ROOT,
        )


async def _scrape(port: int, within: float = 30.0) -> str:
    """``GET /metrics`` over HTTP, waiting for the listener to be up."""
    deadline = asyncio.get_running_loop().time() + within
    async with httpx.AsyncClient(trust_env=False) as client:
        while True:
            try:
                answer = await client.get(f"http://127.0.0.1:{port}/metrics")
            except httpx.ConnectError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
                continue
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/plain")
            return answer.text


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when the series does not exist yet)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        metric, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', metric))
        if metric.split("{", 1)[0] == name and found == labels:
            return float(value)
    return 0.0


@pytest.mark.slow
async def test_the_relay_run_alone_serves_counters_that_move_and_name_nobody(
    sqlite_url: str, pki: PartnerPKI, tmp_path: Path
) -> None:
    """One message delivered, one pushed to a partner that answers 500 (dead after its one
    attempt), one about a nominal its recipient may not know, one sealed to a key its
    recipient does not hold, one waiting for a partner that only pulls: the scrape shows each
    in its counter, the depth and the age of the oldest waiting message, and no id, agency,
    nominal, key or body."""
    accepting = await PartnerStub(pki=pki).start()
    failing = await PartnerStub(pki=pki, default="500").start()
    db = Database(sqlite_url)
    port = free_port()
    relay = _relay_process(sqlite_url, tmp_path, port)
    try:
        await partner(db, "cs-barnet", accepting.url, pki.ca_pem)
        await partner(db, "housing-barnet", failing.url, pki.ca_pem)
        await partner(db, "probation-barnet", None)  # pulls only: its message waits
        before = await _scrape(port)
        assert _sample(before, "mappa_gateway_outbox_depth") == 0
        assert "mappa_gateway_outbox_deliveries_total{" not in before

        queued_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        [delivered] = await queue(db, "cs-barnet")
        [failed] = await queue(db, "housing-barnet")
        async with db.write() as session:
            refused = await enqueue(
                session,
                recipient_agency_id="cs-barnet",
                kind="minutes",
                body=JWE,
                nominal_ref="N-SECRET-NOMINAL",
            )
            retired = await enqueue(
                session,
                recipient_agency_id="cs-barnet",
                kind="record",
                body=sealed_to("kid-never-registered"),
            )
            waiting = await enqueue(
                session,
                recipient_agency_id="probation-barnet",
                kind="record",
                body=JWE,
                now=queued_at,
            )

        async def settled() -> bool:
            text = await _scrape(port)
            return all(_sample(text, name, **labels) == 1 for name, labels in MOVED)

        await until(settled, within=30)
        text = await _scrape(port)
        stored = await rows(db)
    finally:
        relay.send_signal(signal.SIGTERM)
        try:
            code = relay.wait(30)
        finally:
            await accepting.stop()
            await failing.stop()
            await db.dispose()
    assert code == 0, (tmp_path / "stderr").read_text()
    assert [stored[m].status for m in (delivered, failed, refused, retired, waiting)] == [
        "delivered",
        "dead",
        "dead",
        "dead",
        "pending",
    ]
    assert _sample(text, "mappa_gateway_outbox_depth") == 4  # three dead, one waiting
    assert _sample(text, "mappa_gateway_outbox_oldest_age_seconds") >= 2 * 3600

    # the relay's metrics alone: not the API's, not the process collectors
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(line.startswith("mappa_gateway_outbox_") for line in samples), samples
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert {re.sub(r"_(total|created)$", "", name) for name in names} == {
        "mappa_gateway_outbox_depth",
        "mappa_gateway_outbox_oldest_age_seconds",
        "mappa_gateway_outbox_deliveries",
        "mappa_gateway_outbox_dead_letters",
        "mappa_gateway_outbox_sweep_failures",
    }
    assert set(re.findall(r'[{,](\w+)="', text)) <= LABELS
    for personal in (
        delivered,
        failed,
        refused,
        retired,
        waiting,
        "barnet",
        "N-SECRET-NOMINAL",
        "kid-never-registered",
        JWE.split(".")[0],
        "127.0.0.1",
    ):
        assert personal not in text


@pytest.mark.slow
def test_a_relay_whose_metrics_port_is_taken_refuses_to_start(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Configured to be watched and unable to be: exit 2 with the reason, nothing delivered
    unseen (another process on the port would be scraped in its place)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        relay = _relay_process(sqlite_url, tmp_path, taken.getsockname()[1])
        try:
            code = relay.wait(60)
        finally:
            if relay.poll() is None:
                relay.kill()
    error = (tmp_path / "stderr").read_text()
    assert code == 2, error
    assert "refusing to start: no metrics listener on 127.0.0.1:" in error


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_the_listener_answers_its_scraper_at_metrics_and_nothing_else(
    sqlite_db: Database,
) -> None:
    """/metrics to an allowed peer (GET and HEAD); any other path 404, another method 405, a
    request line it cannot read 400; to a peer outside MAPPA_METRICS_ALLOWED even /metrics is
    the 404 of a path that does not exist, as serve's /metrics is."""
    listener = MetricsListener(RelayMetrics(), sqlite_db, allowed=("127.0.0.0/8",))
    stranger = MetricsListener(RelayMetrics(), sqlite_db, allowed=("10.0.2.20",))
    await listener.start("127.0.0.1", 0)
    await stranger.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(trust_env=False) as client:
            base = f"http://127.0.0.1:{listener.port}"
            scraped = await client.get(f"{base}/metrics")
            assert scraped.status_code == 200 and "mappa_gateway_outbox_depth 0.0" in scraped.text
            head = await client.head(f"{base}/metrics")
            assert head.status_code == 200 and head.content == b""
            assert (await client.get(f"{base}/metrics?name[]=x")).status_code == 200
            assert (await client.get(f"{base}/")).status_code == 404
            assert (await client.get(f"{base}/metrics/")).status_code == 404
            refused = await client.post(f"{base}/metrics", content=b"x")
            assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
            unknown = await client.get(f"http://127.0.0.1:{stranger.port}/metrics")
            assert unknown.status_code == 404 and unknown.content == b""
        garbage = await _raw(listener.port, b"GET metrics\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        oversized = await _raw(listener.port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000)
        assert oversized.startswith(b"HTTP/1.1 400 ")
    finally:
        await listener.stop()
        await stranger.stop()


async def test_the_listener_bounds_its_connections_and_a_strangers_wait(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most MAX_CONNECTIONS connections are open at once: one more is closed unanswered,
    nothing read, so idle connections cannot take the relay's file descriptors; a peer outside
    the allow-list that sends nothing is let go after STRANGER_DEADLINE, not DEADLINE. The
    scraper is answered again once they are gone."""
    monkeypatch.setattr(metrics_listener, "MAX_CONNECTIONS", 3)
    monkeypatch.setattr(metrics_listener, "DEADLINE", 60.0)
    monkeypatch.setattr(metrics_listener, "STRANGER_DEADLINE", 0.2)
    listener = MetricsListener(RelayMetrics(), sqlite_db, allowed=("127.0.0.0/8",))
    stranger = MetricsListener(RelayMetrics(), sqlite_db, allowed=("10.0.2.20",))
    await listener.start("127.0.0.1", 0)
    await stranger.start("127.0.0.1", 0)
    idle = []
    try:
        for _ in range(3):  # an allowed peer that sends nothing holds its place until DEADLINE
            idle.append(await asyncio.open_connection("127.0.0.1", listener.port))
        await asyncio.sleep(0.1)
        try:  # closed unanswered: an empty read, or a reset for the request it never read
            assert await _raw(listener.port, b"GET /metrics HTTP/1.1\r\n\r\n") == b""
        except ConnectionResetError:
            pass
        reader, writer = await asyncio.open_connection("127.0.0.1", stranger.port)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # let go, well before 60 s
        writer.close()
        for _, held in idle:
            held.close()
        await asyncio.sleep(0.1)
        answered = await _raw(listener.port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert answered.startswith(b"HTTP/1.1 200 ")
    finally:
        await listener.stop()
        await stranger.stop()


async def test_serve_opens_no_relay_metrics_port_and_counts_its_relay_in_its_own(
    sqlite_url: str,
    gateway_keys: tuple[Path, Path],
    pki: PartnerPKI,
    tmp_path: Path,
) -> None:
    """MAPPA_RELAY_METRICS_PORT set for a gateway that runs its relay inside: nothing listens
    on that port, and the relay's deliveries are counted in the gateway's /metrics."""
    from gateway.app import create_app
    from gateway.settings import Settings

    keys_dir, kek_file = development_keys(gateway_keys, tmp_path)
    port = free_port()
    settings = Settings(
        profile="development",
        database_url=sqlite_url,
        issuer="https://gateway.test",
        keys_dir=keys_dir,
        kek_file=kek_file,
        relay_interval_seconds=0.05,
        relay_metrics_port=port,
    )
    stub = await PartnerStub(pki=pki).start()
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            state = app.state.gateway
            await partner(state.db, "cs-a", stub.url, pki.ca_pem)
            [mid] = await queue(state.db, "cs-a")

            async def delivered() -> bool:
                return (await rows(state.db))[mid].status == "delivered"

            await until(delivered)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                text = (await client.get("/metrics")).text
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", port)
    finally:
        await stub.stop()
    labels = {"outcome": "delivered", "code": "delivered"}
    assert _sample(text, "mappa_gateway_outbox_deliveries_total", **labels) == 1
    assert "mappa_gateway_requests_total" in text  # the gateway's own /metrics, one registry


async def test_the_gauges_count_the_open_messages_and_age_the_oldest_waiting(db: Database) -> None:
    """Depth counts pending, leased and dead; the age is the oldest pending or leased message's
    (a dead letter left unpurged would hold it up for good), 0 when none waits."""
    t0 = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
    metrics = RelayMetrics()
    await partner(db, "cs-a", None)

    async def refreshed(now: dt.datetime) -> tuple[float | None, float | None]:
        async with db.read() as session:
            await metrics.refresh_outbox(session, now)
        return (
            metrics.registry.get_sample_value("mappa_gateway_outbox_depth"),
            metrics.registry.get_sample_value("mappa_gateway_outbox_oldest_age_seconds"),
        )

    assert await refreshed(t0) == (0, 0)
    async with db.write() as session:
        ids = [
            await enqueue(session, recipient_agency_id="cs-a", kind="record", body=JWE, now=at)
            for at in (t0 - dt.timedelta(hours=5), t0, t0 + dt.timedelta(minutes=30))
        ]
    async with db.write() as session:  # the oldest given up on
        await session.execute(
            update(OutboxMessage).where(OutboxMessage.id == ids[0]).values(status="dead")
        )
    assert await refreshed(t0 + dt.timedelta(hours=2)) == (3, 7200)
