"""Fixtures for the IG console: a running gateway, an IG officer, a signed-in client, a log."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.audit.sequencer import sequence
from gateway.console.accounts import add_officer
from gateway.console.scope import NATIONAL
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store import Database
from keys import generate_kek_file, generate_keys

BASE = "https://gateway.test"
OFFICER = "ig.officer"
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="session")
def console_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Gateway keys of every purpose (the checkpoint key among them) and their KEK file."""
    base = tmp_path_factory.mktemp("console-keys")
    kek = generate_kek_file(base / "kek.bin")
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    generate_keys(base / "keys", kek, now=created)
    return base / "keys", base / "kek.bin"


def settings_on(database_url: str, console_keys: tuple[Path, Path]) -> Settings:
    """The console's settings on ``database_url`` (a test module's own ``console_settings`` may
    take ``database_url`` to run on both backends)."""
    return Settings(
        profile="test",
        database_url=database_url,
        issuer=BASE,
        keys_dir=console_keys[0],
        kek_file=console_keys[1],
        audit_sequence_interval_seconds=0,
    )


@pytest.fixture
def console_settings(sqlite_url: str, console_keys: tuple[Path, Path]) -> Settings:
    return settings_on(sqlite_url, console_keys)


@pytest.fixture
async def console_app(console_settings: Settings) -> AsyncIterator[FastAPI]:
    """The gateway with one national IG officer (created before start-up, as an operator
    would)."""
    db = Database(console_settings.database_url)
    try:
        async with db.write() as session:
            await add_officer(session, OFFICER, "Ida Governance", PASSWORD, scope=NATIONAL)
    finally:
        await db.dispose()
    app = create_app(console_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def state(console_app: FastAPI) -> GatewayState:
    gateway: GatewayState = console_app.state.gateway
    return gateway


@pytest.fixture
async def browser(console_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An anonymous client that keeps cookies, as a browser would."""
    transport = httpx.ASGITransport(app=console_app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


def csrf_in(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field in the form"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/console/login")
    return await client.post(
        "/console/login",
        data={"officer_id": OFFICER, "password": password, "csrf_token": csrf_in(page.text)},
    )


@pytest.fixture
async def officer(browser: httpx.AsyncClient) -> httpx.AsyncClient:
    """The browser, signed in as the IG officer."""
    response = await sign_in(browser)
    assert response.status_code == 303, response.text
    return browser


@dataclass
class Log:
    state: GatewayState

    async def add(self, i: int, **overrides: object) -> None:
        fields: dict[str, object] = {
            "operation": Operation.DISCLOSURE,
            "outcome": Outcome.ALLOWED,
            "agency_id": f"agency-{i % 3}",
            "officer_id": f"PC-{i % 5}",
            "nominal_ref": f"N{i:05d}",
            "legal_basis": "cja2003-s325",
            "purpose": "risk-management",
            "rule": "level2-attendee",
            "request_id": f"req-{i}",
        }
        fields.update(overrides)
        async with self.state.db.write() as session:
            record(session, AuditEvent.model_validate(fields))

    async def sequence(self) -> None:
        """As the gateway's background sequencer does: signed, and kept in the witness file."""
        audit = self.state.audit
        assert audit is not None
        await sequence(self.state.db, audit.signer, audit.origin, witness=audit.witness)


@pytest.fixture
async def log(state: GatewayState) -> Log:
    """Twelve disclosures and three refusals, sequenced and signed."""
    entries = Log(state)
    for i in range(12):
        await entries.add(i)
    for i in range(12, 15):
        await entries.add(
            i, outcome=Outcome.REFUSED, rule="no-need-to-know", reason_code="not_found_for_caller"
        )
    await entries.sequence()
    return entries
