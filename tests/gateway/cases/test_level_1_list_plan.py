"""The level 1 list reads a page of the area's level 1 nominals in order, whatever the planner
knows: on SQLite, with no statistics (a new installation never runs ANALYZE), it read every
nominal of the area by ix_nominals_area and sorted them all for each page, so a page cost the
area's whole register."""

from __future__ import annotations

import datetime as dt
import sqlite3

from sqlalchemy.dialects import sqlite

from gateway.cases.level1 import level_1_nominals
from gateway.cases.paging import Page
from gateway.store.models import Nominal

AFTER = (dt.datetime(2026, 11, 1, tzinfo=dt.UTC), "n-1")


def test_a_page_walks_the_level_1_index_in_order(sqlite_url: str) -> None:
    """A freshly migrated database, as a new installation's: no statistics for the planner."""
    for after in (None, AFTER):
        query = Page(after, 50).select(level_1_nominals("barnet"), Nominal.created_at, Nominal.id)
        compiled = query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
        with sqlite3.connect(sqlite_url.split("///", 1)[1]) as connection:
            plan = [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + str(compiled))]
        steps = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
        assert steps[0].startswith("SEARCH nominals USING INDEX ix_nominals_level_1_list"), plan
        assert "(area=? AND level=?" in steps[0], plan
        assert not [step for step in plan if "TEMP B-TREE" in step], plan
        assert not [step for step in steps if step.startswith("SCAN")], plan
