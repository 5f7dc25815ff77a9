"""Console sign-in under concurrency, on SQLite and PostgreSQL: the per-officer lock is checked
and counted in one step (an attempt is reserved before its password is checked), so however
many attempts arrive at once at most the limit are checked; the password is checked on a worker
thread, never on the event loop, a few at a time, and a process refuses sign-ins beyond those
it runs at once instead of queueing them."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from gateway.console import accounts
from gateway.console.throttle import LoginThrottle, officer_key, settle
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store import Database
from gateway.store.models import AuditEntry, ConsoleLoginAttempt, ConsoleSession
from tests.gateway.console.conftest import BASE, OFFICER, PASSWORD, csrf_in


@pytest.fixture
def console_settings(database_url: str, console_keys: tuple[Path, Path]) -> Settings:
    return Settings(
        profile="test",
        database_url=database_url,
        issuer=BASE,
        keys_dir=console_keys[0],
        kek_file=console_keys[1],
        audit_sequence_interval_seconds=0,
    )


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class HeldHasher:
    """The real argon2 hasher, watched: it counts verifications, notes any made on the event
    loop's thread, and holds those made on a worker thread until :attr:`release` is set."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.release = threading.Event()
        self.calls = 0
        self.on_loop = 0
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        return str(self.real.hash(password))

    def verify(self, stored: str, password: str) -> bool:
        on_loop = _on_event_loop()
        with self._lock:
            self.calls += 1
            self.on_loop += on_loop
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            if not on_loop:  # never hold the event loop itself: the test would stall
                self.release.wait(20)
            return bool(self.real.verify(stored, password))
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> HeldHasher:
    held = HeldHasher(accounts._hasher)
    monkeypatch.setattr(accounts, "_hasher", held)
    return held


async def _attempt(app: FastAPI, address: str, officer_id: str, password: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        page = await client.get("/console/login")
        return await client.post(
            "/console/login",
            data={"officer_id": officer_id, "password": password, "csrf_token": csrf_in(page.text)},
        )


async def _until(condition: Any) -> None:
    for _ in range(3000):  # 30 s
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def _console_entries(state: GatewayState, officer_id: str) -> list[AuditEntry]:
    async with state.db.read() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.operation == "console", AuditEntry.officer_id == officer_id)
            .order_by(AuditEntry.id)
        )
        return list(rows)


async def _count(state: GatewayState, model: Any) -> int:
    async with state.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_concurrent_guesses_check_at_most_the_limit_and_the_right_password_then_fails(
    console_app: FastAPI, state: GatewayState, hasher: HeldHasher
) -> None:
    """39 wrong passwords at once from 39 addresses: five are checked (while they are, the
    other 34 are refused as locked without a check), then the right password is refused too;
    five bad-credential entries, 35 throttled, no sign-in, no session, no reservation left."""
    limit = state.settings.console_login_max_failures
    console_app.state.console_login_throttle = LoginThrottle(state.settings, max_in_flight=100)
    guesses = [
        asyncio.create_task(_attempt(console_app, f"10.9.0.{i + 1}", OFFICER, f"wrong-{i:02d}-pw"))
        for i in range(39)
    ]
    await _until(lambda: sum(task.done() for task in guesses) >= 39 - limit)  # the locked ones
    right = await _attempt(console_app, "10.9.1.1", OFFICER, PASSWORD)  # beyond the limit
    hasher.release.set()
    answers = await asyncio.gather(*guesses)

    assert right.status_code == 401
    assert "__Host-mappa-console=" not in right.headers.get("set-cookie", "")
    assert {answer.status_code for answer in answers} == {401}
    assert hasher.on_loop == 0  # every check on a worker thread
    assert hasher.calls == limit  # the right password was never even checked
    entries = await _console_entries(state, OFFICER)
    reasons = [entry.reason_code for entry in entries]
    assert reasons.count("bad_credentials") == limit
    assert reasons.count("login_throttled") == 40 - limit
    assert {e.detail.get("limit") for e in entries if e.reason_code == "login_throttled"} == {
        "account"
    }
    assert not [entry for entry in entries if entry.detail.get("action") == "login"]
    assert await _count(state, ConsoleSession) == 0
    assert await _count(state, ConsoleLoginAttempt) == 0  # each failure counts by its entry


