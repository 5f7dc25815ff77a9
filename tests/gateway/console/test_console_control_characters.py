"""The IG console with text PostgreSQL cannot take, on SQLite and PostgreSQL.

The console searches with the audit API's parser (a control character in any value: 400, the
search form shown again with the error), looks an entry up only by a well-formed id, and keeps a
failed sign-in's officer id as typed unless it holds a NUL (which no account has, and which
PostgreSQL cannot store): each of those was a 500 on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store.models import AuditEntry
from tests.gateway.console.conftest import Log, csrf_in


@pytest.fixture
def console_settings(database_url: str, console_keys: tuple[Path, Path]) -> Settings:
    return Settings(
        profile="test",
        database_url=database_url,
        issuer="https://gateway.test",
        keys_dir=console_keys[0],
        kek_file=console_keys[1],
        audit_sequence_interval_seconds=0,
    )


async def _console(state: GatewayState, action: str) -> list[AuditEntry]:
    async with state.db.read() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.operation == "console").order_by(AuditEntry.id)
        )
        return [row for row in rows if row.detail.get("action") == action]


@pytest.mark.parametrize("path", ["/console/entries", "/console/refusals"])
@pytest.mark.parametrize("name", ["nominal", "agency", "officer", "operation", "from"])
async def test_a_search_value_with_a_control_character_is_400_with_the_form(
    officer: httpx.AsyncClient, state: GatewayState, log: Log, path: str, name: str
) -> None:
    """The page answers 400 with the error on the form, runs no search and records none."""
    for value in ("x\x00y", "x\x07", "N00001\n"):
        response = await officer.get(path, params={name: value})
        assert response.status_code == 400, (name, repr(value), response.text[:200])
        assert "control characters are not accepted" in response.text
    assert await _console(state, "search") == []
    assert await _console(state, "refusals") == []
    good = await officer.get(path, params={"nominal": "N00012" if "refusals" in path else "N00001"})
    assert good.status_code == 200


async def test_a_csv_export_with_a_control_character_is_400(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    response = await officer.get("/console/export.csv", params={"nominal": "x\x00y"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameter"
    assert await _console(state, "export_csv") == []


@pytest.mark.parametrize(
    "entry_id",
    ["a%00b", "%00", "00000000-0000-4000-8000-000000000001%00", "x" * 300, "ABC%0A"],
)
async def test_an_entry_id_that_is_no_entry_id_is_404_and_the_view_audited(
    officer: httpx.AsyncClient, state: GatewayState, log: Log, entry_id: str
) -> None:
    """Never looked up: 404, and the view audited without the id."""
    response = await officer.get(f"/console/entries/{entry_id}")
    assert response.status_code == 404
    (view,) = await _console(state, "view")
    assert view.record_refs == [] and view.detail["entry"] == "malformed"


async def test_a_real_entry_still_opens(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    async with state.db.read() as session:
        entry_id = await session.scalar(
            select(AuditEntry.entry_id).where(AuditEntry.nominal_ref == "N00003")
        )
    response = await officer.get(f"/console/entries/{entry_id}")
    assert response.status_code == 200
    (view,) = await _console(state, "view")
    assert view.record_refs == [entry_id]


@pytest.mark.parametrize("typed", ["ig.officer\x00", "\x00", "a\x00<b>"])
async def test_a_sign_in_with_a_nul_in_the_officer_id_is_refused_and_audited_without_it(
    browser: httpx.AsyncClient, state: GatewayState, typed: str
) -> None:
    """The same refusal as a wrong password (401, no session), audited as bad credentials with
    no officer id (marked withheld): a NUL can be in no account's id, nor in the store."""
    page = await browser.get("/console/login")
    response = await browser.post(
        "/console/login",
        data={"officer_id": typed, "password": "nope", "csrf_token": csrf_in(page.text)},
    )
    assert response.status_code == 401
    assert "__Host-mappa-console=" not in response.headers.get("set-cookie", "")
    (failed,) = await _console(state, "login_failed")
    assert failed.outcome == "refused" and failed.reason_code == "bad_credentials"
    assert failed.officer_id is None
    assert failed.detail["officer_id_withheld"] == "nul"


async def test_a_failed_sign_in_keeps_other_control_characters_as_typed(
    browser: httpx.AsyncClient, state: GatewayState
) -> None:
    """A bell or markup is stored as typed, on both backends (shown escaped by the console)."""
    page = await browser.get("/console/login")
    typed = "<b>ig.officer</b>\x07"
    response = await browser.post(
        "/console/login",
        data={"officer_id": typed, "password": "nope", "csrf_token": csrf_in(page.text)},
    )
    assert response.status_code == 401
    (failed,) = await _console(state, "login_failed")
    assert failed.officer_id == typed
