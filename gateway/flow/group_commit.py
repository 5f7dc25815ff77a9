"""Group commit: the small writes of many concurrent requests in one transaction.

Every request writes a little: the DPoP proof's ``jti`` spent in the replay store, one audit
entry, perhaps a record, an outbox row and an idempotency key. Committed one transaction each,
the writers queue on the database's write lock (SQLite has one writer; PostgreSQL pays a round
trip and a WAL flush per commit), and under load the queue is the throughput. Here a request
hands its act to :meth:`GroupCommitter.run` and waits: the first waiter becomes the leader,
takes every act queued so far, runs them in one write transaction and commits once; the others
find their result ready when their turn comes. At low load each act commits alone, with no
added delay; under load a batch takes whatever arrived while the previous one committed.

Proofs: a call's DPoP proof is spent in the transaction that commits its answer. A call that
writes nothing else of its own (a read, whoami, a refusal) hands its proof over with its act
(``spend=``): the leader spends every such proof of the batch in one statement
(:meth:`Spend.spend_all`, an executemany), and an act whose proof was replayed, or whose agency
is suspended, fails alone with :class:`Unspent`, its act never run. A write spends its own,
inside its savepoint.

Isolation: an act that may fail on its own (a replayed ``jti``, an idempotency key already
taken) runs in a savepoint (``isolated=True``), so its failure rolls back only its own writes
and is raised to its own caller; the rest of the batch commits. The audit entries of the acts
that succeeded are inserted together, in one statement, just before the commit. If the
transaction itself
cannot commit (disk full, read-only, connection lost), every act of the batch fails with
:class:`gateway.errors.AuditUnavailable` and nothing of any of them is stored: no audit, no
disclosure, for each of them.

Transient conflicts: two replicas' batches that lock rows in opposite orders deadlock, and
PostgreSQL aborts one of them (``40P01``; a serialization failure, ``40001``, likewise). That
batch is not failed: it runs again, after a short random wait, up to :data:`RETRIES` times in
all, so its acts wait a little longer instead of answering 503. Acts must bear being run again
(they already are, when one act of a batch fails and the rest run without it, which counts as
a run too): all they do is in the transaction, which was rolled back, but for a log line an act
writes (such as ``owner_notification_held``), which is then written again.

Alone: an act that must see every earlier act committed, and that no later act may share a
transaction with (``alone=True``: the Responsible Authority's changes to a nominal, an erasure
among them), commits in a batch of its own, after the acts queued before it. An erasure thus
finds, in the audit log, every agency an earlier act disclosed the nominal to (their entries are
inserted as their batch commits, not as each act runs), and a change that locks its nominal for
update never upgrades a lock an earlier act of its batch took (two such batches on two replicas
would deadlock).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import errors
from gateway.audit.commit import Audited
from gateway.flow.audit import entry_row, record_rows
from gateway.logs import get_logger
from gateway.store import Database

__all__ = ["MAX_BATCH", "RETRIES", "RETRY_WAIT", "GroupCommitter", "Spend", "Unspent"]

T = TypeVar("T")
#: Most acts in one transaction (a bound on how long one commit holds the write lock).
MAX_BATCH = 256
#: How many times in all a batch runs when the database aborts it for a transient conflict.
RETRIES = 3
#: The longest wait (seconds) before a batch's second run; doubled before each later one.
RETRY_WAIT = 0.05
#: SQLSTATEs of a transaction aborted for a conflict with another (deadlock, serialization).
_TRANSIENT: Final = frozenset({"40P01", "40001"})

log = get_logger("gateway.flow")


class Spend(Protocol):
    """A proof to spend with an act (gateway.flow.authenticate.PendingSpend)."""

    @classmethod
    async def spend_all(cls, session: AsyncSession, spends: Sequence[Any]) -> list[str]:
        """Each proof's outcome, in order: ``spent``, or why not."""
        ...


