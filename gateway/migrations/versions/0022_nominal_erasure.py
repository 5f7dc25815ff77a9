"""A nominal's case data can be erased, leaving a tombstone

The Responsible Authority erases a nominal's case data (POST /v1/nominals/{id}/erasure): the
sealed columns that hold it become NULL, so they may now be NULL (the nominal's details; its
referrals', records', minutes', actions', hazard flags', warning markers', onward-disclosure
requests', history's and s.325(4A)(c) decisions' sealed parts). The nominal keeps a tombstone:
status ``erased`` (a new value of ``nominal_status``), when, by which agency and officer, and the
reason code.

Downgrading refuses while any nominal is erased: the older schema can hold an erased nominal
neither as a tombstone nor with its data, and it would show it to the Responsible Authority as
a live case.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

#: Every sealed column that held case data and now may be erased (NULL), by table.
_ERASABLE = (
    ("nominals", "details_sealed"),
    ("referrals", "details_sealed"),
    ("information_records", "body_sealed"),
    ("minutes", "body_sealed"),
    ("actions", "description_sealed"),
    ("hazard_flags", "details_sealed"),
    ("warning_markers", "details_sealed"),
    ("onward_disclosure_requests", "details_sealed"),
    ("nominal_changes", "details_sealed"),
    ("contributor_decisions", "reason_sealed"),
)
_FK = "fk_nominals_erased_by_agency_id_agencies"


def _status(*values: str) -> sa.Enum:
    return sa.Enum(
        *values, name="nominal_status", native_enum=False, create_constraint=True, length=40
    )


_OLD_STATUSES = ("active", "deregistered")
_NEW_STATUSES = ("active", "deregistered", "erased")


def upgrade() -> None:
    with op.batch_alter_table("nominals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("erased_by_agency_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("erased_by_officer", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("erasure_reason", sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(_FK, "agencies", ["erased_by_agency_id"], ["id"])
        batch_op.alter_column(
            "status",
            existing_type=_status(*_OLD_STATUSES),
            type_=_status(*_NEW_STATUSES),
            existing_nullable=False,
        )
    for table, column in _ERASABLE:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    erased = op.get_bind().scalar(sa.text("SELECT count(*) FROM nominals WHERE status = 'erased'"))
    if erased:
        raise RuntimeError(
            f"migration 0022: {erased} nominal(s) are erased; the schema before 0022 cannot "
            "hold an erased nominal, so it is not downgraded"
        )
    for table, column in reversed(_ERASABLE):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.LargeBinary(), nullable=False)
    with op.batch_alter_table("nominals", schema=None) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=_status(*_NEW_STATUSES),
            type_=_status(*_OLD_STATUSES),
            existing_nullable=False,
        )
        batch_op.drop_constraint(_FK, type_="foreignkey")
        batch_op.drop_column("erasure_reason")
        batch_op.drop_column("erased_by_officer")
        batch_op.drop_column("erased_by_agency_id")
        batch_op.drop_column("erased_at")
