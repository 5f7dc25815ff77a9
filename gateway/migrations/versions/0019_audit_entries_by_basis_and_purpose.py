"""The audit search by legal basis or by purpose finds its entries by an index

The IG console and API filter the audit log by legal basis and by purpose, which had no index:
SQLite's planner (no statistics on a new installation) read the log newest first until it had a
page, so a basis or purpose used by few entries, or none, cost a read of the whole log, and so
did each next page. Every other filter has its index.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 17:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_entries_legal_basis"), ["legal_basis"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_entries_purpose"), ["purpose"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_entries_purpose"))
        batch_op.drop_index(batch_op.f("ix_audit_entries_legal_basis"))
