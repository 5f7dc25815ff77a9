"""RFC 8705 tls_client_auth: an agency's client-certificate subject and CA; tokens bound to a
certificate

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 05:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("tls_client_auth_subject_dn", sa.String(length=1000), nullable=True)
        )
        batch_op.add_column(sa.Column("tls_client_ca_pem", sa.String(length=20000), nullable=True))
    with op.batch_alter_table("issued_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("x5t_s256", sa.String(length=64), nullable=True))
        batch_op.alter_column("jkt", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM issued_tokens WHERE jkt IS NULL")
    with op.batch_alter_table("issued_tokens", schema=None) as batch_op:
        batch_op.alter_column("jkt", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column("x5t_s256")
    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.drop_column("tls_client_ca_pem")
        batch_op.drop_column("tls_client_auth_subject_dn")
