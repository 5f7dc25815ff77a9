"""Written reports for meetings: an information record may name the meeting it was sent for

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("information_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("meeting_id", sa.String(length=36), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_information_records_meeting_id"), ["meeting_id"], unique=False
        )
        batch_op.create_foreign_key(
            "fk_information_records_meeting_id_meetings", "meetings", ["meeting_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("information_records", schema=None) as batch_op:
        batch_op.drop_constraint("fk_information_records_meeting_id_meetings", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_information_records_meeting_id"))
        batch_op.drop_column("meeting_id")
