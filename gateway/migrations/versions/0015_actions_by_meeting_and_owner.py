"""Need-to-know finds an agency's actions at one nominal's meetings by meeting and owner

The involvements query (gateway/flow/need_to_know.py) asks, on every read, which action points
of the nominal's meetings the calling agency owns. Without an index on both columns SQLite's
planner, having no statistics, read every action the agency owns (and every meeting it attended)
and kept those of the nominal: a read cost grew with the agency's whole history (18 ms a read at
20,000 meetings, against 0.02 ms from the nominal's meetings).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 14:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_actions_meeting_owner", ["meeting_id", "owner_agency_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index("ix_actions_meeting_owner")
