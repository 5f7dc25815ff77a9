"""The sequencer: gives new audit entries their place in the Merkle tree and signs a checkpoint.

Acts insert their audit rows unsequenced (``seq`` NULL) in their own transactions, so writers
never contend for the tail of the log. The sequencer then, in ONE transaction:

1. takes the log's lock: ``pg_advisory_xact_lock`` on PostgreSQL (held to commit, so sequencers
   on several replicas run one after another), the writer's ``BEGIN IMMEDIATE`` on SQLite (one
   writer per database file, across processes);
2. reads the latest checkpoint and resumes the tree from its stored frontier (O(log n) hashes);
3. checks that exactly ``tree_size`` entries are sequenced (a log sequenced beyond its signed
   head is refused, never papered over);
4. takes the unsequenced rows in insertion order (``id``), up to a batch, gives them the next
   contiguous ``seq`` values and their leaf hashes from the canonical entry;
5. signs the new tree head as a C2SP checkpoint with the ``checkpoint-signing`` key and stores
   it with the new frontier.

A crash anywhere rolls the whole step back; the next run starts again from the last checkpoint.
Because the step is serialised and reads the head under the lock, two sequencers can never assign
the same ``seq`` or fork the tree (the unique ``seq`` and the checkpoint's primary key are a
second line). `run_sequencer` repeats the step in the background of the app.

On SQLite every worker process of a machine shares one database file and one write lock, and a
sequencer step holds that lock while it hashes and signs: the other workers' commits wait on
SQLite's busy handler meanwhile. So there, only the worker holding :class:`SequencerTurn` (an
exclusive ``flock`` on a file beside the database, released by the operating system when the
process ends, so another worker takes over within an interval) runs the background sequencer.
PostgreSQL sequencers do not block the requests' commits and keep taking turns by the advisory
lock alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

from sqlalchemy import Table, bindparam, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.canonical import AUDIT_ENTRY_FIELDS, entry_leaf_hash
from gateway.audit.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from gateway.audit.errors import AuditError
from gateway.audit.log import entry_fields, latest_checkpoint
from gateway.audit.merkle import EMPTY_ROOT, Frontier
from gateway.errors import AuditLogInconsistent, StoreUnavailable
from gateway.logs import get_logger
from gateway.store import Database
from gateway.store.direct import Direct
from gateway.store.models import AuditCheckpoint, AuditEntry
from keys import KeysError

__all__ = [
    "ADVISORY_LOCK_KEY",
    "SequenceResult",
    "SequencerTurn",
    "run_sequencer",
    "sequence",
    "sequence_once",
    "sequencer_turn",
]

#: The PostgreSQL advisory lock every sequencer takes ("mappaaud" in ASCII, as a bigint).
ADVISORY_LOCK_KEY: Final = int.from_bytes(b"mappaaud", "big")

_COLUMNS: Final = (AuditEntry.id, *(getattr(AuditEntry, name) for name in AUDIT_ENTRY_FIELDS))
_ENTRIES: Final = cast(Table, AuditEntry.__table__)
#: Each new entry's place and leaf hash, one executemany per step (a few thousand rows a
#: second under load: below the ORM's bulk update, see gateway.store.direct).
_PLACE: Final = Direct(
    update(_ENTRIES)
    .where(_ENTRIES.c.id == bindparam("row_id"))
    .values(seq=bindparam("seq"), leaf_hash=bindparam("leaf_hash"))
)
#: Entries hashed between two yields to the event loop (a step of thousands of entries would
#: otherwise hold every request of the worker for tens of milliseconds).
_HASHED_PER_YIELD: Final = 200

log = get_logger("gateway.audit.sequencer")


@dataclass(frozen=True, slots=True)
class SequenceResult:
    """One sequencer step: the tree grew from ``previous_size`` to ``tree_size``."""

    previous_size: int
    tree_size: int
    root_hash: bytes
    note: str | None
    """The checkpoint signed in this step, or None when there was nothing to integrate."""

    @property
    def appended(self) -> int:
        return self.tree_size - self.previous_size


async def _lock(session: AsyncSession, db: Database) -> None:
    if not db.is_sqlite:
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
        )
    # SQLite: db.write() began with BEGIN IMMEDIATE, the one write lock of the file.


def _frontier(checkpoint: AuditCheckpoint | None) -> Frontier:
    if checkpoint is None:
        return Frontier()
    try:
        frontier = Frontier(
            checkpoint.tree_size, tuple(bytes.fromhex(h) for h in checkpoint.frontier)
        )
    except (ValueError, TypeError) as exc:
        raise AuditLogInconsistent(diagnostics={"reason": "frontier_malformed"}) from exc
    if frontier.root().hex() != checkpoint.root_hash:
        raise AuditLogInconsistent(diagnostics={"reason": "frontier_root_mismatch"})
    return frontier


async def sequence_once(
    db: Database,
    signer: NoteSigner,
    origin: str,
    *,
    batch: int = 5000,
    now: dt.datetime | None = None,
) -> SequenceResult:
    """Integrate up to ``batch`` unsequenced entries and sign the new head, in one transaction.

    The first run on an empty log signs the empty tree, so a checkpoint always exists after it.
    Raises `AuditLogInconsistent` when the stored log does not match its latest checkpoint, and
    `StoreUnavailable` when the database cannot be written.
    """
    moment = now or dt.datetime.now(dt.UTC)
    async with db.write() as session:
        await _lock(session, db)
        latest = await latest_checkpoint(session)
        frontier = _frontier(latest)
        highest = (await session.execute(select(func.max(AuditEntry.seq)))).scalar_one()
        if highest != (frontier.size - 1 if frontier.size else None):
            raise AuditLogInconsistent(
                diagnostics={"reason": "sequenced_beyond_checkpoint", "tree_size": frontier.size}
            )
        rows = (
            await session.execute(
                select(*_COLUMNS)
                .where(AuditEntry.seq.is_(None))
                .order_by(AuditEntry.id)
                .limit(batch)
            )
        ).all()
        if not rows and latest is not None:
            return SequenceResult(frontier.size, frontier.size, frontier.root(), None)
        previous = frontier.size
        updates: list[dict[str, object]] = []
        leaves: list[bytes] = []
        for offset, row in enumerate(rows):
            seq = previous + offset
            try:
                leaf = entry_leaf_hash(entry_fields(row, seq=seq))
            except AuditError as exc:
                raise AuditLogInconsistent(
                    diagnostics={"reason": exc.code, "entry_row": row.id}
                ) from exc
            leaves.append(leaf)
            updates.append({"row_id": row.id, "seq": seq, "leaf_hash": leaf.hex()})
            if offset % _HASHED_PER_YIELD == _HASHED_PER_YIELD - 1:
                await asyncio.sleep(0)
        await _PLACE.many(session, updates)
        frontier = frontier.extend(leaves)
        root = frontier.root() if frontier.size else EMPTY_ROOT
        note = sign_checkpoint(Checkpoint(origin, frontier.size, root), signer)
        session.add(
            AuditCheckpoint(
                tree_size=frontier.size,
                root_hash=root.hex(),
                note=note,
                frontier=[h.hex() for h in frontier.hashes],
                created_at=moment,
            )
        )
    return SequenceResult(previous, frontier.size, root, note)


async def sequence(
    db: Database, signer: NoteSigner, origin: str, *, batch: int = 5000
) -> SequenceResult:
    """Run steps until no unsequenced entry is left; the result spans all of them."""
    first = await sequence_once(db, signer, origin, batch=batch)
    last = first
    while last.appended == batch:
        last = await sequence_once(db, signer, origin, batch=batch)
    note = last.note if last.note is not None else first.note
    return SequenceResult(first.previous_size, last.tree_size, last.root_hash, note)


class SequencerTurn:
    """Whether this process is the one on this machine that runs the background sequencer.

    An exclusive, non-blocking ``flock`` on ``path``, taken once and then held for the life of
    the process (or until :meth:`release`); a process that does not get it asks again at its
    next interval, so when the holder ends another worker takes over."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def mine(self) -> bool:
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return True  # cannot coordinate: sequence anyway (the write lock keeps it safe)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


