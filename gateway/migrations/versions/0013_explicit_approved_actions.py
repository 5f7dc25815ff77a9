"""Approvals of the whole of a meeting's actions name the actions they covered

An onward disclosure approved with the part ``actions`` was stored as that word, and every read
then released the meeting's actions as they stood at the read, action points added after the
approval included. Approvals now store ``actions/<id>`` for each action the meeting had when the
chair decided (gateway/cases/disclosures.py); this rewrites the approvals stored before in the
same way: the actions created at or before the decision, in the order the meeting lists them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_requests = sa.table(
    "onward_disclosure_requests",
    sa.column("id", sa.String),
    sa.column("meeting_id", sa.String),
    sa.column("status", sa.String),
    sa.column("approved_parts", sa.JSON),
    sa.column("decided_at", sa.DateTime),
)
_actions = sa.table(
    "actions",
    sa.column("id", sa.String),
    sa.column("meeting_id", sa.String),
    sa.column("created_at", sa.DateTime),
)


def upgrade() -> None:
    bind = op.get_bind()
    approved = bind.execute(
        sa.select(
            _requests.c.id,
            _requests.c.meeting_id,
            _requests.c.approved_parts,
            _requests.c.decided_at,
        ).where(_requests.c.status == "approved", _requests.c.meeting_id.is_not(None))
    ).all()
    for row in approved:
        parts = [str(part) for part in (row.approved_parts or [])]
        if "actions" not in parts:
            continue
        covered = (
            bind.execute(
                sa.select(_actions.c.id)
                .where(
                    _actions.c.meeting_id == row.meeting_id,
                    _actions.c.created_at <= row.decided_at,
                )
                .order_by(_actions.c.created_at, _actions.c.id)
            )
            .scalars()
            .all()
        )
        explicit: list[str] = []
        for part in parts:
            named = (
                [f"actions/{action_id}" for action_id in covered] if part == "actions" else [part]
            )
            explicit.extend(name for name in named if name not in explicit)
        bind.execute(
            _requests.update().where(_requests.c.id == row.id).values(approved_parts=explicit)
        )


def downgrade() -> None:
    """Nothing to undo: the explicit list is what each approval covered."""
