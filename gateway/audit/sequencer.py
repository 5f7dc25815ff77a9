"""The sequencer: gives new audit entries their place in the Merkle tree and signs a checkpoint.

Acts insert their audit rows unsequenced (``seq`` NULL) in their own transactions, so writers
never contend for the tail of the log. The sequencer then, in ONE transaction:

1. takes the log's lock: ``pg_advisory_xact_lock`` on PostgreSQL (held to commit, so sequencers
   on several replicas run one after another), the writer's ``BEGIN IMMEDIATE`` on SQLite (one
   writer per database file, across processes);
2. reads the latest checkpoint and resumes the tree from its stored frontier (O(log n) hashes),
   but only once it has verified the row's signed note with the log's verifier keys, found the
   note's tree size and root equal to the row's columns, and the frontier hashing to that root:
   the columns are plain data that anyone who can write the database can rewrite, the signature
   is not;
3. checks that exactly ``tree_size`` entries are sequenced (a log sequenced beyond its signed
   head is refused, never papered over), and re-hashes the entries at the right edge of the tree
   it is about to build on (the frontier's last subtree when it spans at most `EDGE_LEAVES`
   entries, else the last entry) against their stored leaf hashes and the frontier;
4. holds the database's head to the checkpoint witness (`gateway.audit.witness`), when it has
   one: the last checkpoint this gateway signed, kept in a file outside the database. The signed
   head must be that one or extend it (an RFC 9162 consistency proof); a head *behind* it means
   checkpoint rows were deleted or an old backup restored;
5. takes the unsequenced rows in insertion order (``id``), up to a batch, gives them the next
   contiguous ``seq`` values and their leaf hashes from the canonical entry;
6. signs the new tree head as a C2SP checkpoint with the ``checkpoint-signing`` key and stores
   it with the new frontier; after the commit, writes it to the witness file.

Any check that fails raises `AuditLogInconsistent` with a ``reason`` code (sizes and positions
only, never entry content) and nothing is signed: the log stays at its last good checkpoint, new
entries wait unsequenced (so the audit-lag metrics grow), and the background loop logs
``audit_integrity_alert`` at error level and counts it in `SequencerHealth` (exposed on
``/metrics``). The checks see what the database shows; what they cannot see is in
docs/ig-guide.md ("What the gateway itself checks").

With nothing new to integrate, a step only checks the latest checkpoint, and re-signs its tree
head with the current key when a key rotation left it signed by the previous one only (the row
keeps its size and root; only the note changes), so that retiring the old key never leaves the
log with a head nobody can verify.

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
import dataclasses
import datetime as dt
import fcntl
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from sqlalchemy import Row, Table, bindparam, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.canonical import AUDIT_ENTRY_FIELDS, entry_leaf_hash
from gateway.audit.checkpoint import (
    Checkpoint,
    CheckpointVerifier,
    NoteSigner,
    VerifierKey,
    parse_signed_note,
    sign_checkpoint,
)
from gateway.audit.errors import AuditError, CheckpointError
from gateway.audit.log import consistency_proof, entry_fields, latest_checkpoint
from gateway.audit.merkle import EMPTY_ROOT, Frontier, MerkleTree, verify_consistency
from gateway.audit.signer import RingNoteSigner
from gateway.audit.subtrees import SubtreeCache
from gateway.audit.witness import CheckpointWitness
from gateway.errors import AuditLogInconsistent, StoreUnavailable
from gateway.logs import get_logger
from gateway.store import Database
from gateway.store.direct import Direct
from gateway.store.models import AuditCheckpoint, AuditEntry
from keys import KeysError, ed25519_verify

__all__ = [
    "ADVISORY_LOCK_KEY",
    "ALERT_NUMBERS",
    "EDGE_LEAVES",
    "SequenceResult",
    "SequencerHealth",
    "SequencerTurn",
    "check_witnessed",
    "run_sequencer",
    "sequence",
    "sequence_once",
    "sequencer_turn",
]

#: The PostgreSQL advisory lock every sequencer takes ("mappaaud" in ASCII, as a bigint).
ADVISORY_LOCK_KEY: Final = int.from_bytes(b"mappaaud", "big")

#: The right edge of the tree is re-hashed from the entries' content before each extension: the
#: frontier's last (smallest) subtree when it spans at most this many entries, else the last
#: entry alone. A few entries on average, so a step stays cheap.
EDGE_LEAVES: Final = 64

_FIELDS: Final = tuple(getattr(AuditEntry, name) for name in AUDIT_ENTRY_FIELDS)
_COLUMNS: Final = (AuditEntry.id, *_FIELDS)
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
    witnessed: bool | None = None
    """Whether that checkpoint was written to the witness file (None: none to write, or no
    witness)."""

    @property
    def appended(self) -> int:
        return self.tree_size - self.previous_size


async def _lock(session: AsyncSession, db: Database) -> None:
    if not db.is_sqlite:
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
        )
    # SQLite: db.write() began with BEGIN IMMEDIATE, the one write lock of the file.


@dataclass
class SequencerHealth:
    """What the background sequencer of this process last found, for ``/metrics``."""

    integrity_refusals: int = 0
    """Steps refused because the log failed a check (`AuditLogInconsistent`), since start."""
    alert: str | None = None
    """The reason code of the last step if it was refused so; None after a step that passed."""
    witness_unwritable: bool = False
    """Whether the last checkpoint signed could not be written to the witness file."""


def _inconsistent(reason: str, **diagnostics: object) -> AuditLogInconsistent:
    return AuditLogInconsistent(diagnostics={"reason": reason, **diagnostics})


def _own_verifier(signer: NoteSigner, origin: str, *, reread: bool = False) -> CheckpointVerifier:
    """Without an explicit verifier: every usable key of the signer's ring, or its one key."""
    if isinstance(signer, RingNoteSigner):
        keys = signer.verifier_keys(reread=reread)
    else:
        keys = (VerifierKey(signer.name, signer.public_key),)
    return CheckpointVerifier(keys, ed25519_verify, origin)


