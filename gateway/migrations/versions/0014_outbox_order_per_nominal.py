"""The relay pushes the messages about one nominal in order: an index to find an earlier one

The relay claims a message only when no earlier message to the same recipient about the same
nominal is still pending or leased (gateway/delivery/lease.py ``in_turn``); this index answers
that question from the recipient, the nominal and the status, without reading the recipient's
other messages.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 13:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_nominal",
            ["recipient_agency_id", "nominal_ref", "status", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_nominal")
