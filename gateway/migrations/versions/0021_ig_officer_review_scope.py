"""An IG officer's review scope: the MAPPA areas whose audit entries the officer reads

Each area has its own Strategic Management Board and information governance function; the
console showed every officer every area's entries. An officer now carries a scope: ``areas``
(area codes, as agencies are registered with) or ``national`` (every area, a deliberate grant).

Existing officers are given **no scope**: ``national`` false, ``areas`` empty. They still sign
in, and every page tells them their account has no review scope; they read no entry until an
operator sets one (``mappa-gateway ig set-scope OFFICER --area CODE`` or ``--national``). Not
national: the migration cannot tell an officer of the national IG function the IG guide asked
the console to be kept for from one registered to review a single area, and widening is the
error that cannot be undone (an entry read stays read), where a lockout is seen at once and
undone by one command. The upgrade prints how many officers were left without a scope, and
``mappa-gateway ig list-officers`` names them. The columns' server defaults are the same: a
row written without them (by hand, by an older replica during a rolling upgrade) reads nothing.
Downgrading drops the scopes, and the code before this revision shows every officer every area.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 09:00:00.000000
"""

from __future__ import annotations

import sys

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ig_officers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("national", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("areas", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    unscoped = op.get_bind().scalar(sa.text("SELECT count(*) FROM ig_officers"))
    if unscoped:
        print(
            f"migration 0021: {unscoped} IG officer account(s) now have no review scope and "
            "read no audit entry until one is set: mappa-gateway ig list-officers names them; "
            "mappa-gateway ig set-scope OFFICER --area CODE (repeatable) or --national sets it",
            file=sys.stderr,
        )


def downgrade() -> None:
    with op.batch_alter_table("ig_officers", schema=None) as batch_op:
        batch_op.drop_column("areas")
        batch_op.drop_column("national")
