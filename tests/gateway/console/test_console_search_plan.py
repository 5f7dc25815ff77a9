"""Each filter of the audit search finds its entries by an index, not by reading the log: on
SQLite, with no statistics (a new installation's database), a search by legal basis or purpose
read every entry, newest first, until it had a page; a rare basis cost the whole log."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import event

from gateway.audit.search import parse_query, search_entries
from gateway.store import Database


@pytest.mark.parametrize(
    "field", ["legal_basis", "purpose", "nominal", "agency", "officer", "operation", "outcome"]
)
@pytest.mark.parametrize("cursor", [False, True], ids=["first-page", "next-page"])
async def test_a_search_by_one_filter_searches_an_index(
    sqlite_url: str, field: str, cursor: bool
) -> None:
    """The statement the search runs, explained on a freshly migrated database."""
    statements: list[tuple[str, Any]] = []
    db = Database(sqlite_url)

    def seen(conn: Any, cursor_: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "FROM audit_entries" in statement:
            statements.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with db.read() as session:
            await search_entries(session, parse_query([(field, "x")]))
            if cursor:
                statements.clear()
                query = parse_query([(field, "x"), ("cursor", _cursor(1000))])
                await search_entries(session, query)
    finally:
        await db.dispose()
    ((statement, parameters),) = statements
    with sqlite3.connect(sqlite_url.split("///", 1)[1]) as connection:
        plan = [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + statement, parameters)]
    assert any(step.startswith("SEARCH audit_entries USING INDEX") for step in plan), plan
    assert not [step for step in plan if step.startswith("SCAN")], plan
    assert not [step for step in plan if "TEMP B-TREE" in step], plan


def _cursor(entry_id: int) -> str:
    from gateway.audit.search import encode_cursor

    return encode_cursor(entry_id)
