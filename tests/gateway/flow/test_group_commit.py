"""Group commit: concurrent acts share one transaction; each act fails alone; no audit, no
disclosure for every act of a batch the store cannot take."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import errors
from gateway.domain import AgencyStatus, AgencyType, Role
from gateway.flow.authenticate import PendingSpend
from gateway.flow.group_commit import GroupCommitter, Unspent
from gateway.store import Database
from gateway.store.models import Agency, UsedJti


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


def _proof(jti: str | None, agency_id: str = "spender") -> PendingSpend:
    """A proof to spend; ``jti`` None: a certificate-bound call's check (no proof)."""
    now = dt.datetime.now(dt.UTC)
    return PendingSpend(
        key=f"dpop:{jti}" if jti is not None else None,
        agency_id=agency_id,
        replay_until=now + dt.timedelta(minutes=2),
        now=now,
        request_id=None,
        method="GET",
        route="/v1/whoami",
    )


async def test_proofs_handed_over_are_spent_in_one_statement_and_a_replay_fails_alone(
    db: Database,
) -> None:
    """A batch's proofs are spent by one executemany before its acts run; the act of a proof
    already spent (earlier, or by another act of the same batch) or of a suspended agency
    does not run and fails alone with its reason, and every other act commits."""
    committer = GroupCommitter(db)
    await committer.run(lambda s: _add(s, "spender"))
    await committer.run(lambda s: _suspended(s, "suspended"))
    await committer.run(_nothing, spend=_proof("spent-before"))
    ran: list[str] = []
    statements: list[tuple[str, bool]] = []

    def spy(_conn: Any, _cursor: Any, sql: str, _params: Any, _context: Any, many: bool) -> None:
        statements.append((sql, many))

    def act(name: str) -> Any:
        async def add(session: AsyncSession) -> str:
            ran.append(name)
            session.add(_agency(f"by-{name}"))
            return name

        return add

    proofs = {
        "fresh": _proof("fresh"),
        "again": _proof("spent-before"),
        "twice-1": _proof("twice"),
        "twice-2": _proof("twice"),
        "suspended": _proof("suspended-call", "suspended"),
    }
    batches = committer.batches
    event.listen(db.writer.sync_engine, "before_cursor_execute", spy)
    try:
        outcomes = await asyncio.gather(
            *(committer.run(act(name), spend=proof) for name, proof in proofs.items()),
            return_exceptions=True,
        )
    finally:
        event.remove(db.writer.sync_engine, "before_cursor_execute", spy)
    assert outcomes[0] == "fresh" and outcomes[2] == "twice-1"
    assert [o.outcome for o in outcomes if isinstance(o, Unspent)] == [
        "replayed",
        "replayed",
        "suspended",
    ]
    assert sorted(ran) == ["fresh", "twice-1"]  # the others' acts never ran
    spends = [many for sql, many in statements if "used_jti" in sql.lower()]
    batches = committer.batches - batches
    assert spends == [True] * batches  # one executemany per batch, whatever its proofs
    assert batches < len(proofs)
    async with db.read() as session:
        keys = set((await session.scalars(select(UsedJti.key))).all())
        added = set((await session.scalars(select(Agency.id).where(Agency.id.like("by-%")))).all())
    assert keys == {"dpop:spent-before", "dpop:fresh", "dpop:twice"}
    assert added == {"by-fresh", "by-twice-1"}


async def test_certificate_bound_calls_in_a_batch_check_their_agency_and_spend_nothing(
    db: Database,
) -> None:
    """A batch mixing DPoP proofs and certificate-bound calls (no proof): each outcome lands
    on its own act, in order; a certificate-bound call of a suspended agency fails alone and
    is not run; only the proofs reach the replay store."""
    committer = GroupCommitter(db)
    await committer.run(lambda s: _add(s, "spender"))
    await committer.run(lambda s: _suspended(s, "suspended"))
    ran: list[str] = []

    def act(name: str) -> Any:
        async def record(_session: AsyncSession) -> str:
            ran.append(name)
            return name

        return record

    calls = {
        "proof": _proof("p1"),
        "certificate": _proof(None),
        "suspended-certificate": _proof(None, "suspended"),
        "unknown-certificate": _proof(None, "nobody"),
        "proof-2": _proof("p2"),
    }
    outcomes = await asyncio.gather(
        *(committer.run(act(name), spend=call) for name, call in calls.items()),
        return_exceptions=True,
    )
    assert outcomes[0] == "proof" and outcomes[1] == "certificate" and outcomes[4] == "proof-2"
    assert [o.outcome for o in outcomes[2:4] if isinstance(o, Unspent)] == [
        "suspended",
        "suspended",
    ]
    assert sorted(ran) == ["certificate", "proof", "proof-2"]
    async with db.read() as session:
        keys = set((await session.scalars(select(UsedJti.key))).all())
    assert keys == {"dpop:p1", "dpop:p2"}


