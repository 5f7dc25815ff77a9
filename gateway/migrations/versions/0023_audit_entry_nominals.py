"""The nominals an entry about several of them disclosed, indexed for erasure notices

A page of the level 1 list discloses several nominals (names, date of birth) in one audit entry,
which names them in ``record_refs`` and has no ``nominal_ref``; an erasure, which finds the
agencies to notify by ``nominal_ref``, did not reach the agencies that had the nominal that way.
``audit_entry_nominals`` holds one row (nominal id, entry id) per nominal of such an entry,
written in the entry's transaction from now on. The upgrade fills it from the level 1 list
entries already in the log, a batch at a time; downgrading drops it (the code before this
revision does not read it). A page written by a replica still running the code before this
revision, during a rolling upgrade, is not indexed: its readers are not sent that nominal's
erasure notice.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 01:30:00.000000
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

#: The rule of a level 1 list page's audit entry (gateway.cases.level1.RULE, as stored).
_LEVEL_1_RULE = "level-1-monthly-list"
#: Entries read (and their rows written) a batch at a time.
_BATCH = 500


def _refs(value: Any) -> list[str]:
    """``record_refs`` as the driver returns it (a list, or JSON text on some drivers)."""
    if isinstance(value, str | bytes):
        value = json.loads(value)
    return [ref for ref in value or () if isinstance(ref, str) and ref]


def upgrade() -> None:
    table = op.create_table(
        "audit_entry_nominals",
        sa.Column("nominal_id", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("nominal_id", "entry_id"),
    )
    assert table is not None
    bind = op.get_bind()
    entries = sa.table(
        "audit_entries",
        sa.column("id", sa.Integer()),
        sa.column("entry_id", sa.String()),
        sa.column("record_refs", sa.JSON()),
        sa.column("rule", sa.String()),
        sa.column("outcome", sa.String()),
        sa.column("nominal_ref", sa.String()),
    )
    after = 0
    while True:
        batch = bind.execute(
            sa.select(entries.c.id, entries.c.entry_id, entries.c.record_refs)
            .where(
                entries.c.rule == _LEVEL_1_RULE,
                entries.c.outcome == "allowed",
                entries.c.nominal_ref.is_(None),
                entries.c.id > after,
            )
            .order_by(entries.c.id)
            .limit(_BATCH)
        ).all()
        if not batch:
            break
        rows = [
            {"nominal_id": ref, "entry_id": entry_id}
            for _, entry_id, refs in batch
            for ref in sorted(set(_refs(refs)))
        ]
        if rows:
            bind.execute(sa.insert(table), rows)
        after = batch[-1][0]


def downgrade() -> None:
    op.drop_table("audit_entry_nominals")
