"""Need-to-know's involvements query reaches the agency's rows through the nominal's few
referrals and meetings, whatever the planner knows: on SQLite, with no statistics, the join
once started from the agency's own index, so a read cost the agency's whole history (18 ms a
read for an agency at 20,000 meetings, 0.03 ms now: `benchmarks` note in the issue)."""

from __future__ import annotations

import sqlite3

from sqlalchemy.dialects import sqlite

from gateway.flow.need_to_know import _involvement_query

#: The indexes that lead with an agency: reading through one reads all of the agency's rows.
AGENCY_LEADING = (
    "ix_meeting_agencies_agency",
    "ix_actions_owner_agency_id",
    "ix_referral_agencies_agency",
)


def test_every_branch_starts_from_the_nominal(sqlite_url: str) -> None:
    """A freshly migrated database, as a new installation's: no statistics for the planner."""
    query = _involvement_query("police-a", "n-1")
    sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    with sqlite3.connect(sqlite_url.split("///", 1)[1]) as connection:
        plan = [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql)]
    steps = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
    assert not [step for step in steps if step.startswith("SCAN")], plan
    assert not [step for step in steps if any(index in step for index in AGENCY_LEADING)], plan
    for table in ("meeting_agencies", "actions", "referral_agencies", "contributor_decisions"):
        assert any(step.startswith(f"SEARCH {table}") for step in steps), (table, plan)
