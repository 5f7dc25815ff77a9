"""The jti replay store is durable and shared: after a restart, and across two processes."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from joserfc.jwk import ECKey
from sqlalchemy import select
from structlog.testing import capture_logs

from gateway.app import create_app
from gateway.oauth import replay
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store import Database
from gateway.store.models import UsedJti
from tests.gateway.oauth.conftest import register
from tests.gateway.oauth.support import (
    ISSUER,
    AgencyClient,
    Clock,
    Ledger,
    Replica,
    replica_env,
    running_app,
)


async def _token_status(
    settings: Settings, clock: Clock, agency: AgencyClient, assertion: str
) -> int:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: GatewayState = app.state.gateway
        state.clock = clock
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            response = await agency.token_response(http, assertion=assertion)
            return response.status_code


async def test_replayed_assertion_is_refused_after_a_restart(
    oauth_settings: Settings, clock: Clock
) -> None:
    """A jti spent before a restart is still spent after it."""
    db = Database(oauth_settings.database_url)
    try:
        police = await register(
            db,
            AgencyClient("police-avon", ECKey.generate_key("P-256"), clock),
            agency_type="police",
            role="responsible_authority",
            scopes=["case:read"],
        )
        assertion = police.assertion()
        assert await _token_status(oauth_settings, clock, police, assertion) == 200
        assert await _token_status(oauth_settings, clock, police, assertion) == 401
        ledger = Ledger(db)
        assert await ledger.issued() == 1
        assert (await ledger.refusals())[-1].reason_code == "client_assertion_jti_replayed"
    finally:
        await db.dispose()


@pytest.fixture
def replicas(
    postgres_url: str, gateway_keys: tuple[Path, Path], tmp_path: Path
) -> Iterator[tuple[Replica, Replica]]:
    """Two gateway processes sharing one fresh PostgreSQL schema and one signing key."""
    env = replica_env(postgres_url, *gateway_keys)
    started = [Replica(env, tmp_path / f"replica-{n}.log") for n in (1, 2)]
    try:
        for replica in started:
            replica.wait_ready()
        yield started[0], started[1]
    finally:
        for replica in started:
            replica.stop()


@pytest.mark.postgres
@pytest.mark.slow
async def test_assertion_replayed_on_another_replica_is_refused(
    replicas: tuple[Replica, Replica], postgres_url: str
) -> None:
    """Two processes, one PostgreSQL: a jti spent on one is refused on the other, and of two
    simultaneous uses exactly one wins."""
    first, second = replicas
    clock = Clock(dt.datetime.now(dt.UTC))
    db = Database(postgres_url)
    try:
        police = await register(
            db,
            AgencyClient("police-avon", ECKey.generate_key("P-256"), clock),
            agency_type="police",
            role="responsible_authority",
            scopes=["case:read"],
        )
        async with (
            httpx.AsyncClient(base_url=first.url) as a,
            httpx.AsyncClient(base_url=second.url) as b,
        ):
            assertion = police.assertion()
            assert (await police.token_response(a, assertion=assertion)).status_code == 200
            replayed = await police.token_response(b, assertion=assertion)
            assert replayed.status_code == 401
            assert replayed.json()["code"] == "invalid_client"

            for _ in range(5):
                racing = police.assertion()
                results = await asyncio.gather(
                    police.token_response(a, assertion=racing),
                    police.token_response(b, assertion=racing),
                )
                assert sorted(r.status_code for r in results) == [200, 401]
        ledger = Ledger(db)
        assert await ledger.issued() == 6
        replays = [
            r for r in await ledger.refusals() if r.reason_code == "client_assertion_jti_replayed"
        ]
        assert len(replays) == 6
    finally:
        await db.dispose()


async def test_purge_forgets_only_expired_jtis(oauth_settings: Settings, clock: Clock) -> None:
    """Rows past expires_at go; a live jti stays spent."""
    db = Database(oauth_settings.database_url)
    try:
        async with db.write() as session:
            for n, ttl in enumerate((-10, 3600)):
                await replay.consume(
                    session,
                    kind="dpop",
                    issuer="jkt",
                    jti=f"j{n}",
                    agency_id=None,
                    expires_at=clock.now + dt.timedelta(seconds=ttl),
                    now=clock.now,
                )
        async with db.write() as session:
            assert await replay.purge_expired(session, now=clock.now) == 1
        with pytest.raises(replay.Replayed):
            async with db.write() as session:
                await replay.consume(
                    session,
                    kind="dpop",
                    issuer="jkt",
                    jti="j1",
                    agency_id=None,
                    expires_at=clock.now,
                    now=clock.now,
                )
        assert await Ledger(db).jtis() == 1
    finally:
        await db.dispose()


@pytest.mark.parametrize("ahead", ["two seconds", "the tolerated skew"])
async def test_a_spent_assertion_outlives_a_purge_by_a_replica_whose_clock_is_ahead(
    gateway_state: GatewayState,
    police: AgencyClient,
    clock: Clock,
    http: httpx.AsyncClient,
    ledger: Ledger,
    ahead: str,
) -> None:
    """Replica B accepts an assertion until ``exp + leeway`` by its own clock; replica A, whose
    clock is ahead of B's by up to ``max_future_skew_seconds``, purges spent jtis by its own.
    The assertion's row must outlive A's purge for as long as B could still accept it."""
    settings = gateway_state.settings
    skew = 2 if ahead == "two seconds" else settings.max_future_skew_seconds
    exp = clock.ts + 60
    assertion = police.assertion(exp=exp)
    assert (await police.token_response(http, assertion=assertion)).status_code == 200
    last_accepted = exp + settings.clock_leeway_seconds - 1  # B's last second of acceptance
    async with gateway_state.db.write() as session:  # A, ``skew`` seconds ahead of B
        await replay.purge_expired(
            session, now=dt.datetime.fromtimestamp(last_accepted + skew, dt.UTC)
        )
    clock.now = dt.datetime.fromtimestamp(last_accepted, dt.UTC)  # B
    replayed = await police.token_response(http, assertion=assertion)
    assert replayed.status_code == 401
    assert (await ledger.refusals())[-1].reason_code == "client_assertion_jti_replayed"
    assert await ledger.issued() == 1


async def _spent(db: Database, prefix: str, count: int, expires_at: dt.datetime) -> set[str]:
    """``count`` spent DPoP jtis expiring at ``expires_at``; their replay keys."""
    async with db.write() as session:
        for n in range(count):
            await replay.consume(
                session,
                kind="dpop",
                issuer="jkt",
                jti=f"{prefix}-{n}",
                agency_id=None,
                expires_at=expires_at,
                now=expires_at - dt.timedelta(minutes=2),
            )
    return {replay.replay_key("dpop", "jkt", f"{prefix}-{n}") for n in range(count)}


async def _kept(db: Database) -> set[str]:
    async with db.read() as session:
        return set(await session.scalars(select(UsedJti.key)))


async def test_a_purge_deletes_a_bounded_batch_and_never_an_unexpired_jti(db: Database) -> None:
    """One purge transaction deletes at most its batch, oldest first; rows still to expire (one
    expiring this very instant among them) are never deleted, however many batches run."""
    now = dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)
    await _spent(db, "old", 25, now - dt.timedelta(seconds=1))
    unexpired = await _spent(db, "now", 1, now)
    unexpired |= await _spent(db, "later", 2, now + dt.timedelta(seconds=1))
    async with db.write() as session:
        assert await replay.purge_expired(session, now=now, limit=10) == 10
    assert len(await _kept(db)) == 18
    assert await replay.purge_all_expired(db, now=now, batch=10) == 15
    assert await _kept(db) == unexpired


async def test_the_purge_task_forgets_expired_jtis_without_a_token_request(
    database_url: str,
    oauth_settings: Settings,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The running gateway purges spent jtis past their expiry on a timer of its own: no token
    is requested, nothing unexpired goes, and the task stops with the app."""
    monkeypatch.setattr(replay, "PURGE_INTERVAL", 0.05, raising=False)
    settings = oauth_settings.model_copy(update={"database_url": database_url})
    async with running_app(settings, clock) as application:
        state: GatewayState = application.state.gateway
        await _spent(state.db, "spent", 30, clock.now + dt.timedelta(seconds=10))
        live = await _spent(state.db, "live", 3, clock.now + dt.timedelta(hours=1))
        clock.advance(60)
        for _ in range(500):
            if len(await _kept(state.db)) == len(live):
                break
            await asyncio.sleep(0.02)
        assert await _kept(state.db) == live
        assert await Ledger(state.db).issued() == 0
        purger = getattr(state, "jti_purger", None)
        task = purger._task if purger is not None else None
    assert task is not None and task.done() and not task.cancelled()
    assert state.jti_purger is None


