"""A referral finds a nominal already registered with its identifiers through the identifiers'
own indexes, whatever the planner knows: on SQLite, with no statistics (a new installation
never runs ANALYZE), the match read the area's every nominal (ix_nominals_area) and kept those
carrying the identifiers, so each referral cost the area's whole register."""

from __future__ import annotations

import sqlite3

from sqlalchemy.dialects import sqlite

from gateway.cases.referrals import _same_identifiers


def test_the_match_searches_the_identifiers_indexes(sqlite_url: str) -> None:
    query = _same_identifiers({"pnc": "p" * 64, "crn": "c" * 64})
    sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    with sqlite3.connect(sqlite_url.split("///", 1)[1]) as connection:
        plan = [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql)]
    steps = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
    assert not [step for step in steps if step.startswith("SCAN")], plan
    assert not [step for step in steps if "ix_nominals_area" in step], plan
    assert any("ix_nominals_pnc_index" in step for step in steps), plan
    assert any("ix_nominals_crn_index" in step for step in steps), plan
