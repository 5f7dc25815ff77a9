"""The migration history: one line, one head, and the models match what it builds."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from gateway.store.migrate import alembic_config


def test_single_alembic_head() -> None:
    """Exactly one head: two engineers' migrations were chained, not forked."""
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    heads = script.get_heads()
    assert len(heads) == 1, f"migration history has several heads: {heads}"
