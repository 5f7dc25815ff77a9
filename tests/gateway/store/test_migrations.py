"""Alembic migrations: one line of history, and the models match what they build."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from gateway.store.migrate import alembic_config
from gateway.store.models import Base


def test_single_alembic_head() -> None:
    """Migrations form one chain: two heads would leave replicas on different schemas."""
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    assert len(script.get_heads()) == 1, script.get_heads()


def test_migrations_build_exactly_the_models(sqlite_url: str) -> None:
    """A database migrated to head has no difference from the models' metadata."""
    engine = create_engine(sqlite_url.replace("+aiosqlite", ""))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
