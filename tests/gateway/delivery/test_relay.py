"""The relay against a real partner on 127.0.0.1: TLS, acknowledgement, faults, isolation."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import update
from structlog.testing import capture_logs

from gateway.delivery import enqueue
from gateway.delivery.relay import Relay
from gateway.http.metrics import GatewayMetrics
from gateway.store import Database
from gateway.store.models import AgencyKey
from tests.gateway.delivery.stub import PartnerPKI, PartnerStub, free_port
from tests.gateway.delivery.support import (
    JWE,
    development_keys,
    fast_config,
    known_nominal,
    partner,
    queue,
    rows,
    until,
)


async def _settle(relay: Relay, rounds: int = 30) -> None:
    """Sweep and wait for the deliveries until nothing more starts (backoff is ~20 ms)."""
    for _ in range(rounds):
        await relay.sweep()
        await relay.drain(5)
        await asyncio.sleep(0.03)


async def test_delivers_sealed_body_over_tls_trusting_only_the_partners_ca(
    sqlite_db: Database, stub: PartnerStub, pki: PartnerPKI
) -> None:
    """One POST of the JWE as application/jose with Idempotency-Key = message id, then delivered."""
    await partner(sqlite_db, "cs-a", stub.url, pki.ca_pem)
    [mid] = await queue(sqlite_db, "cs-a")
    relay = Relay(sqlite_db, fast_config())
    await _settle(relay, 2)
    await relay.stop()
    [got] = stub.requests
    assert (got.idempotency_key, got.kind, got.content_type) == (
        mid,
        "hazard_flag",
        "application/jose",
    )
    assert got.body == JWE.encode()
    row = (await rows(sqlite_db))[mid]
    assert (row.status, row.attempts, row.lease_owner) == ("delivered", 1, None)
    assert row.delivered_at is not None


async def test_a_failed_look_for_expired_messages_holds_up_no_delivery(
    sqlite_db: Database, stub: PartnerStub, pki: PartnerPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep looks for messages too old to go after its claim: when that look finds the
    store unavailable, the messages just claimed are still pushed and delivered, and the sweep
    says it started them (they waited for their lease to run out before)."""
    from gateway.delivery import relay as relay_module
    from gateway.errors import StoreUnavailable

    async def unavailable(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable()

    monkeypatch.setattr(relay_module, "anything_unserved", unavailable)
    await partner(sqlite_db, "cs-a", stub.url, pki.ca_pem)
    ids = await queue(sqlite_db, "cs-a", 2)
    relay = Relay(sqlite_db, fast_config(expiry_interval=0))
    with capture_logs() as logs:
        assert await relay.sweep() == 2
        await relay.drain(5)
    await relay.stop()
    assert sorted(stub.accepted) == sorted(ids)
    assert {r.status for r in (await rows(sqlite_db)).values()} == {"delivered"}
    assert any(e["event"] == "relay_store_unavailable" for e in logs)


@pytest.mark.parametrize("scheme", ["https://", "HTTPS://", "Https://"])
async def test_endpoint_vouched_for_by_another_ca_is_never_sent_to(
    sqlite_db: Database, stub: PartnerStub, other_pki: PartnerPKI, scheme: str
) -> None:
    """The system trust store and other partners' CAs count for nothing: TLS fails, no request.
    The scheme in any case is https (an endpoint registered as ``HTTPS://`` was pushed to with
    no certificate check at all)."""
    url = stub.url.replace("https://", scheme)
    await partner(sqlite_db, "cs-a", url, other_pki.ca_pem)
    [mid] = await queue(sqlite_db, "cs-a")
    relay = Relay(sqlite_db, fast_config())
    await _settle(relay, 2)
    await relay.stop()
    assert stub.requests == []
    row = (await rows(sqlite_db))[mid]
    assert (row.status, row.last_error_code) == ("pending", "tls_failed")


async def test_500_then_success_is_delivered_once(
    sqlite_db: Database, stub: PartnerStub, pki: PartnerPKI
) -> None:
    """A failure is retried after a jittered backoff and delivered on the 2xx."""
    stub.script.extend(["500", "500"])
    await partner(sqlite_db, "cs-a", stub.url, pki.ca_pem)
    [mid] = await queue(sqlite_db, "cs-a")
    relay = Relay(sqlite_db, fast_config())
    await _settle(relay)
    await relay.stop()
    row = (await rows(sqlite_db))[mid]
    assert (row.status, row.attempts) == ("delivered", 3)
    assert [r.idempotency_key for r in stub.requests] == [mid, mid, mid]
    assert list(stub.accepted) == [mid]


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("500", "http_5xx"),  # the partner keeps failing
        ("429", "rate_limited"),  # the partner keeps throttling
        ("503", "http_5xx"),  # the partner is in maintenance
        ("503-far", "http_5xx"),  # ... until a year datetime cannot hold (push raised)
        ("reset", "connection_reset"),  # the connection is reset mid-exchange
        ("redirect", "redirect_refused"),  # a redirect is never followed (SSRF, exfiltration)
        ("garbage", "protocol_error"),  # the answer is not HTTP
        ("big", "response_too_large"),  # a 2xx larger than any acknowledgement
        ("hang", "read_timeout"),  # the partner never answers: the read deadline ends it
    ],
)
async def test_failing_partner_is_retried_then_dead_lettered_with_an_alert(
    sqlite_db: Database, stub: PartnerStub, pki: PartnerPKI, mode: str, code: str
) -> None:
    """Capped retries, then dead, a dead-letter metric and one alert line with ids and codes."""
    stub.default = mode
    await partner(sqlite_db, "cs-a", stub.url, pki.ca_pem)
    [mid] = await queue(sqlite_db, "cs-a")
    metrics = GatewayMetrics()
    relay = Relay(sqlite_db, fast_config(max_attempts=3), metrics=metrics)
    with capture_logs() as logs:
        await _settle(relay, 12)
        await relay.stop()
    row = (await rows(sqlite_db))[mid]
    assert (row.status, row.attempts, row.last_error_code) == ("dead", 3, code)
    if mode != "redirect":
        assert len(stub.requests) == 3
    alerts = [e for e in logs if e["event"] == "outbox_dead_letter"]
    assert len(alerts) == 1
    assert alerts[0]["message_id"] == mid and alerts[0]["code"] == code
    assert JWE not in repr(logs)
    sample = metrics.registry.get_sample_value(
        "mappa_gateway_outbox_dead_letters_total", {"kind": "hazard_flag", "code": code}
    )
    assert sample == 1.0