def _resume(
    stored: AuditCheckpoint | None, verifier: CheckpointVerifier
) -> tuple[Frontier, Checkpoint | None]:
    """The frontier to extend and the signed checkpoint it reproduces, from the latest row.

    The row's ``note`` must verify, its checkpoint must have the row's ``tree_size`` and
    ``root_hash``, and the stored frontier must hash to that signed root."""
    if stored is None:
        return Frontier(), None
    try:
        signed = verifier.verify(stored.note)
    except CheckpointError as exc:
        raise _inconsistent(
            "checkpoint_unverified", code=exc.code, tree_size=stored.tree_size
        ) from exc
    if signed.size != stored.tree_size or signed.root_hash.hex() != stored.root_hash:
        raise _inconsistent("checkpoint_columns_mismatch", tree_size=stored.tree_size)
    try:
        frontier = Frontier(signed.size, tuple(bytes.fromhex(h) for h in stored.frontier))
    except (ValueError, TypeError) as exc:
        raise _inconsistent("frontier_malformed", tree_size=signed.size) from exc
    if frontier.root() != signed.root_hash:
        raise _inconsistent("frontier_root_mismatch", tree_size=signed.size)
    return frontier, signed


async def _check_edge(session: AsyncSession, frontier: Frontier) -> None:
    """Re-hash the entries at the right edge of the tree from their content: each must match
    its stored leaf hash, and the frontier's last subtree (when it spans at most `EDGE_LEAVES`
    entries) must be their tree head."""
    size = frontier.size
    if size == 0:
        return
    span = size & -size  # the leaves under the frontier's last hash
    whole = span <= EDGE_LEAVES
    start = size - (span if whole else 1)
    rows = (
        await session.execute(
            select(*_FIELDS, AuditEntry.leaf_hash)
            .where(AuditEntry.seq >= start, AuditEntry.seq < size)
            .order_by(AuditEntry.seq)
        )
    ).all()
    if len(rows) != size - start:
        raise _inconsistent("edge_entry_missing", seq=start)
    leaves: list[bytes] = []
    for position, row in enumerate(rows, start=start):
        if row.seq != position:
            raise _inconsistent("edge_entry_missing", seq=position)
        try:
            leaf = entry_leaf_hash(entry_fields(row))
        except AuditError as exc:
            raise _inconsistent("edge_entry_edited", seq=position) from exc
        if row.leaf_hash != leaf.hex():
            raise _inconsistent("edge_entry_edited", seq=position)
        leaves.append(leaf)
    if whole and MerkleTree(leaves).root() != frontier.hashes[-1]:
        raise _inconsistent("edge_frontier_mismatch", seq=start)


