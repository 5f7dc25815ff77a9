"""A meeting's need can be closed, and an agency taken off a meeting

The chair or the area's MAPPA co-ordinator closes a meeting's need (POST
/v1/meetings/{id}/closure): ``need_closed_at`` was read by the need-to-know rules but nothing
wrote it. The meeting now records who closed it (agency and officer) and why (sealed at rest, as
other reasons are). A participation ``removed`` lets the chair take an agency off a meeting: the
row stays, and grants nothing.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def _participation(*values: str) -> sa.Enum:
    return sa.Enum(
        *values, name="participation", native_enum=False, create_constraint=True, length=40
    )


_OLD_PARTICIPATIONS = ("invited", "attended", "minutes_only")
_NEW_PARTICIPATIONS = ("invited", "attended", "minutes_only", "removed")


def upgrade() -> None:
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("need_closed_by_agency_id", sa.String(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column("need_closed_by_officer", sa.String(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column("need_closure_sealed", sa.LargeBinary(), nullable=True))
        batch_op.create_foreign_key(
            "fk_meetings_need_closed_by_agency_id_agencies",
            "agencies",
            ["need_closed_by_agency_id"],
            ["id"],
        )
    with op.batch_alter_table("meeting_agencies", schema=None) as batch_op:
        batch_op.alter_column(
            "participation",
            existing_type=_participation(*_OLD_PARTICIPATIONS),
            type_=_participation(*_NEW_PARTICIPATIONS),
            existing_nullable=False,
        )


def downgrade() -> None:
    # A removed agency had no part left: the older schema has no way to say so but to drop it.
    op.execute("DELETE FROM meeting_agencies WHERE participation = 'removed'")
    with op.batch_alter_table("meeting_agencies", schema=None) as batch_op:
        batch_op.alter_column(
            "participation",
            existing_type=_participation(*_NEW_PARTICIPATIONS),
            type_=_participation(*_OLD_PARTICIPATIONS),
            existing_nullable=False,
        )
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_constraint(
            "fk_meetings_need_closed_by_agency_id_agencies", type_="foreignkey"
        )
        batch_op.drop_column("need_closure_sealed")
        batch_op.drop_column("need_closed_by_officer")
        batch_op.drop_column("need_closed_by_agency_id")
