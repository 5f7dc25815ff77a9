"""Console sign-in throttling: per officer id (from the audit log) and per client address; a
lockout answers exactly as a wrong password does, for real and unknown ids alike, and is audited."""

from __future__ import annotations

import datetime as dt
import re

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from gateway.console.throttle import LoginThrottle, recent_failures
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.state import GatewayState
from gateway.store import Database
from gateway.store.models import AuditEntry
from tests.gateway.console.conftest import BASE, OFFICER, PASSWORD, csrf_in

_TOKEN = re.compile(r'name="csrf_token" value="[^"]+"')


async def _attempt(client: httpx.AsyncClient, officer_id: str, password: str) -> httpx.Response:
    page = await client.get("/console/login")
    return await client.post(
        "/console/login",
        data={"officer_id": officer_id, "password": password, "csrf_token": csrf_in(page.text)},
    )


def _page(response: httpx.Response) -> str:
    """The answer without its per-request CSRF token, to compare answers byte for byte."""
    return _TOKEN.sub("", response.text)


async def _refusals(state: GatewayState, officer_id: str) -> list[AuditEntry]:
    async with state.db.read() as session:
        rows = await session.execute(
            select(AuditEntry)
            .where(AuditEntry.operation == "console", AuditEntry.officer_id == officer_id)
            .order_by(AuditEntry.id)
        )
        return list(rows.scalars())


def _client(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url=BASE)


@pytest.mark.parametrize("officer_id", [OFFICER, "no.such.officer"])
async def test_five_failures_lock_the_id_and_the_lockout_looks_like_a_wrong_password(
    console_app: FastAPI, state: GatewayState, officer_id: str
) -> None:
    """After five wrong passwords even the right one is refused with the very page a wrong
    password gets, for a real id and an unknown one alike; the lockout is audited."""
    async with _client(console_app, "10.0.0.1") as guesser:
        wrong = [await _attempt(guesser, officer_id, f"guess-{i}-wrong-pw") for i in range(5)]
    async with _client(console_app, "10.0.0.2") as other:  # the lock is per id, not address
        locked = await _attempt(other, officer_id, PASSWORD)
        assert (await other.get("/console/entries")).status_code == 303
    assert {r.status_code for r in [*wrong, locked]} == {401}
    assert _page(locked) == _page(wrong[0])
    assert "__Host-mappa-console=" not in locked.headers.get("set-cookie", "")
    entries = await _refusals(state, officer_id)
    assert [e.reason_code for e in entries] == ["bad_credentials"] * 5 + ["login_throttled"]
    assert entries[-1].detail["limit"] == "account" and entries[-1].outcome == "refused"


async def test_the_lock_ends_when_the_failures_leave_the_window(
    console_app: FastAPI, state: GatewayState
) -> None:
    """Once the window has passed the officer signs in again with the right password."""
    async with _client(console_app, "10.0.0.3") as client:
        for i in range(5):
            await _attempt(client, OFFICER, f"guess-{i}-wrong-pw")
        assert (await _attempt(client, OFFICER, PASSWORD)).status_code == 401
        later = dt.datetime.now(dt.UTC) + dt.timedelta(
            seconds=state.settings.console_login_window_seconds + 1
        )
        state.clock = lambda: later
        assert (await _attempt(client, OFFICER, PASSWORD)).status_code == 303


async def test_one_address_over_its_quota_is_refused_alike_and_others_are_not(
    console_app: FastAPI, state: GatewayState
) -> None:
    """An address spraying many ids runs out of attempts (same 401 page, audited with the
    address limit, the password never checked); another address still signs in."""
    settings = state.settings.model_copy(
        update={"console_login_address_burst": 3, "console_login_per_address_per_minute": 0.01}
    )
    console_app.state.console_login_throttle = LoginThrottle(settings)
    async with _client(console_app, "10.0.0.4") as sprayer:
        answers = [await _attempt(sprayer, f"user{i}", "spray-password-1") for i in range(3)]
        refused = await _attempt(sprayer, OFFICER, PASSWORD)  # right password, no quota left
    assert refused.status_code == 401 and _page(refused) == _page(answers[0])
    (entry,) = await _refusals(state, OFFICER)
    assert entry.reason_code == "login_throttled" and entry.detail["limit"] == "address"
    async with _client(console_app, "10.0.0.5") as officer:
        assert (await _attempt(officer, OFFICER, PASSWORD)).status_code == 303


