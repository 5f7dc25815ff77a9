"""What one gateway process lets the console spend: the CSV read a page at a time, at most so
many exports and integrity runs at once (429 with Retry-After beyond, audited), and an
integrity verdict reused only while the log's checkpoint and sequenced entries are unchanged."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from gateway.audit.search import MAX_LIMIT, SearchQuery
from gateway.console import routes
from gateway.console.limits import EXPORTS, INTEGRITY_REUSE_SECONDS, RETRY_AFTER_SECONDS, Slots
from gateway.state import GatewayState
from gateway.store.models import AuditEntry
from tests.gateway.console.conftest import Log

_ALLOWED_DISCLOSURES = {"operation": "disclosure", "outcome": "allowed"}


async def _console_entries(state: GatewayState, action: str) -> list[AuditEntry]:
    async with state.db.read() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.operation == "console").order_by(AuditEntry.id)
        )
        return [row for row in rows if row.detail.get("action") == action]


async def test_the_csv_is_read_a_search_page_at_a_time_up_to_its_limit(
    officer: httpx.AsyncClient, log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No read asks for more than a page (it asked for all 100,000 rows at once); the rows
    still come newest first, every one, and stop at the export's limit."""
    limits: list[int] = []
    search = routes.search_entries

    async def counted(session: Any, query: SearchQuery, **kwargs: Any) -> Any:
        limits.append(query.limit)
        return await search(session, query, **kwargs)

    monkeypatch.setattr(routes, "search_entries", counted)
    monkeypatch.setattr(routes, "_CSV_PAGE", 4, raising=False)
    whole = await officer.get("/console/export.csv", params=_ALLOWED_DISCLOSURES)
    assert whole.status_code == 200
    rows = list(csv.DictReader(io.StringIO(whole.text)))
    assert [row["nominal_ref"] for row in rows] == [f"N{i:05d}" for i in range(11, -1, -1)]
    assert limits and max(limits) <= 4
    assert routes._CSV_PAGE <= MAX_LIMIT
    monkeypatch.setattr(routes, "_CSV_LIMIT", 6)
    capped = await officer.get("/console/export.csv", params=_ALLOWED_DISCLOSURES)
    rows = list(csv.DictReader(io.StringIO(capped.text)))
    assert [row["nominal_ref"] for row in rows] == [f"N{i:05d}" for i in range(11, 5, -1)]


@pytest.mark.parametrize(
    ("path", "action"),
    [("/console/export.csv", "export_csv"), ("/console/export.jsonl", "export_pack")],
)
async def test_exports_beyond_the_process_cap_are_refused_with_retry_after(
    console_app: FastAPI,
    officer: httpx.AsyncClient,
    state: GatewayState,
    log: Log,
    path: str,
    action: str,
) -> None:
    """With every export slot held, one more export is 429 with Retry-After, audited as
    refused; once a slot is free it goes ahead and gives its slot back when it is sent."""
    slots = Slots(EXPORTS)
    console_app.state.console_export_slots = slots
    slots.held = EXPORTS
    busy = await officer.get(path)
    assert busy.status_code == 429
    assert busy.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    (refused,) = await _console_entries(state, action)
    assert refused.outcome == "refused" and refused.reason_code == "console_busy"
    slots.held = EXPORTS - 1
    sent = await officer.get(path)
    assert sent.status_code == 200
    assert slots.held == EXPORTS - 1
    assert [entry.outcome for entry in await _console_entries(state, action)] == [
        "refused",
        "allowed",
    ]


async def test_a_second_integrity_run_at_once_is_refused_with_retry_after(
    console_app: FastAPI, officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    runs = Slots(1)
    runs.held = 1
    console_app.state.console_integrity_runs = runs
    busy = await officer.get("/console/integrity")
    assert busy.status_code == 429
    assert busy.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    (refused,) = await _console_entries(state, "integrity")
    assert refused.outcome == "refused" and refused.reason_code == "console_busy"
    runs.held = 0
    assert (await officer.get("/console/integrity")).status_code == 200
    assert runs.held == 0


async def test_the_integrity_verdict_is_reused_only_while_the_log_is_as_it_was(
    officer: httpx.AsyncClient, state: GatewayState, log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two looks in a row verify once (each look audited); a new checkpoint, or a seq removed,
    is verified at once; an entry edited in place shows once the reuse time has passed."""
    runs: list[str] = []
    verify = routes.verify_database

    def counted(*args: Any, **kwargs: Any) -> Any:
        runs.append("run")
        return verify(*args, **kwargs)

    monkeypatch.setattr(routes, "verify_database", counted)
    first = await officer.get("/console/integrity")
    second = await officer.get("/console/integrity")
    assert "proof-verified" in first.text and "proof-verified" in second.text
    assert len(runs) == 1
    assert "The verdict of a run 0 s ago" in second.text
    assert len(await _console_entries(state, "integrity")) == 2
    await log.add(30)
    await log.sequence()
    assert "proof-verified" in (await officer.get("/console/integrity")).text
    assert len(runs) == 2
    async with state.db.write() as session:
        await session.execute(text("UPDATE audit_entries SET rule = 'x' WHERE seq = 4"))
    assert "proof-verified" in (await officer.get("/console/integrity")).text
    assert len(runs) == 2
    now = state.clock()
    state.clock = lambda: now + dt.timedelta(seconds=INTEGRITY_REUSE_SECONDS + 1)
    edited = await officer.get("/console/integrity")
    assert len(runs) == 3
    assert "edited at entry seq 4" in edited.text
    async with state.db.write() as session:
        await session.execute(
            text("UPDATE audit_entries SET rule = 'level2-attendee' WHERE seq = 4")
        )
        await session.execute(text("UPDATE audit_entries SET seq = NULL WHERE seq = 7"))
    blanked = await officer.get("/console/integrity")
    assert len(runs) == 4
    assert "proof-failed" in blanked.text
