"""Group commit: the small writes of many concurrent requests in one transaction.

Every request writes a little: the DPoP proof's ``jti`` spent in the replay store, one audit
entry, perhaps a record, an outbox row and an idempotency key. Committed one transaction each,
the writers queue on the database's write lock (SQLite has one writer; PostgreSQL pays a round
trip and a WAL flush per commit), and under load the queue is the throughput. Here a request
hands its act to :meth:`GroupCommitter.run` and waits: the first waiter becomes the leader,
takes every act queued so far, runs them in one write transaction and commits once; the others
find their result ready when their turn comes. At low load each act commits alone, with no
added delay; under load a batch takes whatever arrived while the previous one committed.

Isolation: an act that may fail on its own (a replayed ``jti``, an idempotency key already
taken) runs in a savepoint (``isolated=True``), so its failure rolls back only its own writes
and is raised to its own caller; the rest of the batch commits. The audit entries of the acts
that succeeded are inserted together, in one statement, just before the commit. If the
transaction itself
cannot commit (disk full, read-only, connection lost), every act of the batch fails with
:class:`gateway.errors.AuditUnavailable` and nothing of any of them is stored: no audit, no
disclosure, for each of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import errors
from gateway.audit.commit import Audited
from gateway.flow.audit import AuditEvent, record_many
from gateway.store import Database

__all__ = ["MAX_BATCH", "GroupCommitter"]

T = TypeVar("T")
#: Most acts in one transaction (a bound on how long one commit holds the write lock).
MAX_BATCH = 256


@dataclass(slots=True)
class _Item(Generic[T]):
    act: Callable[[AsyncSession], Awaitable[T]]
    isolated: bool
    future: asyncio.Future[T]


@dataclass(frozen=True, slots=True)
class _Entered(Generic[T]):
    """What an audited act hands the batch: its result, and its entry to insert with the rest."""

    result: T
    event: AuditEvent


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
        self, act: Callable[[AsyncSession], Awaitable[T]], *, isolated: bool = False
    ) -> T:
        """Run ``act`` in a shared write transaction; its result once that has committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(act, isolated, future))
        async with self._lock:
            if not future.done():
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                # Shielded: if the leader's request is cancelled, the batch (other requests'
                # acts) still commits, or fails, as one.
                await asyncio.shield(self._commit(batch))
        return future.result()

    async def audited(
        self, act: Callable[[AsyncSession], Awaitable[Audited[T]]], *, isolated: bool = True
    ) -> T:
        """``commit_audited`` grouped: the act and its audit entry commit together or not at all."""

        async def entered(session: AsyncSession) -> _Entered[T]:
            audited = await act(session)
            return _Entered(audited.result, audited.event)

        result = await self.run(entered, isolated=isolated)
        return result.result

    async def _commit(self, batch: list[_Item[Any]]) -> None:
        results: list[tuple[_Item[Any], Any, BaseException | None]] = []
        culprit: _Item[Any] | None = None
        try:
            async with self.db.write() as session:
                for item in batch:
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
                entries = [v.event for _, v, e in results if e is None and isinstance(v, _Entered)]
                await record_many(session, entries)
        except errors.StoreUnavailable as exc:
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
            await self._commit([item for item in batch if item is not culprit])
            return
        except BaseException:  # the leader was cancelled: nothing was committed
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


def _fail(item: _Item[Any], exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)
