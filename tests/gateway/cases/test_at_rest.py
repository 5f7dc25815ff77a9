"""Issue 4 item 3: a copy of the database alone reveals no personal data.

A whole Barnet case goes through the API (referral, screening, meeting, record with a third
party, minutes, action, onward disclosure, hazard flag, level change). Then the raw SQLite file
and its write-ahead log, or every PostgreSQL table (each row as text, and every binary column
rendered byte by byte), are searched for the plaintext: names, date of birth, address,
identifiers, reasons, record text, minutes, third parties.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import LargeBinary, text

from gateway.store.models import Base, Nominal
from tests.gateway.cases.scenario import (
    CHILD_REF,
    POLICE,
    SECRETS,
    at_level_2,
    referral,
    whole_case,
)
from tests.gateway.cases.support import World

#: Everything personal the case holds (the hazard flag's reference is the child's ICS number).
PLAINTEXT = (*SECRETS, "Ravenscroft children", "Media interest in Ravenscroft", CHILD_REF)


async def test_database_copy_reveals_no_plaintext(any_world: World) -> None:
    world = any_world
    nominal_id = await whole_case(world)
    # The case is all there and readable through the API...
    assert (await world[POLICE].get(f"/v1/nominals/{nominal_id}"))["names"]["family_name"]
    assert await world.count(Nominal) == 1
    # ...and nowhere in the store's bytes.
    if world.state.db.is_sqlite:
        path = Path(world.state.settings.database_url.split("///", 1)[1])
        raw = b"".join(
            p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
        )
        assert len(raw) > 10_000
        for needle in PLAINTEXT:
            assert needle.encode() not in raw, needle
        return
    dumped: list[str] = []
    async with world.state.db.read() as session:
        for table in Base.metadata.sorted_tables:
            rows = await session.execute(text(f'SELECT t::text FROM "{table.name}" t'))
            dumped += [row[0] for row in rows]
            for column in table.columns:
                if isinstance(column.type, LargeBinary):
                    escaped = await session.execute(
                        text(f'SELECT encode("{column.name}", \'escape\') FROM "{table.name}"')
                    )
                    dumped += [row[0] for row in escaped if row[0] is not None]
    everything = "\n".join(dumped)
    assert len(everything) > 10_000
    for needle in PLAINTEXT:
        assert needle not in everything, needle


async def test_a_sealed_value_moved_to_another_row_does_not_open(world: World) -> None:
    """Copying one nominal's sealed details over another's makes that nominal unreadable
    (503 case_data_unreadable), never the other person's data under the wrong id."""
    first = await at_level_2(world)
    other = {**referral()["subject"], "pnc_id": "2002/0000002A", "crn": "Y000001"}
    second = await at_level_2(world, subject=other)
    assert second != first
    async with world.state.db.write() as session:
        a = await session.get(Nominal, first)
        b = await session.get(Nominal, second)
        assert a is not None and b is not None
        b.details_sealed = a.details_sealed
    response = await world[POLICE].raw("GET", f"/v1/nominals/{second}")
    assert response.status_code == 503
    assert response.json()["code"] == "case_data_unreadable"
    assert (await world[POLICE].get(f"/v1/nominals/{first}"))["id"] == first
