"""A queued message names the meeting it is about, so it is decided again on that meeting

Minutes and an onward disclosure of minutes are decided at sealing on the meeting they are of.
The outbox row named only the nominal, so when a queued one was decided again at push or pull
any live meeting of the recipient's about the nominal granted it: an agency removed from one
meeting (or whose meeting's need was closed) still received its minutes while it took part in
another. ``subject_ref`` holds the meeting's id; rows queued before it (null) keep the old,
any-meeting decision.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 17:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject_ref", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_column("subject_ref")
