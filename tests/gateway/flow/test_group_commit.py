"""Group commit: concurrent acts share one transaction; each act fails alone; no audit, no
disclosure for every act of a batch the store cannot take."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import errors
from gateway.domain import AgencyStatus, AgencyType, Role
from gateway.flow.group_commit import GroupCommitter
from gateway.store import Database
from gateway.store.models import Agency


def _agency(agency_id: str) -> Agency:
    return Agency(
        id=agency_id,
        name=agency_id,
        agency_type=AgencyType.HOUSING,
        role=Role.DUTY_TO_COOPERATE,
        area="a",
        scopes=[],
        status=AgencyStatus.ACTIVE,
    )


async def _count(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Agency)) or 0)


async def test_concurrent_acts_commit_in_fewer_transactions(db: Database) -> None:
    """Fifty acts queued together commit in far fewer transactions, all of them stored."""
    committer = GroupCommitter(db)

    def adder(n: int) -> Any:
        async def act(session: AsyncSession) -> int:
            session.add(_agency(f"agency-{n}"))
            return n

        return act

    results = await asyncio.gather(*(committer.run(adder(n)) for n in range(50)))
    assert results == list(range(50))
    assert await _count(db) == 50
    assert committer.acts == 50
    assert committer.batches < 50


async def test_an_isolated_act_that_fails_fails_alone(db: Database) -> None:
    """A duplicate key in one isolated act rolls back that act only."""
    committer = GroupCommitter(db)
    await committer.run(lambda s: _add(s, "taken"))

    async def duplicate(session: AsyncSession) -> None:
        session.add(_agency("taken"))
        await session.flush()

    outcomes = await asyncio.gather(
        committer.run(lambda s: _add(s, "one"), isolated=True),
        committer.run(duplicate, isolated=True),
        committer.run(lambda s: _add(s, "two"), isolated=True),
        return_exceptions=True,
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], Exception)
    assert await _count(db) == 3


async def test_a_failing_plain_act_does_not_take_the_batch_with_it(db: Database) -> None:
    """A non-isolated act that raises is dropped and the rest of its batch commits."""
    committer = GroupCommitter(db)

    async def broken(session: AsyncSession) -> None:
        session.add(_agency("never"))
        raise errors.Conflict()

    outcomes = await asyncio.gather(
        committer.run(lambda s: _add(s, "a1")),
        committer.run(broken),
        committer.run(lambda s: _add(s, "a2")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], errors.Conflict)
    assert outcomes[0] is None and outcomes[2] is None
    assert await _count(db) == 2


async def test_a_store_that_cannot_commit_fails_every_act_with_audit_unavailable(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    committer = GroupCommitter(db)

    class Broken:
        async def __aenter__(self) -> Any:
            raise errors.StoreUnavailable(diagnostics={"db_error": "DiskFull"})

        async def __aexit__(self, *exc: Any) -> None:
            return None

    monkeypatch.setattr(db, "write", lambda: Broken())
    outcomes = await asyncio.gather(
        *(committer.run(lambda s: _add(s, f"x{n}")) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, errors.AuditUnavailable) for o in outcomes)


async def _add(session: AsyncSession, agency_id: str) -> None:
    session.add(_agency(agency_id))