async def _check_fresh(session: AsyncSession) -> None:
    """Before the first checkpoint no entry can have a leaf hash: the sequencer sets it in the
    same transaction as the checkpoint that covers it."""
    stray = (
        await session.execute(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.leaf_hash.is_not(None))
        )
    ).scalar_one()
    if stray:
        raise _inconsistent("checkpoints_missing")


async def _check_witness(
    session: AsyncSession,
    witness: CheckpointWitness,
    verifier: CheckpointVerifier,
    signed: Checkpoint | None,
    cache: SubtreeCache | None,
) -> None:
    """The database's signed head must be the witnessed checkpoint, or extend it."""
    try:
        note = witness.read()
    except (OSError, ValueError) as exc:
        raise _inconsistent("witness_unreadable") from exc
    if note is None:
        return  # first use: the file is written after this step
    await check_witnessed(session, note, verifier, signed, cache)


async def check_witnessed(
    session: AsyncSession,
    note: str,
    verifier: CheckpointVerifier,
    signed: Checkpoint | None,
    cache: SubtreeCache | None,
) -> None:
    """The signed head ``signed`` (None: no checkpoint stored) must be the witnessed ``note``,
    or extend it by a consistency proof from the stored leaf hashes. Raises
    `AuditLogInconsistent` with the reason (``witness_unverified``,
    ``checkpoint_behind_witness``, ``witness_fork``, ``witness_inconsistent``)."""
    try:
        seen = verifier.verify(note)
    except CheckpointError as exc:
        raise _inconsistent("witness_unverified", code=exc.code) from exc
    size, root = (signed.size, signed.root_hash) if signed is not None else (0, EMPTY_ROOT)
    if seen.size > size:
        raise _inconsistent("checkpoint_behind_witness", witness_size=seen.size, tree_size=size)
    if seen.size == 0 or seen.size == size:
        if not verify_consistency(seen.size, size, seen.root_hash, root, ()):
            raise _inconsistent("witness_fork", witness_size=seen.size, tree_size=size)
        return
    try:
        proof = await consistency_proof(session, seen.size, size, cache=cache)
    except AuditLogInconsistent as exc:
        raise _inconsistent("witness_inconsistent", witness_size=seen.size, tree_size=size) from exc
    if not verify_consistency(seen.size, size, seen.root_hash, root, proof.path):
        raise _inconsistent("witness_inconsistent", witness_size=seen.size, tree_size=size)


def _resigned(stored: AuditCheckpoint, signed: Checkpoint, signer: NoteSigner) -> str | None:
    """The latest head signed again by the current key, if its note lacks that key's signature."""
    key = VerifierKey(signer.name, signer.public_key)
    names = {(sig.key_name, sig.key_id) for sig in parse_signed_note(stored.note).signatures}
    if (key.name, key.key_id) in names:
        return None
    return sign_checkpoint(signed, signer)


def _witness(witness: CheckpointWitness, note: str) -> bool:
    """Write ``note`` to the witness file; False (logged) when it cannot be written."""
    try:
        witness.record(note)
    except (OSError, CheckpointError) as exc:
        # The checkpoint is committed; the witness lags, and the next step proves consistency
        # from the older one it holds. Without a writable file the protection is off: say so.
        log.warning("audit_checkpoint_witness_unwritable", error=type(exc).__name__)
        return False
    return True