async def test_the_purge_task_outlives_any_failure_and_stops_cleanly(db: Database) -> None:
    """A purge that fails with anything (the pool's wait for a connection, a bug), not only a
    database error, is logged by the error's name alone and tried again at the next turn; the
    task then purges, and stopping it never raises."""
    now = dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)
    await _spent(db, "old", 5, now - dt.timedelta(seconds=1))
    failures = [sqlalchemy.exc.TimeoutError("QueuePool limit reached"), RuntimeError("a bug")]
    real = replay.purge_all_expired

    async def flaky(*args: Any, **kwargs: Any) -> int:
        if failures:
            raise failures.pop(0)
        return await real(*args, **kwargs)

    purger = replay.JtiPurger(db, clock=lambda: now, interval=0.01)
    with pytest.MonkeyPatch.context() as patch, capture_logs() as logs:
        patch.setattr(replay, "purge_all_expired", flaky)
        purger.start()
        for _ in range(500):
            if not await _kept(db):
                break
            await asyncio.sleep(0.01)
        assert purger._task is not None and not purger._task.done()
        await purger.stop()
    assert await _kept(db) == set()
    failed = [entry for entry in logs if entry["event"] == "used_jtis_purge_failed"]
    assert [entry["error"] for entry in failed] == ["TimeoutError", "RuntimeError"]
    assert "QueuePool" not in repr(logs) and "a bug" not in repr(logs)