async def test_partner_down_is_retried_then_dead_lettered(
    sqlite_db: Database, pki: PartnerPKI
) -> None:
    """Nothing listening: connect failures, then dead."""
    url = f"https://127.0.0.1:{free_port()}/mappa/deliveries"
    await partner(sqlite_db, "cs-a", url, pki.ca_pem)
    [mid] = await queue(sqlite_db, "cs-a")
    relay = Relay(sqlite_db, fast_config(max_attempts=2))
    await _settle(relay, 6)
    await relay.stop()
    row = (await rows(sqlite_db))[mid]
    assert (row.status, row.last_error_code) == ("dead", "connect_failed")


async def test_partner_back_up_after_being_down_receives_everything(
    sqlite_db: Database, pki: PartnerPKI
) -> None:
    """Messages queued while a partner is down all arrive once it listens again."""
    port = free_port()
    stub = PartnerStub(pki=pki)
    await partner(sqlite_db, "cs-a", f"https://127.0.0.1:{port}/mappa/deliveries", pki.ca_pem)
    ids = await queue(sqlite_db, "cs-a", 5)
    relay = Relay(sqlite_db, fast_config(max_attempts=50, interval=0.02))
    relay.start()
    await asyncio.sleep(0.3)
    await stub.start(port)
    try:

        async def all_delivered() -> bool:
            return all(r.status == "delivered" for r in (await rows(sqlite_db)).values())

        await until(all_delivered)
    finally:
        await relay.stop()
        await stub.stop()
    assert sorted(stub.accepted) == sorted(ids)