async def test_an_isolated_act_cannot_hand_its_proof_over(db: Database) -> None:
    """A write spends its proof inside its own savepoint, never in the batch's statement."""
    with pytest.raises(ValueError, match="isolated"):
        await GroupCommitter(db).run(_nothing, isolated=True, spend=_proof("x"))


async def _nothing(_session: AsyncSession) -> None:
    return None


async def _suspended(session: AsyncSession, agency_id: str) -> None:
    agency = _agency(agency_id)
    agency.status = AgencyStatus.SUSPENDED
    session.add(agency)


async def test_a_cancelled_leader_holds_the_turn_until_its_batch_has_committed(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader's request is cancelled while its batch runs: the batch still commits, no other
    batch starts meanwhile (one at a time), and the follower whose act was in it gets its result,
    not an error for an act that committed."""
    committer = GroupCommitter(db)
    batches: list[int] = []
    commit = GroupCommitter._commit

    def counted(self: GroupCommitter, batch: list[Any]) -> Any:
        batches.append(len(batch))  # when a batch is taken, before it runs
        return commit(self, batch)

    monkeypatch.setattr(GroupCommitter, "_commit", counted)
    first_go, a_running, a_go = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def first(session: AsyncSession) -> str:
        await first_go.wait()
        await _add(session, "agency-first")
        return "first"

    async def slow_a(session: AsyncSession) -> str:
        await _add(session, "agency-a")
        a_running.set()
        await a_go.wait()
        return "a"

    async def b(session: AsyncSession) -> str:
        await _add(session, "agency-b")
        return "b"

    leader = asyncio.create_task(committer.run(first))
    await asyncio.sleep(0)  # the first act takes the turn
    follower_a = asyncio.create_task(committer.run(slow_a))
    follower_b = asyncio.create_task(committer.run(b))
    await asyncio.sleep(0)  # both queue behind it
    first_go.set()
    assert await leader == "first"
    await a_running.wait()  # A leads the batch [A, B], which is running
    follower_a.cancel()
    for _ in range(20):  # let the cancellation, and anything it lets run, run
        await asyncio.sleep(0)
    assert batches == [1, 2]  # no batch taken while A's is still running
    a_go.set()
    assert await follower_b == "b"
    with pytest.raises(asyncio.CancelledError):
        await follower_a
    assert batches == [1, 2]
    assert await _count(db) == 3  # A's act committed with B's, although A's caller went away


async def test_an_act_whose_caller_went_away_before_its_turn_is_not_run(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A request cancelled while it waits for its turn (the client disconnected): its act is
    not run when the next batch is taken (the client retries under its Idempotency-Key), the
    others' are, and nothing is left for asyncio to report as an unretrieved exception (whose
    text, for a database error, holds the statement's parameters)."""
    committer = GroupCommitter(db)
    go = asyncio.Event()
    ran: list[str] = []

    async def first(session: AsyncSession) -> str:
        await go.wait()
        await _add(session, "agency-first")
        return "first"

    def act(name: str) -> Callable[[AsyncSession], Awaitable[str]]:
        async def run(session: AsyncSession) -> str:
            ran.append(name)
            await _add(session, f"agency-{name}")
            return name

        return run

    leader = asyncio.create_task(committer.run(first))
    await asyncio.sleep(0)
    gone = asyncio.create_task(committer.run(act("gone")))
    stays = asyncio.create_task(committer.run(act("stays")))
    await asyncio.sleep(0)  # both wait for their turn behind the leader's batch
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    go.set()
    assert await leader == "first" and await stays == "stays"
    assert ran == ["stays"]
    assert await _count(db) == 2
    gc.collect()
    assert "never retrieved" not in caplog.text


async def test_an_act_alone_commits_in_a_batch_of_its_own_after_the_acts_before_it(
    db: Database,
) -> None:
    """Acts queued together, one of them alone (an RA change, an erasure): the acts queued
    before it commit first, in their own batch, and it sees what they stored; it shares its
    transaction with no other act; the acts queued after it commit after it."""
    committer = GroupCommitter(db)
    transactions: dict[str, int] = {}
    seen_by_alone: list[int] = []

    def adder(name: str) -> Any:
        async def act(session: AsyncSession) -> str:
            transactions[name] = committer.batches  # the batches committed before this one
            session.add(_agency(name))
            return name

        return act

    async def alone(session: AsyncSession) -> str:
        transactions["alone"] = committer.batches
        seen_by_alone.append(
            int(await session.scalar(select(func.count()).select_from(Agency)) or 0)
        )
        return "alone"

    hold = asyncio.Lock()
    await hold.acquire()

    async def blocker(session: AsyncSession) -> str:  # keeps the others queued behind it
        async with hold:
            return "blocker"

    first = asyncio.ensure_future(committer.run(blocker))
    await asyncio.sleep(0.05)
    before = [asyncio.ensure_future(committer.run(adder(f"before-{n}"))) for n in range(3)]
    lone = asyncio.ensure_future(committer.run(alone, alone=True))
    after = [asyncio.ensure_future(committer.run(adder(f"after-{n}"))) for n in range(3)]
    await asyncio.sleep(0.05)
    hold.release()
    await asyncio.gather(first, *before, lone, *after)
    assert seen_by_alone == [3]  # the three queued before it, committed; none queued after
    # the blocker's batch, then the three before, then it, then the three after
    assert [transactions[name] for name in ("before-0", "before-1", "before-2")] == [1, 1, 1]
    assert transactions["alone"] == 2
    assert [transactions[name] for name in ("after-0", "after-1", "after-2")] == [3, 3, 3]
    assert await _count(db) == 6


async def _deadlocking_replicas(
    postgres_url: str,
) -> tuple[list[Any], dict[str, int], list[dict[str, Any]]]:
    """Two replicas' committers, each with one act that locks the agencies x and y in the
    opposite order, the first time waiting until the other holds its first: a deadlock, which
    PostgreSQL breaks by aborting one transaction. What each run gave (or raised), how many
    times each act ran, and the log lines."""
    from sqlalchemy import text
    from structlog.testing import capture_logs

    one, two = Database(postgres_url), Database(postgres_url)
    try:
        async with one.write() as session:
            session.add_all([_agency("x"), _agency("y")])
        holding = {"one": asyncio.Event(), "two": asyncio.Event()}
        runs = {"one": 0, "two": 0}

        def locking(name: str, other: str, first: str, then: str) -> Callable[..., Awaitable[str]]:
            async def act(session: AsyncSession) -> str:
                runs[name] += 1
                lock = text("SELECT id FROM agencies WHERE id = :id FOR UPDATE")
                await session.execute(lock, {"id": first})
                if runs[name] == 1:
                    holding[name].set()
                    await holding[other].wait()
                await session.execute(lock, {"id": then})
                return name

            return act

        with capture_logs() as logs:
            results = await asyncio.gather(
                GroupCommitter(one).run(locking("one", "two", "x", "y")),
                GroupCommitter(two).run(locking("two", "one", "y", "x")),
                return_exceptions=True,
            )
        return list(results), runs, logs
    finally:
        await one.dispose()
        await two.dispose()


async def test_a_batch_aborted_by_a_deadlock_with_another_replica_runs_again(
    postgres_url: str,
) -> None:
    """PostgreSQL, two replicas: the batch the database aborts to break the deadlock runs
    again once the other has committed, and both acts stand; the conflict is logged by its
    SQLSTATE, no content. (That batch failed: every act in it answered 503.)"""
    results, runs, logs = await _deadlocking_replicas(postgres_url)
    assert results == ["one", "two"]
    assert sorted(runs.values()) == [1, 2]  # the aborted act ran a second time
    [conflict] = [line for line in logs if line["event"] == "group_commit_conflict"]
    assert (conflict["sqlstate"], conflict["run"], conflict["acts"]) == ("40P01", 1, 1)


async def test_a_batch_aborted_more_often_than_it_may_run_fails_unavailable(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one run allowed, the aborted batch is not run again: its act fails with
    AuditUnavailable (503), nothing of it stored, and the other act stands."""
    from gateway.flow import group_commit

    monkeypatch.setattr(group_commit, "RETRIES", 1)
    results, runs, logs = await _deadlocking_replicas(postgres_url)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], errors.AuditUnavailable)
    assert [r for r in results if not isinstance(r, BaseException)] in (["one"], ["two"])
    assert runs == {"one": 1, "two": 1}
    assert not [line for line in logs if line["event"] == "group_commit_conflict"]
