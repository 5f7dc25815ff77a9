"""audit log and IG officers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 08:30:51.507517
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "audit_checkpoints",
        sa.Column("tree_size", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=4000), nullable=False),
        sa.Column("frontier", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tree_size"),
    )
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entry_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("leaf_hash", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("operation", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("agency_id", sa.String(length=200), nullable=True),
        sa.Column("officer_id", sa.String(length=200), nullable=True),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("nominal_ref", sa.String(length=64), nullable=True),
        sa.Column("record_refs", sa.JSON(), nullable=False),
        sa.Column("legal_basis", sa.String(length=64), nullable=True),
        sa.Column("purpose", sa.String(length=64), nullable=True),
        sa.Column("policy_version", sa.String(length=64), nullable=True),
        sa.Column("rule", sa.String(length=128), nullable=True),
        sa.Column("withheld", sa.JSON(), nullable=False),
        sa.Column("payload_digest", sa.String(length=100), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("entry_id"),
        sa.UniqueConstraint("seq"),
    )
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_entries_agency_id"), ["agency_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_entries_nominal_ref"), ["nominal_ref"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_entries_operation"), ["operation"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_entries_outcome"), ["outcome"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_entries_reason_code"), ["reason_code"], unique=False
        )

    op.create_table(
        "ig_officers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:

    op.drop_table("ig_officers")
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_entries_reason_code"))
        batch_op.drop_index(batch_op.f("ix_audit_entries_outcome"))
        batch_op.drop_index(batch_op.f("ix_audit_entries_operation"))
        batch_op.drop_index(batch_op.f("ix_audit_entries_nominal_ref"))
        batch_op.drop_index(batch_op.f("ix_audit_entries_agency_id"))

    op.drop_table("audit_entries")
    op.drop_table("audit_checkpoints")