async def test_password_sign_in_can_be_turned_off(
    console_app: FastAPI, state: GatewayState
) -> None:
    """With console_password_login off, the right password is refused and the try audited."""
    state.settings = state.settings.model_copy(update={"console_password_login": False})
    async with _client(console_app, "10.0.0.6") as client:
        page = await client.get("/console/login")
        assert 'name="password"' not in page.text  # no password form is offered
        token = client.cookies.get("__Host-mappa-console-login")
        response = await client.post(
            "/console/login",
            data={"officer_id": OFFICER, "password": PASSWORD, "csrf_token": str(token)},
        )
        assert response.status_code == 401
    (entry,) = await _refusals(state, OFFICER)
    assert entry.reason_code == "password_login_disabled"


async def test_failures_are_counted_per_id_within_the_window(db: Database) -> None:
    """The count reads the audit log on either backend: only this id's bad-credential
    refusals since the given time, not its throttled tries, not other ids', not older ones."""
    now = dt.datetime.now(dt.UTC)

    def event(officer: str, reason: str, age_seconds: int) -> AuditEvent:
        return AuditEvent(
            operation=Operation.CONSOLE,
            outcome=Outcome.REFUSED,
            officer_id=officer,
            reason_code=reason,
            occurred_at=now - dt.timedelta(seconds=age_seconds),
            detail={"action": "login_failed"},
        )

    async with db.write() as session:
        for age in (10, 20, 30):
            record(session, event("ig.a", "bad_credentials", age))
        record(session, event("ig.a", "bad_credentials", 5000))  # outside the window
        record(session, event("ig.a", "login_throttled", 5))  # a throttled try
        record(session, event("ig.b", "bad_credentials", 10))  # someone else
    async with db.read() as session:
        assert await recent_failures(session, "ig.a", now - dt.timedelta(seconds=900)) == 3
        assert await recent_failures(session, "ig.b", now - dt.timedelta(seconds=900)) == 1
        assert await recent_failures(session, "ig.c", now - dt.timedelta(seconds=900)) == 0


PROXY = "10.0.0.5"


def _behind_proxy(console_app: FastAPI, state: GatewayState) -> None:
    """The gateway behind a trusted proxy (MAPPA_TRUSTED_PROXIES), three attempts an address."""
    state.settings = state.settings.model_copy(update={"trusted_proxies": (PROXY,)})
    settings = state.settings.model_copy(
        update={"console_login_address_burst": 3, "console_login_per_address_per_minute": 0.01}
    )
    console_app.state.console_login_throttle = LoginThrottle(settings)


def _forwarded(app: FastAPI, peer: str, forwarded_for: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(
        transport=transport, base_url=BASE, headers={"X-Forwarded-For": forwarded_for}
    )


async def test_behind_a_trusted_proxy_each_forwarded_address_has_its_own_bucket(
    console_app: FastAPI, state: GatewayState
) -> None:
    """Every request comes from the proxy: an outsider's address (whatever it puts before it
    in X-Forwarded-For) runs out of attempts, and the officer from another address, through
    the same proxy, still signs in."""
    _behind_proxy(console_app, state)
    for i in range(3):
        async with _forwarded(console_app, PROXY, f"192.0.2.{i}, 203.0.113.66") as outsider:
            assert (await _attempt(outsider, f"nobody-{i}", "wrong-password-x")).status_code == 401
    async with _forwarded(console_app, PROXY, "192.0.2.99, 203.0.113.66") as outsider:
        assert (await _attempt(outsider, OFFICER, PASSWORD)).status_code == 401  # its bucket
    (entry,) = await _refusals(state, OFFICER)
    assert entry.reason_code == "login_throttled" and entry.detail["limit"] == "address"
    async with _forwarded(console_app, PROXY, "198.51.100.7") as officer:
        assert (await _attempt(officer, OFFICER, PASSWORD)).status_code == 303


async def test_a_forged_forwarded_for_from_an_untrusted_peer_does_not_change_its_bucket(
    console_app: FastAPI, state: GatewayState
) -> None:
    """A client that is not a trusted proxy cannot pick its bucket with X-Forwarded-For: a new
    forged address on every try still draws on its own peer's bucket."""
    _behind_proxy(console_app, state)
    for i in range(3):
        async with _forwarded(console_app, "192.0.2.10", f"198.51.100.{i}") as forger:
            assert (await _attempt(forger, f"nobody-{i}", "wrong-password-x")).status_code == 401
    async with _forwarded(console_app, "192.0.2.10", "198.51.100.7") as forger:
        assert (await _attempt(forger, OFFICER, PASSWORD)).status_code == 401
    (entry,) = await _refusals(state, OFFICER)
    assert entry.reason_code == "login_throttled" and entry.detail["limit"] == "address"
    async with _forwarded(console_app, "192.0.2.11", "192.0.2.10") as officer:  # its own peer
        assert (await _attempt(officer, OFFICER, PASSWORD)).status_code == 303