async def test_slow_partner_does_not_hold_up_the_others(
    sqlite_db: Database, pki: PartnerPKI
) -> None:
    """A partner that never answers ties up only its own slots; another is served meanwhile:
    every message to the fast partner is delivered while the slow partner's first pushes are
    still waiting for an answer (none has timed out: its timeout is far longer than the wait
    allowed), so no sweep waited for them. (Asserted by what happened first, not by a clock.)"""
    slow = await PartnerStub(pki=pki, default="hang").start()
    fast = await PartnerStub(pki=pki).start()
    try:
        await partner(sqlite_db, "slow-a", slow.url, pki.ca_pem)
        await partner(sqlite_db, "fast-a", fast.url, pki.ca_pem)
        slow_ids = await queue(sqlite_db, "slow-a", 10)
        fast_ids = await queue(sqlite_db, "fast-a", 10)
        config = fast_config(
            partner_concurrency=2,
            max_attempts=50,
            read_timeout=60.0,
            total_timeout=60.0,
            lease_seconds=120.0,
        )
        relay = Relay(sqlite_db, config)
        relay.start()

        async def fast_done() -> bool:
            return sorted(fast.accepted) == sorted(fast_ids)

        await until(fast_done, within=30)
        stored = await rows(sqlite_db)
        assert all(stored[mid].last_error_code is None for mid in slow_ids)  # none settled
        assert all(stored[mid].status in ("pending", "leased") for mid in slow_ids)
        assert 1 <= slow.max_in_flight <= 2
        await relay.stop(grace=0.1)
    finally:
        await slow.stop()
        await fast.stop()


async def test_max_in_flight_bounds_one_sweep_across_partners(
    sqlite_db: Database, pki: PartnerPKI
) -> None:
    """max_in_flight counts the rows a sweep has just leased to other partners: with room for
    two, four partners with two messages each start two deliveries, not eight (each partner
    was given the whole room), and nothing more starts while those two hang."""
    slow = await PartnerStub(pki=pki, default="hang").start()
    try:
        for agency_id in ("cs-a", "cs-b", "cs-c", "cs-d"):
            await partner(sqlite_db, agency_id, slow.url, pki.ca_pem)
            await queue(sqlite_db, agency_id, 2)
        relay = Relay(sqlite_db, fast_config(max_in_flight=2, partner_concurrency=2))
        assert await relay.sweep() == 2
        assert await relay.sweep() == 0
        leased = [r for r in (await rows(sqlite_db)).values() if r.status == "leased"]
        assert len(leased) == 2

        async def both_arrived() -> bool:
            return len(slow.requests) == 2

        await until(both_arrived, within=5)
        await asyncio.sleep(0.1)
        assert slow.max_in_flight == 2
        await relay.stop(grace=0.1)
    finally:
        await slow.stop()


async def test_circuit_opens_after_consecutive_failures_and_probes_after_cooldown(
    sqlite_db: Database, stub: PartnerStub, pki: PartnerPKI
) -> None:
    """While open, nothing is sent and no attempt is spent; one probe then closes it."""
    stub.default = "500"
    await partner(sqlite_db, "cs-a", stub.url, pki.ca_pem)
    await queue(sqlite_db, "cs-a", 4)
    relay = Relay(
        sqlite_db,
        fast_config(
            breaker_threshold=2, breaker_cooldown=0.5, max_attempts=50, partner_concurrency=1
        ),
    )
    await _settle(relay, 8)
    sent = len(stub.requests)
    assert sent == 2  # the circuit opened after two failures
    stub.default = "ok"
    await asyncio.sleep(0.55)
    await _settle(relay, 10)
    await relay.stop()
    assert all(r.status == "delivered" for r in (await rows(sqlite_db)).values())