def sequencer_turn(db: Database) -> SequencerTurn | None:
    """The turn for a SQLite database file (beside it); None for PostgreSQL or in memory."""
    if not db.is_sqlite:
        return None
    database = make_url(db.url).database
    if not database or database == ":memory:":
        return None
    return SequencerTurn(Path(database).with_name(Path(database).name + ".sequencer.lock"))


async def run_sequencer(
    db: Database,
    signer: NoteSigner,
    origin: str,
    *,
    interval: float,
    batch: int,
    stop: asyncio.Event,
    turn: SequencerTurn | None = None,
) -> None:
    """Sequence every ``interval`` seconds until ``stop`` is set; failures are logged, retried.

    With a ``turn``, only while this process holds it (one sequencer per machine on SQLite)."""
    try:
        while not stop.is_set():
            try:
                if turn is None or turn.mine():
                    result = await sequence(db, signer, origin, batch=batch)
                    if result.appended:
                        log.debug(
                            "audit_sequenced", appended=result.appended, size=result.tree_size
                        )
            except (StoreUnavailable, AuditLogInconsistent, KeysError) as exc:
                code = getattr(exc, "code", type(exc).__name__)
                log.warning("audit_sequencer_failed", code=code)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
    finally:
        if turn is not None:
            turn.release()
