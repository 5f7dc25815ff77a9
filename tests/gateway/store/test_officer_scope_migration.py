"""Migration 0021 on a database with IG officers: each is left with no review scope (reads
nothing, never every area), and the upgrade says how many; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, text

from gateway.console.accounts import officer_by_id
from gateway.console.scope import NO_SCOPE, ReviewScope
from gateway.store import Database, upgrade
from gateway.store.migrate import alembic_config
from gateway.store.models import IGOfficer
from tests.gateway.store.migrated import migrated_to


@pytest.fixture(params=["sqlite", "postgres"])
def at_0020(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database migrated to 0020, the revision before the scopes."""
    with migrated_to(request.param, tmp_path, "0020") as url:
        yield url


async def _insert_officers(url: str) -> None:
    """Two officers as the gateway before 0021 stored them, one signed in (a session)."""
    db = Database(url)
    try:
        async with db.write() as session:
            for officer_id in ("ig.dpo", "ig.area"):
                await session.execute(
                    text(
                        "INSERT INTO ig_officers (id, display_name, password_hash, active, "
                        "created_at) VALUES (:id, 'Officer', '!', true, CURRENT_TIMESTAMP)"
                    ),
                    {"id": officer_id},
                )
    finally:
        await db.dispose()


async def test_existing_officers_get_no_scope_and_the_upgrade_says_so(
    at_0020: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """After the upgrade both read nothing (not national, no area), and the upgrade names the
    count and the commands that list and set scopes."""
    await _insert_officers(at_0020)
    await asyncio.to_thread(upgrade, at_0020)  # alembic runs its own event loop
    err = capfd.readouterr().err
    assert "2 IG officer account(s) now have no review scope" in err
    assert "mappa-gateway ig list-officers" in err and "ig set-scope" in err
    db = Database(at_0020)
    try:
        async with db.read() as session:
            for officer_id in ("ig.dpo", "ig.area"):
                officer = await officer_by_id(session, officer_id)
                assert officer is not None
                assert (officer.national, officer.areas) == (False, [])
                assert ReviewScope.of(officer) == NO_SCOPE
    finally:
        await db.dispose()


async def test_an_empty_database_upgrades_silently_and_a_row_written_without_a_scope_has_none(
    at_0020: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """No officer, no message; an officer inserted afterwards without the new columns (an older
    replica during a rolling upgrade, a hand-written row) gets the columns' defaults: none."""
    await asyncio.to_thread(upgrade, at_0020)
    assert "0021" not in capfd.readouterr().err
    await _insert_officers(at_0020)
    db = Database(at_0020)
    try:
        async with db.read() as session:
            officers = list(await session.scalars(select(IGOfficer)))
        assert [ReviewScope.of(officer) for officer in officers] == [NO_SCOPE, NO_SCOPE]
    finally:
        await db.dispose()


async def test_the_downgrade_drops_the_scope(at_0020: str) -> None:
    """0021 down to 0020 and up again: the columns go and come back, empty."""
    await _insert_officers(at_0020)
    await asyncio.to_thread(upgrade, at_0020)
    await asyncio.to_thread(command.downgrade, alembic_config(at_0020), "0020")
    db = Database(at_0020)
    try:
        async with db.read() as session:
            columns = (await session.execute(text("SELECT * FROM ig_officers"))).keys()
        assert "national" not in columns and "areas" not in columns
    finally:
        await db.dispose()
    await asyncio.to_thread(upgrade, at_0020)
