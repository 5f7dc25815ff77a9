"""The periodic release of held notifications finds the owners still waiting through an index
that leads with ``released_at``, whatever the planner knows: on SQLite, with no statistics (a
new installation never runs ANALYZE), it read the owner-led index whole, so each look cost every
notification ever held and released."""

from __future__ import annotations

import sqlite3

from sqlalchemy.dialects import sqlite

from gateway.cases.held_notifications import owners_waiting


def test_the_look_searches_the_unreleased_rows_only(sqlite_url: str) -> None:
    """A freshly migrated database, as a new installation's: no statistics for the planner."""
    for agency_id in (None, "police-a"):
        query = owners_waiting(agency_id)
        compiled = query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
        with sqlite3.connect(sqlite_url.split("///", 1)[1]) as connection:
            plan = [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + str(compiled))]
        steps = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
        assert not [step for step in steps if step.startswith("SCAN")], plan
        assert all("released_at=?" in step for step in steps), plan