async def test_a_right_password_among_the_first_attempts_signs_in_and_frees_its_place(
    console_app: FastAPI, state: GatewayState, hasher: HeldHasher
) -> None:
    """Four wrong and the right one at once: all five are checked and the officer signs in;
    the success counts nothing, so one more guess is still checked before the lock."""
    hasher.release.set()
    answers = await asyncio.gather(
        *[_attempt(console_app, f"10.8.0.{i}", OFFICER, f"wrong-{i}-password") for i in range(4)],
        _attempt(console_app, "10.8.0.9", OFFICER, PASSWORD),
    )
    assert [a.status_code for a in answers] == [401, 401, 401, 401, 303]
    assert await _count(state, ConsoleLoginAttempt) == 0
    assert (await _attempt(console_app, "10.8.1.1", OFFICER, "fifth-wrong-pw")).status_code == 401
    assert (await _attempt(console_app, "10.8.1.2", OFFICER, PASSWORD)).status_code == 401
    assert hasher.calls == 6 and hasher.on_loop == 0


async def test_a_process_checks_a_few_passwords_at_once_and_refuses_beyond_its_places(
    console_app: FastAPI, state: GatewayState, hasher: HeldHasher
) -> None:
    """With one hashing thread and two places: two sign-ins (other ids) hold the places, one
    check at a time; a third is refused at once as busy, unchecked and not counted against the
    officer, who signs in once the places are free."""
    throttle = LoginThrottle(state.settings, hash_threads=1, max_in_flight=2)
    console_app.state.console_login_throttle = throttle
    held = [
        asyncio.create_task(_attempt(console_app, f"10.7.0.{i}", f"someone.{i}", "a-password-x"))
        for i in range(2)
    ]
    await _until(lambda: throttle.in_flight == 2 and hasher.calls == 1)  # both places held
    busy = await _attempt(console_app, "10.7.1.1", OFFICER, PASSWORD)
    assert busy.status_code == 401
    assert hasher.calls == 1  # not checked
    hasher.release.set()
    assert [a.status_code for a in await asyncio.gather(*held)] == [401, 401]
    assert hasher.most_at_once == 1 and hasher.on_loop == 0
    (refused,) = await _console_entries(state, OFFICER)
    assert refused.reason_code == "login_throttled" and refused.detail["limit"] == "busy"
    assert throttle.in_flight == 0
    assert (await _attempt(console_app, "10.7.1.1", OFFICER, PASSWORD)).status_code == 303


async def test_reservations_take_turns_across_processes(
    db: Database, database_url: str, console_settings: Settings
) -> None:
    """Two gateways (two engines, as two replicas) reserving for one id at once: exactly the
    limit succeed. A settled reservation with its failure's entry still counts; a settled one
    without (a success) frees its place; reservations older than the window count nothing."""
    settings = console_settings
    throttle = LoginThrottle(settings)
    other = Database(database_url)
    now = dt.datetime.now(dt.UTC)
    try:
        tries: list[Awaitable[Any]] = [
            throttle.reserve(db if i % 2 else other, "ig.race", now) for i in range(30)
        ]
        reserved = [a for a in await asyncio.gather(*tries) if a is not None]
        assert len(reserved) == settings.console_login_max_failures
        assert await throttle.reserve(db, "ig.other", now) is not None  # another id is free

        failed, succeeded = reserved[0], reserved[1]
        async with db.write() as session:
            await settle(session, failed)
            record(
                session,
                AuditEvent(
                    operation=Operation.CONSOLE,
                    outcome=Outcome.REFUSED,
                    officer_id="ig.race",
                    reason_code="bad_credentials",
                    detail={"action": "login_failed"},
                ),
            )
        assert await throttle.reserve(db, "ig.race", now) is None
        async with db.write() as session:
            await settle(session, succeeded)
        assert await throttle.reserve(other, "ig.race", now) is not None
        assert await throttle.reserve(db, "ig.race", now) is None

        later = now + throttle.window + dt.timedelta(seconds=1)
        assert await throttle.reserve(db, "ig.race", later) is not None
        async with db.read() as session:
            keys = await session.scalars(select(ConsoleLoginAttempt.officer_key))
            assert sorted(keys) == sorted([officer_key("ig.race"), officer_key("ig.other")])
        await throttle._purge(db, later)  # the other id's old reservation too
        async with db.read() as session:
            left = list(await session.scalars(select(ConsoleLoginAttempt.officer_key)))
            assert left == [officer_key("ig.race")]
    finally:
        await other.dispose()
