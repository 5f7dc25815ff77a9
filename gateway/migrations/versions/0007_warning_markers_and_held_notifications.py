"""Warning markers kept until revoked; owner notifications held until the owner has a key

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "warning_markers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("nominal_id", sa.String(length=36), nullable=False),
        sa.Column("recipient_agency_id", sa.String(length=64), nullable=False),
        sa.Column("raised_by_agency_id", sa.String(length=64), nullable=False),
        sa.Column("review_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("details_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by_agency_id", sa.String(length=64), nullable=True),
        sa.Column("revoked_reason", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(["nominal_id"], ["nominals.id"]),
        sa.ForeignKeyConstraint(["raised_by_agency_id"], ["agencies.id"]),
        sa.ForeignKeyConstraint(["recipient_agency_id"], ["agencies.id"]),
        sa.ForeignKeyConstraint(["revoked_by_agency_id"], ["agencies.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("warning_markers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_warning_markers_nominal_id"), ["nominal_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_warning_markers_recipient_agency_id"),
            ["recipient_agency_id"],
            unique=False,
        )

    op.create_table(
        "held_notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_agency_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("nominal_ref", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("body_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["owner_agency_id"], ["agencies.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("held_notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_held_notifications_owner", ["owner_agency_id", "released_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("held_notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_held_notifications_owner")
    op.drop_table("held_notifications")
    with op.batch_alter_table("warning_markers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_warning_markers_recipient_agency_id"))
        batch_op.drop_index(batch_op.f("ix_warning_markers_nominal_id"))
    op.drop_table("warning_markers")
