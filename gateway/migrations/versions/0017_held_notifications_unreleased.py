"""The periodic release of held notifications finds the unreleased ones by their own index

A running gateway asks every few seconds which owners still have a notification held (released_at
IS NULL). The only index led with the owner, so SQLite's planner (no statistics on a new
installation) read it whole: each look cost every notification ever held and released (0.94 ms
at 20,000 of them, 0.009 ms by this index).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 15:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("held_notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_held_notifications_unreleased", ["released_at", "owner_agency_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("held_notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_held_notifications_unreleased")
