"""The relay's and the metrics' outbox reads find the open rows through an index that leads with
what makes a row open, whatever the planner knows: on SQLite, with no statistics (a new
installation never runs ANALYZE), a sweep read every message its partner had ever been sent and
the depth gauge every message at all, so both cost the whole delivered history."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event

from gateway.delivery import enqueue
from gateway.delivery.lease import claim
from gateway.delivery.operations import depth, oldest_waiting
from gateway.store import Database
from tests.gateway.delivery.support import JWE, partner

T0 = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
URL = "http://127.0.0.1:9/mappa/deliveries"  # never pushed to here


async def _plans(
    sqlite_db: Database, sqlite_url: str, act: Callable[[Any], Awaitable[object]]
) -> list[list[str]]:
    """The SQLite plan of each SELECT on outbox_messages that ``act`` runs in a write session."""
    seen: list[tuple[str, Any]] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "outbox_messages" in statement:
            seen.append((statement, parameters))

    engine = sqlite_db.writer.sync_engine
    event.listen(engine, "before_cursor_execute", listen)
    try:
        async with sqlite_db.write() as session:
            await act(session)
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert seen
    with sqlite3.connect(sqlite_url.split("///", 1)[1]) as connection:
        return [
            [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, params)]
            for sql, params in seen
        ]


async def _one_message(sqlite_db: Database) -> None:
    await partner(sqlite_db, "police-a", URL)
    async with sqlite_db.write() as session:
        await enqueue(
            session,
            recipient_agency_id="police-a",
            kind="level_change",
            body=JWE,
            nominal_ref="n-1",
            now=T0,
        )


async def test_a_sweep_reads_the_partners_open_rows_only(
    sqlite_db: Database, sqlite_url: str
) -> None:
    """A freshly migrated database, as a new installation's: no statistics for the planner."""
    await _one_message(sqlite_db)

    async def sweep(session: Any) -> object:
        return await claim(
            session, owner="relay-1", now=T0, lease=dt.timedelta(hours=1), slots=lambda _: 10
        )

    plans = await _plans(sqlite_db, sqlite_url, sweep)
    leasing = [plan for plan in plans if any("earlier" in step for step in plan)]
    assert leasing, plans
    for plan in leasing:
        first = next(step for step in plan if step.startswith(("SEARCH", "SCAN")))
        assert first.startswith("SEARCH outbox_messages USING INDEX ix_outbox_inbox"), plan
        assert "status=?" in first, plan


async def test_the_depth_gauge_counts_the_open_rows_only(
    sqlite_db: Database, sqlite_url: str
) -> None:
    await _one_message(sqlite_db)
    [plan] = await _plans(sqlite_db, sqlite_url, depth)
    assert not [step for step in plan if step.startswith("SCAN")], plan
    assert any("(status=?)" in step for step in plan), plan


async def test_the_oldest_age_gauge_reads_the_waiting_rows_only(
    sqlite_db: Database, sqlite_url: str
) -> None:
    await _one_message(sqlite_db)

    async def oldest(session: Any) -> object:
        return await oldest_waiting(session, T0)

    [plan] = await _plans(sqlite_db, sqlite_url, oldest)
    assert not [step for step in plan if step.startswith("SCAN")], plan
    assert any("(status=?)" in step for step in plan), plan


async def test_a_queued_level_change_finds_the_level_it_announces_by_its_nominal(
    sqlite_db: Database, sqlite_url: str
) -> None:
    """Deciding a queued level change again reads the nominal's own level changes (by the
    nominal's index), never every nominal's history."""
    from gateway.delivery.redecide import _level_before
    from gateway.store.models import OutboxMessage

    seen: list[tuple[str, Any]] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "nominal_changes" in statement:
            seen.append((statement, parameters))

    row = OutboxMessage(id="m-1", kind="level_change", nominal_ref="n-1", created_at=T0)
    engine = sqlite_db.writer.sync_engine
    event.listen(engine, "before_cursor_execute", listen)
    try:
        async with sqlite_db.write() as session:
            assert await _level_before(session, row) is None
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert seen
    with sqlite3.connect(sqlite_url.split("///", 1)[1]) as connection:
        for sql, params in seen:
            plan = [r[3] for r in connection.execute("EXPLAIN QUERY PLAN " + sql, params)]
            first = next(step for step in plan if step.startswith(("SEARCH", "SCAN")))
            assert first.startswith("SEARCH nominal_changes USING INDEX"), plan
            assert "nominal_id=?" in first, plan
