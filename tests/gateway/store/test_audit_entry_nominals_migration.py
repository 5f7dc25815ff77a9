"""Migration 0023 on a log that already holds level 1 list pages: each allowed page's nominals
are indexed, so an erasure after the upgrade tells the agencies that read them; nothing else is
indexed; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import insert, inspect, select

from gateway.cases.level1 import RULE
from gateway.store import Database, upgrade
from gateway.store.migrate import alembic_config
from gateway.store.models import AuditEntry, AuditEntryNominal
from tests.gateway.store.migrated import migrated_to

#: More pages than the upgrade reads in one batch (its _BATCH is 500).
PAGES = 520


@pytest.fixture(params=["sqlite", "postgres"])
def at_0022(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database migrated to 0022, the revision before the index."""
    with migrated_to(request.param, tmp_path, "0022") as url:
        yield url


def _entry(**fields: Any) -> dict[str, Any]:
    return {
        "entry_id": str(uuid.uuid4()),
        "occurred_at": dt.datetime(2026, 11, 23, tzinfo=dt.UTC),
        "operation": "disclosure",
        "outcome": "allowed",
        "agency_id": "barnet-housing",
        "recipients": ["barnet-housing"],
        "nominal_ref": None,
        "record_refs": [],
        "rule": RULE,
        "withheld": [],
        "detail": {},
        **fields,
    }


async def _insert(url: str, rows: list[dict[str, Any]]) -> None:
    db = Database(url)
    try:
        async with db.write() as session:
            await session.execute(insert(AuditEntry), rows)
    finally:
        await db.dispose()


async def _indexed(url: str) -> list[tuple[str, str]]:
    db = Database(url)
    try:
        async with db.read() as session:
            rows = await session.execute(
                select(AuditEntryNominal.nominal_id, AuditEntryNominal.entry_id)
            )
            return sorted((nominal, entry) for nominal, entry in rows.all())
    finally:
        await db.dispose()


async def test_the_upgrade_indexes_the_nominals_of_every_allowed_level_1_page(
    at_0022: str,
) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    two = _entry(record_refs=[a, b, a])  # a ref twice is indexed once
    pages = [_entry(record_refs=[str(uuid.uuid4())]) for _ in range(PAGES)]
    ignored = [
        _entry(record_refs=[a], outcome="refused", detail={"salt": "00"}),  # nothing disclosed
        _entry(record_refs=[b], rule="need-to-know-lead-agency", nominal_ref=a),  # one nominal
        _entry(record_refs=[], rule=RULE),  # an empty page
    ]
    await _insert(at_0022, [two, *pages, *ignored])

    await asyncio.to_thread(upgrade, at_0022)  # alembic runs its own event loop

    expected = [(a, two["entry_id"]), (b, two["entry_id"])]
    expected += [(page["record_refs"][0], page["entry_id"]) for page in pages]
    assert await _indexed(at_0022) == sorted(expected)


async def test_downgrading_drops_the_index(at_0022: str) -> None:
    await asyncio.to_thread(upgrade, at_0022)
    await asyncio.to_thread(command.downgrade, alembic_config(at_0022), "0022")
    db = Database(at_0022)
    try:
        async with db.read() as session:
            tables = await session.run_sync(
                lambda sync: inspect(sync.connection()).get_table_names()
            )
    finally:
        await db.dispose()
    assert "audit_entry_nominals" not in tables and "audit_entries" in tables