async def sequence_once(
    db: Database,
    signer: NoteSigner,
    origin: str,
    *,
    batch: int = 5000,
    now: dt.datetime | None = None,
    verifier: CheckpointVerifier | None = None,
    witness: CheckpointWitness | None = None,
    cache: SubtreeCache | None = None,
) -> SequenceResult:
    """Integrate up to ``batch`` unsequenced entries and sign the new head, in one transaction.

    The first run on an empty log signs the empty tree, so a checkpoint always exists after it.
    ``verifier`` holds the log's trusted keys (default: every usable key of the signer's ring);
    ``witness`` is the checkpoint witness file, if any, and ``cache`` the process's proof cache
    (for the consistency proof from an older witnessed checkpoint). Raises
    `AuditLogInconsistent` when the stored log does not match its latest signed checkpoint or the
    witness (nothing is signed then), and `StoreUnavailable` when the database cannot be written.
    """
    moment = now or dt.datetime.now(dt.UTC)
    trusted = verifier if verifier is not None else _own_verifier(signer, origin)
    async with db.write() as session:
        await _lock(session, db)
        latest = await latest_checkpoint(session)
        try:
            frontier, signed = _resume(latest, trusted)
        except AuditLogInconsistent as exc:
            # Another replica may have signed with a key rotated in a moment ago: read the ring
            # again (once; the repository rate-limits it) before calling the head unverified.
            if exc.diagnostics.get("reason") != "checkpoint_unverified" or verifier is not None:
                raise
            fresher = _own_verifier(signer, origin, reread=True)
            if fresher.keys == trusted.keys:
                raise
            trusted = fresher
            frontier, signed = _resume(latest, trusted)
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
        if not rows and latest is not None and signed is not None:
            resigned = _resigned(latest, signed, signer)
            if resigned is not None:
                latest.note = resigned  # same size and root, now signed by the current key
            result = SequenceResult(frontier.size, frontier.size, signed.root_hash, resigned)
        else:
            if signed is None:
                await _check_fresh(session)
            else:
                await _check_edge(session, frontier)
            if witness is not None:
                await _check_witness(session, witness, trusted, signed, cache)
            result = await _append(session, rows, frontier, signer, origin, moment)
    if witness is not None and result.note is not None:
        # fsync off the event loop
        written = await asyncio.to_thread(_witness, witness, result.note)
        result = dataclasses.replace(result, witnessed=written)
    return result


async def _append(
    session: AsyncSession,
    rows: Sequence[Row[Any]],
    frontier: Frontier,
    signer: NoteSigner,
    origin: str,
    moment: dt.datetime,
) -> SequenceResult:
    """Give ``rows`` their places after ``frontier`` and sign the new head (in the session)."""
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
    db: Database,
    signer: NoteSigner,
    origin: str,
    *,
    batch: int = 5000,
    verifier: CheckpointVerifier | None = None,
    witness: CheckpointWitness | None = None,
    cache: SubtreeCache | None = None,
) -> SequenceResult:
    """Run steps until no unsequenced entry is left; the result spans all of them."""

    async def step() -> SequenceResult:
        return await sequence_once(
            db, signer, origin, batch=batch, verifier=verifier, witness=witness, cache=cache
        )

    first = await step()
    last = first
    while last.appended == batch:
        last = await step()
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
    verifier: CheckpointVerifier | None = None,
    witness: CheckpointWitness | None = None,
    cache: SubtreeCache | None = None,
    health: SequencerHealth | None = None,
) -> None:
    """Sequence every ``interval`` seconds until ``stop`` is set; failures are logged, retried.

    With a ``turn``, only while this process holds it (one sequencer per machine on SQLite).
    A step refused because the log failed a check is logged as ``audit_integrity_alert`` (error
    level, its reason code only) and recorded in ``health``; nothing is signed until the log
    passes again, so the unsequenced entries and their age keep growing."""
    try:
        while not stop.is_set():
            try:
                if turn is None or turn.mine():
                    result = await sequence(
                        db,
                        signer,
                        origin,
                        batch=batch,
                        verifier=verifier,
                        witness=witness,
                        cache=cache,
                    )
                    if health is not None:
                        health.alert = None
                        if result.witnessed is not None:
                            health.witness_unwritable = not result.witnessed
                    if result.appended:
                        log.debug(
                            "audit_sequenced", appended=result.appended, size=result.tree_size
                        )
            except AuditLogInconsistent as exc:
                reason = str(exc.diagnostics.get("reason", exc.code))[:64]
                if health is not None:
                    health.integrity_refusals += 1
                    health.alert = reason
                log.error(
                    "audit_integrity_alert",
                    code=exc.code,
                    reason=reason,
                    action="sequencing_refused",
                    **{k: v for k, v in exc.diagnostics.items() if k in ALERT_NUMBERS},
                )
            except (StoreUnavailable, KeysError) as exc:
                code = getattr(exc, "code", type(exc).__name__)
                log.warning("audit_sequencer_failed", code=code)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
    finally:
        if turn is not None:
            turn.release()


#: The diagnostics an integrity alert carries besides its reason: sizes and positions only.
ALERT_NUMBERS: Final = frozenset({"tree_size", "witness_size", "seq"})
