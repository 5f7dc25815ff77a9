"""Console sign-in attempts under way, reserved before the password is checked

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_login_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("officer_key", sa.String(length=64), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("console_login_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_console_login_attempts_officer_key"), ["officer_key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_console_login_attempts_attempted_at"), ["attempted_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("console_login_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_login_attempts_attempted_at"))
        batch_op.drop_index(batch_op.f("ix_console_login_attempts_officer_key"))
    op.drop_table("console_login_attempts")
