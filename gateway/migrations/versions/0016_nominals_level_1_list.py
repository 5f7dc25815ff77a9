"""The level 1 list reads an area's level 1 nominals in page order

GET /v1/level-1-list pages through an area's active level 1 nominals by (created_at, id). With
the area's index only, SQLite's planner (no statistics on a new installation) read every
nominal of the area, of every level and status, and sorted them for each page: a page cost the
area's whole register (1.36 ms a page at 3,000 nominals in the area, 0.13 ms by this index).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 15:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nominals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_nominals_level_1_list", ["area", "level", "created_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("nominals", schema=None) as batch_op:
        batch_op.drop_index("ix_nominals_level_1_list")
