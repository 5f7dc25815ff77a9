"""s.325(4A)(c) contributor decisions, action status updates, origin evidence, replay audit

The RA's contributor decisions per nominal and agency replace the nominal's unused
``other_contributors_allowed`` flag; actions may be ``in_progress`` and keep their status
history; the agency's signed JWS of each write is kept sealed beside its audit entry; a
remembered idempotent answer names the audit entry of the write it answered.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _action_status(*values: str) -> sa.Enum:
    return sa.Enum(
        *values, name="action_status", native_enum=False, create_constraint=True, length=40
    )


_OLD_STATUSES = ("open", "done", "cancelled")
_NEW_STATUSES = ("open", "in_progress", "done", "cancelled")


def upgrade() -> None:
    op.create_table(
        "contributor_decisions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("nominal_id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("recorded_by_agency_id", sa.String(length=64), nullable=False),
        sa.Column("officer", sa.String(length=64), nullable=False),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("review_date", sa.Date(), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by_agency_id", sa.String(length=64), nullable=True),
        sa.Column("revoked_officer", sa.String(length=64), nullable=True),
        sa.Column("revocation_sealed", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"]),
        sa.ForeignKeyConstraint(["nominal_id"], ["nominals.id"]),
        sa.ForeignKeyConstraint(["recorded_by_agency_id"], ["agencies.id"]),
        sa.ForeignKeyConstraint(["revoked_by_agency_id"], ["agencies.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("contributor_decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contributor_decisions_agency_id"), ["agency_id"], unique=False
        )
        batch_op.create_index(
            "ix_contributor_decisions_nominal_agency", ["nominal_id", "agency_id"], unique=False
        )

    op.create_table(
        "action_updates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("action_id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("officer", sa.String(length=64), nullable=False),
        sa.Column("from_status", sa.String(length=20), nullable=False),
        sa.Column("to_status", sa.String(length=20), nullable=False),
        sa.Column("note_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["action_id"], ["actions.id"]),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("action_updates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_action_updates_action_id"), ["action_id"], unique=False
        )

    op.create_table(
        "origin_evidence",
        sa.Column("entry_id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("sender_kid", sa.String(length=128), nullable=False),
        sa.Column("jws_digest", sa.String(length=80), nullable=False),
        sa.Column("nominal_ref", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("jws_sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"]),
        sa.PrimaryKeyConstraint("entry_id"),
    )
    with op.batch_alter_table("origin_evidence", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_origin_evidence_agency_id"), ["agency_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_origin_evidence_nominal_ref"), ["nominal_ref"], unique=False
        )

    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=_action_status(*_OLD_STATUSES),
            type_=_action_status(*_NEW_STATUSES),
            existing_nullable=False,
        )

    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audit_entry_id", sa.String(length=36), nullable=True))

    with op.batch_alter_table("nominals", schema=None) as batch_op:
        batch_op.drop_column("other_contributors_allowed")


def downgrade() -> None:
    with op.batch_alter_table("nominals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "other_contributors_allowed",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
            )
        )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_column("audit_entry_id")
    op.execute("UPDATE actions SET status = 'open' WHERE status = 'in_progress'")
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=_action_status(*_NEW_STATUSES),
            type_=_action_status(*_OLD_STATUSES),
            existing_nullable=False,
        )
    with op.batch_alter_table("origin_evidence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_origin_evidence_nominal_ref"))
        batch_op.drop_index(batch_op.f("ix_origin_evidence_agency_id"))
    op.drop_table("origin_evidence")
    with op.batch_alter_table("action_updates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_action_updates_action_id"))
    op.drop_table("action_updates")
    with op.batch_alter_table("contributor_decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_contributor_decisions_nominal_agency")
        batch_op.drop_index(batch_op.f("ix_contributor_decisions_agency_id"))
    op.drop_table("contributor_decisions")
