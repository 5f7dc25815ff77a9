"""The case API: nominal history, durable idempotency keys, when a referral closed

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 08:58:38.128368
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("answer_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agency_id", "key"),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "nominal_changes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("nominal_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("officer", sa.String(length=64), nullable=False),
        sa.Column("old_value", sa.String(length=20), nullable=True),
        sa.Column("new_value", sa.String(length=20), nullable=True),
        sa.Column("meeting_id", sa.String(length=36), nullable=True),
        sa.Column("details_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"],
            ["agencies.id"],
        ),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
        ),
        sa.ForeignKeyConstraint(
            ["nominal_id"],
            ["nominals.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("nominal_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_nominal_changes_nominal_id"), ["nominal_id"], unique=False
        )

    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_column("closed_at")

    with op.batch_alter_table("nominal_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nominal_changes_nominal_id"))

    op.drop_table("nominal_changes")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_expires_at"))

    op.drop_table("idempotency_keys")