class Unspent(Exception):
    """The act's proof could not be spent (``outcome``: replayed, suspended): the act did not
    run, nothing of it stands."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


@dataclass(slots=True, eq=False)  # one per act: compared (and hashed) by identity
class _Item(Generic[T]):
    act: Callable[[AsyncSession], Awaitable[T]]
    isolated: bool
    future: asyncio.Future[T]
    spend: Spend | None = None
    alone: bool = False


@dataclass(frozen=True, slots=True)
class _Entered(Generic[T]):
    """What an audited act hands the batch: its result, and its entry's row to insert with the
    rest (made in the act, so that an entry that cannot be recorded fails the act alone)."""

    result: T
    row: dict[str, Any]


@dataclass(slots=True)
class GroupCommitter:
    """Commits queued acts together; one per process and database."""

    db: Database
    max_batch: int = MAX_BATCH
    _pending: list[_Item[Any]] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Batches committed and acts in them (for the benchmarks and the metrics).
    batches: int = 0
    acts: int = 0

    async def run(
        self,
        act: Callable[[AsyncSession], Awaitable[T]],
        *,
        isolated: bool = False,
        spend: Spend | None = None,
        alone: bool = False,
    ) -> T:
        """Run ``act`` in a shared write transaction (its own, ``alone``); its result once that
        has committed.

        With ``spend``, the act runs only if its proof is spent first (:class:`Unspent` if
        not); only an act that is not ``isolated`` may hand its proof over."""
        if spend is not None and isolated:
            raise ValueError("an isolated act spends its own proof, in its savepoint")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(act, isolated, future, spend, alone))
        try:
            async with self._lock:
                while not future.done():  # its batch may come after others (an act alone)
                    await _finish(asyncio.ensure_future(self._commit(self._take())))
        except asyncio.CancelledError:
            # The caller went away while waiting for its turn: an act not yet taken into a batch
            # is not run (the caller retries with its Idempotency-Key); an outcome already set
            # is taken, as nobody else will (asyncio would log an unretrieved exception's text,
            # which for a database error holds the statement's parameters).
            if not future.cancel() and not future.cancelled():
                future.exception()
            raise
        return await future  # done by now: its batch has finished, under the lock

    def _take(self) -> list[_Item[Any]]:
        """The next batch, from the head of the queue: up to ``max_batch`` acts, stopping before
        an act that commits alone, or that act by itself."""
        # acts whose caller went away are never run: they neither split nor fill a batch
        self._pending = [item for item in self._pending if not item.future.cancelled()]
        count = min(len(self._pending), self.max_batch)
        for index, item in enumerate(self._pending[:count]):
            if item.alone:
                count = index or 1
                break
        batch = self._pending[:count]
        del self._pending[:count]
        return batch

    async def audited(
        self,
        act: Callable[[AsyncSession], Awaitable[Audited[T]]],
        *,
        isolated: bool = True,
        spend: Spend | None = None,
        alone: bool = False,
    ) -> T:
        """``commit_audited`` grouped: the act and its audit entry commit together or not at all."""

        async def entered(session: AsyncSession) -> _Entered[T]:
            audited = await act(session)
            return _Entered(audited.result, entry_row(audited.event))

        result = await self.run(entered, isolated=isolated, spend=spend, alone=alone)
        return result.result

    async def _commit(self, batch: list[_Item[Any]], run: int = 1) -> None:
        results: list[tuple[_Item[Any], Any, BaseException | None]] = []
        culprit: _Item[Any] | None = None
        try:
            async with self.db.write() as session:
                batch = [item for item in batch if not item.future.cancelled()]
                unspent = await _spend(session, batch)
                for item in batch:
                    if item in unspent:
                        results.append((item, None, Unspent(unspent[item])))
                        continue
                    if not item.isolated:
                        try:
                            results.append((item, await item.act(session), None))
                        except Exception:
                            culprit = item  # its writes cannot be undone alone: roll back all
                            raise
                        continue
                    try:
                        async with session.begin_nested():
                            value = await item.act(session)
                    except Exception as exc:
                        if isinstance(exc, DBAPIError) and not isinstance(exc, IntegrityError):
                            raise  # the store failed, not this act: the batch fails
                        results.append((item, None, exc))  # this act alone fails
                    else:
                        results.append((item, value, None))
                # The entries of the acts that stand (a failed isolated act's is not among them).
                entries = [v.row for _, v, e in results if e is None and isinstance(v, _Entered)]
                await record_rows(session, entries)
        except errors.StoreUnavailable as exc:
            conflict = _transient(exc)
            if conflict is not None and run < RETRIES:
                # nothing of the batch stands: run it again once the other transaction is done
                log.warning("group_commit_conflict", sqlstate=conflict, run=run, acts=len(batch))
                await asyncio.sleep(random.uniform(0, RETRY_WAIT * 2 ** (run - 1)))  # noqa: S311
                await self._commit(batch, run + 1)
                return
            unavailable = errors.AuditUnavailable(diagnostics=exc.diagnostics)
            for item in batch:
                _fail(item, unavailable)
            return
        except Exception as exc:
            if culprit is None:  # a failure of the store or a bug: nothing was committed
                for item in batch:
                    _fail(item, exc)
                return
            _fail(culprit, exc)
            await self._commit([item for item in batch if item is not culprit], run)
            return
        except BaseException:  # this task was cancelled (the loop closing): nothing committed
            for item in batch:
                _fail(item, errors.AuditUnavailable())
            raise
        self.batches += 1
        self.acts += len(batch)
        for item, value, error in results:
            if error is not None:
                _fail(item, error)
            elif not item.future.done():
                item.future.set_result(value)


def _transient(exc: BaseException) -> str | None:
    """The SQLSTATE of a transient conflict that aborted the transaction, if ``exc`` is one."""
    cause = exc.__cause__
    state = getattr(getattr(cause, "orig", None), "sqlstate", None)
    return state if state in _TRANSIENT else None


async def _spend(session: AsyncSession, batch: list[_Item[Any]]) -> dict[_Item[Any], str]:
    """Spend the proofs the batch's acts handed over, in one statement; the acts whose proof
    was not spent, and why."""
    spending = [(item, item.spend) for item in batch if item.spend is not None]
    if not spending:
        return {}
    spends = [spend for _, spend in spending]
    outcomes = await type(spends[0]).spend_all(session, spends)
    return {
        item: outcome
        for (item, _), outcome in zip(spending, outcomes, strict=True)
        if outcome != "spent"
    }


async def _finish(commit: asyncio.Future[None]) -> None:
    """Wait for a batch's commit. If the leader's request is cancelled meanwhile, the batch
    (other requests' acts) still commits, or fails, as one, and the leader keeps the turn until
    it has: a follower whose act is in it must find its result there, and no other batch may
    run beside it. The cancellation is raised once the batch has finished."""
    try:
        await asyncio.shield(commit)
    except asyncio.CancelledError:
        while not commit.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait((commit,))
        raise


def _fail(item: _Item[Any], exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)