async def test_an_answer_the_pusher_cannot_handle_is_a_partner_error_then_dead(
    sqlite_db: Database, stub: PartnerStub, pki: PartnerPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever raises while an answer is read is the partner's failure (``partner_error``),
    logged by its type alone: push raised it, and the row was never settled."""

    def choke(value: str | None) -> float | None:
        raise RuntimeError("secret detail from the partner")

    monkeypatch.setattr("gateway.delivery.push._retry_after", choke)
    stub.default = "503"
    await partner(sqlite_db, "cs-a", stub.url, pki.ca_pem)
    [mid] = await queue(sqlite_db, "cs-a")
    relay = Relay(sqlite_db, fast_config(max_attempts=2))
    with capture_logs() as logs:
        await _settle(relay, 6)
        await relay.stop()
    row = (await rows(sqlite_db))[mid]
    assert (row.status, row.attempts, row.last_error_code) == ("dead", 2, "partner_error")
    errors = [e for e in logs if e["event"] == "relay_push_unexpected_error"]
    assert [e["error"] for e in errors] == ["RuntimeError", "RuntimeError"]
    assert "secret detail" not in repr(logs)


async def test_a_probe_that_crashes_is_settled_and_the_circuit_probes_again(
    sqlite_db: Database, stub: PartnerStub, pki: PartnerPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A half-open circuit's one probe raising out of the pusher is a failure like any other:
    the row is settled with a code and retried, and the breaker lets the next probe through
    (the probe flag stayed set and the relay never sent to the partner again)."""
    stub.default = "500"
    await partner(sqlite_db, "cs-a", stub.url, pki.ca_pem)
    [mid] = await queue(sqlite_db, "cs-a")
    relay = Relay(
        sqlite_db,
        fast_config(
            breaker_threshold=1, breaker_cooldown=0.2, max_attempts=50, partner_concurrency=1
        ),
    )
    await _settle(relay, 1)  # one failure opens the circuit
    assert len(stub.requests) == 1

    async def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug, not the partner")

    monkeypatch.setattr(relay.pusher, "push", crash)
    await asyncio.sleep(0.25)
    with capture_logs() as logs:
        await _settle(relay, 1)  # the probe
    assert [e["error"] for e in logs if e["event"] == "relay_push_crashed"] == ["RuntimeError"]
    row = (await rows(sqlite_db))[mid]
    assert (row.status, row.last_error_code, row.lease_owner) == ("pending", "relay_error", None)
    monkeypatch.undo()
    stub.default = "ok"
    await asyncio.sleep(0.25)
    await _settle(relay, 3)  # the next probe goes out, and closes the circuit
    await relay.stop()
    assert list(stub.accepted) == [mid]
    assert (await rows(sqlite_db))[mid].status == "delivered"


async def test_messages_about_one_nominal_reach_the_partner_in_order_despite_a_retry(
    sqlite_db: Database, stub: PartnerStub, pki: PartnerPKI
) -> None:
    """The older message fails: the newer one about the same nominal waits for its retries (it
    went out concurrently and could arrive first); a message about another nominal does not."""
    await partner(sqlite_db, "police-a", stub.url, pki.ca_pem)
    for nominal in ("n-1", "n-2"):
        await known_nominal(sqlite_db, nominal, "police-a")  # police-a leads: it may know
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    async with sqlite_db.write() as session:
        ids = [
            await enqueue(
                session,
                recipient_agency_id="police-a",
                kind="level_change",
                body=JWE,
                nominal_ref=nominal,
                now=t0 + dt.timedelta(seconds=i),
            )
            for i, nominal in enumerate(["n-1", "n-1", "n-2"])
        ]
    first, second, other = ids
    stub.script.extend(["500", "500", "500"])  # the first three requests fail, whichever
    relay = Relay(sqlite_db, fast_config(partner_concurrency=4))
    await _settle(relay, 10)
    await relay.stop()
    assert sorted(stub.accepted) == sorted(ids)
    sent = [r.idempotency_key for r in stub.requests]
    first_ok = next(i for i, r in enumerate(stub.requests) if r is stub.accepted[first])
    assert sent.index(second) > first_ok  # not even tried before the older one was taken
    assert sent.index(other) < first_ok  # another nominal is not held back


async def test_recipient_without_a_current_key_waits_and_nothing_is_sent(
    sqlite_db: Database, stub: PartnerStub, pki: PartnerPKI
) -> None:
    """An expired encryption key holds the partner's deliveries back (never sent anyway)."""
    await partner(sqlite_db, "cs-a", stub.url, pki.ca_pem)
    async with sqlite_db.write() as session:
        await session.execute(
            update(AgencyKey)
            .where(AgencyKey.agency_id == "cs-a", AgencyKey.use == "enc")
            .values(not_after=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        )
    [mid] = await queue(sqlite_db, "cs-a")
    relay = Relay(sqlite_db, fast_config())
    with capture_logs() as logs:
        await _settle(relay, 3)
    await relay.stop()
    assert stub.requests == []
    row = (await rows(sqlite_db))[mid]
    assert (row.status, row.attempts) == ("pending", 0)
    assert [e["agency_id"] for e in logs if e["event"] == "relay_recipient_key_unavailable"] == [
        "cs-a"
    ]


async def test_agency_without_endpoint_is_left_to_pull(
    sqlite_db: Database, stub: PartnerStub
) -> None:
    """No endpoint registered: the relay leaves the message for /v1/inbox."""
    await partner(sqlite_db, "cs-a", None)
    [mid] = await queue(sqlite_db, "cs-a")
    relay = Relay(sqlite_db, fast_config())
    await _settle(relay, 2)
    await relay.stop()
    assert (await rows(sqlite_db))[mid].status == "pending"


async def test_expired_lease_is_delivered_again_by_another_relay_with_the_same_key(
    sqlite_db: Database, stub: PartnerStub, pki: PartnerPKI
) -> None:
    """A relay that died holding a lease: after the lease, another relay delivers, same key."""
    from gateway.delivery.lease import claim

    await partner(sqlite_db, "cs-a", stub.url, pki.ca_pem)
    [mid] = await queue(sqlite_db, "cs-a")
    now = dt.datetime.now(dt.UTC)
    async with sqlite_db.write() as session:
        dead = await claim(
            session, owner="relay-dead", now=now, lease=dt.timedelta(seconds=0.2), slots=lambda _: 5
        )
    assert [r.id for r in dead.rows] == [mid]
    relay = Relay(sqlite_db, fast_config())
    await _settle(relay, 1)
    assert stub.requests == []  # still leased to the dead relay
    await asyncio.sleep(0.25)
    await _settle(relay, 2)
    await relay.stop()
    assert [r.idempotency_key for r in stub.requests] == [mid]
    row = (await rows(sqlite_db))[mid]
    assert (row.status, row.attempts) == ("delivered", 2)


async def test_relay_in_the_app_lifespan_starts_and_stops_cleanly(
    sqlite_url: str,
    gateway_keys: tuple[Path, Path],
    stub: PartnerStub,
    pki: PartnerPKI,
    tmp_path: Path,
) -> None:
    """``serve`` runs a relay as a background task and stops it with the app (in the
    development profile: the stub partner listens on the loopback)."""
    from gateway.app import create_app
    from gateway.settings import Settings

    keys_dir, kek_file = development_keys(gateway_keys, tmp_path)
    settings = Settings(
        profile="development",
        database_url=sqlite_url,
        issuer="https://gateway.test",
        keys_dir=keys_dir,
        kek_file=kek_file,
        relay_interval_seconds=0.05,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state = app.state.gateway
        assert state.relay is not None
        await partner(state.db, "cs-a", stub.url, pki.ca_pem)
        [mid] = await queue(state.db, "cs-a")

        async def delivered() -> bool:
            return (await rows(state.db))[mid].status == "delivered"

        await until(delivered)
        relay = state.relay
    assert relay._task is None


async def test_a_loopback_endpoint_is_pushed_to_in_the_development_profile_only(
    sqlite_db: Database, stub: PartnerStub, pki: PartnerPKI
) -> None:
    """The relay judges a stored endpoint at each push as its registration did: outside the
    development profile the loopback is refused (endpoint_invalid) and nothing is sent."""
    await partner(sqlite_db, "cs-a", stub.url, pki.ca_pem)
    [mid] = await queue(sqlite_db, "cs-a")
    relay = Relay(sqlite_db, fast_config(development=False, max_attempts=1))
    await _settle(relay, 2)
    await relay.stop()
    assert stub.requests == []
    row = (await rows(sqlite_db))[mid]
    assert (row.status, row.last_error_code) == ("dead", "endpoint_invalid")


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",  # the cloud metadata service
        "https://[fe80::1]/mappa/deliveries",
        "https://2852039166/mappa/deliveries",  # 169.254.169.254 as one number
        "https://user:pw@partner.example/mappa/deliveries",
        "http://partner.example/mappa/deliveries",
    ],
)
async def test_an_endpoint_stored_before_the_url_check_is_never_connected_to(url: str) -> None:
    """A row written before the registration check was tightened (or edited in the database)
    is refused at the push, before any connection is tried."""
    from gateway.delivery.push import Endpoint, Pusher

    pusher = Pusher(fast_config(unsafe_plain_http=True).push)
    result = await pusher.push(
        Endpoint("cs-a", url, "-----BEGIN CERTIFICATE-----"), message_id="m", kind="k", body="b"
    )
    await pusher.aclose()
    assert (result.ok, result.code) == (False, "endpoint_invalid")
    assert pusher._clients == {}  # no client was built, so no connection was tried
