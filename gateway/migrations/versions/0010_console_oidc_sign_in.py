"""Console OIDC sign-in: an officer's OIDC identity, sign-ins under way

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_oidc_logins",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("binding_hash", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("code_verifier", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state_hash"),
    )
    with op.batch_alter_table("console_oidc_logins", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_console_oidc_logins_expires_at"), ["expires_at"], unique=False
        )
    with op.batch_alter_table("ig_officers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("oidc_issuer", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("oidc_subject", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(
            "uq_ig_officers_oidc_issuer", ["oidc_issuer", "oidc_subject"]
        )


def downgrade() -> None:
    with op.batch_alter_table("ig_officers", schema=None) as batch_op:
        batch_op.drop_constraint("uq_ig_officers_oidc_issuer", type_="unique")
        batch_op.drop_column("oidc_subject")
        batch_op.drop_column("oidc_issuer")
    with op.batch_alter_table("console_oidc_logins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_oidc_logins_expires_at"))
    op.drop_table("console_oidc_logins")
