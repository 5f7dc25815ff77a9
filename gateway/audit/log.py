"""The audit log as the store holds it: entries in canonical form, checkpoints, tree and proofs.

This is the store-backed side of `gateway.audit`; the pure modules (hashing, proofs, notes,
verification) know nothing of tables. Three kinds of reader:

- `entry_fields` turns a row of ``audit_entries`` into the mapping `canonical_entry` hashes
  (UTC attached to SQLite's naive times; ``seq`` given by the caller when sequencing);
- async helpers for the app: the latest checkpoint, the leaf hashes up to a size, inclusion
  and consistency proofs built from the *stored* leaf hashes (as any log server does: the party
  checking a proof hashes the entry it holds, so a rewritten entry fails there), through the
  process's `SubtreeCache` so that a proof reads a few tiles of leaves, not the whole log;
- `iter_log`, a synchronous stream of the sequenced log in order for the verifier and the
  export, through a short-lived synchronous engine, so that millions of entries never sit in
  memory and the verifier's O(log n) state is all that grows.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import NullPool

from gateway.audit.canonical import AUDIT_ENTRY_FIELDS, format_occurred_at
from gateway.audit.merkle import EMPTY_ROOT, HASH_SIZE, TiledTree
from gateway.audit.subtrees import SubtreeCache
from gateway.audit.verify import LEAF_HASH_KEY
from gateway.contract.types import is_resource_id
from gateway.errors import AuditLogInconsistent, InvalidParameter, NotFound
from gateway.store.models import AuditCheckpoint, AuditEntry

__all__ = [
    "ConsistencyProof",
    "InclusionProof",
    "b64",
    "consistency_proof",
    "entry_fields",
    "entry_record",
    "inclusion_proof",
    "iter_log",
    "latest_checkpoint",
    "latest_checkpoint_note",
    "leaf_hashes",
    "log_snapshot",
    "sync_url",
    "unsequenced_lag",
]

_COLUMNS: Final = tuple(getattr(AuditEntry, name) for name in AUDIT_ENTRY_FIELDS)
_STREAM_CHUNK: Final = 2000


def b64(raw: bytes) -> str:
    """Standard base64, the encoding of hashes in checkpoints and proofs."""
    return base64.b64encode(raw).decode("ascii")


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def entry_fields(row: Any, *, seq: int | None = None) -> dict[str, object]:
    """The canonical fields of an ``audit_entries`` row (an ORM object or a result row).

    ``seq`` overrides the row's own (the sequencer's assignment); ``occurred_at`` is written in
    its canonical text form, UTC.
    """
    fields: dict[str, object] = {name: getattr(row, name) for name in AUDIT_ENTRY_FIELDS}
    if seq is not None:
        fields["seq"] = seq
    occurred = fields["occurred_at"]
    if isinstance(occurred, dt.datetime):
        fields["occurred_at"] = format_occurred_at(_aware(occurred))
    for name in ("recipients", "record_refs", "withheld"):
        if fields[name] is None:
            fields[name] = []
    if fields["detail"] is None:
        fields["detail"] = {}
    return fields


def entry_record(row: Any) -> dict[str, object]:
    """An entry as the API and exports show it: its fields, its stored leaf hash (or None)."""
    fields = entry_fields(row)
    fields[LEAF_HASH_KEY] = row.leaf_hash
    return fields


async def latest_checkpoint(session: AsyncSession) -> AuditCheckpoint | None:
    """The checkpoint with the largest tree size, or None before the first sequencer run."""
    result = await session.execute(
        select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1)
    )
    return result.scalar_one_or_none()


async def unsequenced_lag(session: AsyncSession, now: dt.datetime) -> tuple[int, float]:
    """How many entries wait for the sequencer, and the age in seconds of the oldest."""
    count, oldest = (
        await session.execute(
            select(func.count(AuditEntry.id), func.min(AuditEntry.occurred_at)).where(
                AuditEntry.seq.is_(None)
            )
        )
    ).one()
    if not count or oldest is None:
        return 0, 0.0
    if isinstance(oldest, str):  # SQLite returns min() over the column as text
        oldest = dt.datetime.fromisoformat(oldest)
    return int(count), max(0.0, (now - _aware(oldest)).total_seconds())


async def leaf_hashes(session: AsyncSession, size: int) -> list[bytes]:
    """The stored leaf hashes of entries ``0 .. size - 1``; a gap or bad hash is inconsistent."""
    rows = (
        await session.execute(
            select(AuditEntry.seq, AuditEntry.leaf_hash)
            .where(AuditEntry.seq.is_not(None), AuditEntry.seq < size)
            .order_by(AuditEntry.seq)
        )
    ).all()
    hashes: list[bytes] = []
    for position, (seq, stored) in enumerate(rows):
        if seq != position or not isinstance(stored, str) or not _is_hex_hash(stored):
            raise AuditLogInconsistent(diagnostics={"reason": "leaf_missing", "seq": position})
        hashes.append(bytes.fromhex(stored))
    if len(hashes) != size:
        raise AuditLogInconsistent(diagnostics={"reason": "leaves_missing", "size": size})
    return hashes


def _is_hex_hash(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 2 * HASH_SIZE
        and all(c in "0123456789abcdef" for c in value)
    )


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """RFC 9162 inclusion proof of one entry in the tree of ``tree_size`` leaves."""

    entry_id: str
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    root_hash: bytes
    path: tuple[bytes, ...]

    def as_json(self) -> dict[str, object]:
        return {
            "entry_id": self.entry_id,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "leaf_hash": b64(self.leaf_hash),
            "root_hash": b64(self.root_hash),
            "inclusion_path": [b64(node) for node in self.path],
        }


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """RFC 9162 consistency proof between the trees of ``first`` and ``second`` leaves."""

    first: int
    second: int
    first_root: bytes
    second_root: bytes
    path: tuple[bytes, ...]

    def as_json(self) -> dict[str, object]:
        return {
            "first": self.first,
            "second": self.second,
            "first_root_hash": b64(self.first_root),
            "second_root_hash": b64(self.second_root),
            "consistency_path": [b64(node) for node in self.path],
        }


async def inclusion_proof(
    session: AsyncSession,
    entry_id: str,
    tree_size: int | None = None,
    *,
    cache: SubtreeCache | None = None,
) -> InclusionProof:
    """Prove that entry ``entry_id`` is in the tree of ``tree_size`` (the latest checkpoint's by
    default). Sizes beyond the latest checkpoint are refused: nothing signed covers them yet.

    ``cache`` is the process's `SubtreeCache`; without one the proof reads every leaf hash."""
    checkpoint = await latest_checkpoint(session)
    signed = checkpoint.tree_size if checkpoint is not None else 0
    size = signed if tree_size is None else tree_size
    if not 0 <= size <= signed:
        raise InvalidParameter(f"tree_size must be between 0 and {signed}")
    if not is_resource_id(entry_id):  # never an entry's id; PostgreSQL takes no NUL
        raise NotFound("No entry with this id is covered by that tree size")
    seq = (
        await session.execute(select(AuditEntry.seq).where(AuditEntry.entry_id == entry_id))
    ).scalar_one_or_none()
    if seq is None or seq >= size or checkpoint is None:
        raise NotFound("No entry with this id is covered by that tree size")

    def answer(tree: TiledTree) -> InclusionProof:
        return InclusionProof(
            entry_id,
            seq,
            size,
            tree.leaf_hash(seq),
            tree.root(size),
            tree.inclusion_proof(seq, size),
        )

    return await (cache or SubtreeCache()).prove(session, checkpoint, answer, near=(seq, size - 1))


async def consistency_proof(
    session: AsyncSession, first: int, second: int, *, cache: SubtreeCache | None = None
) -> ConsistencyProof:
    """Prove that the tree of ``first`` leaves is a prefix of the tree of ``second`` leaves."""
    checkpoint = await latest_checkpoint(session)
    signed = checkpoint.tree_size if checkpoint is not None else 0
    if not 0 <= first <= second <= signed:
        raise InvalidParameter(f"need 0 <= first <= second <= {signed}")
    if checkpoint is None:
        return ConsistencyProof(0, 0, EMPTY_ROOT, EMPTY_ROOT, ())

    def answer(tree: TiledTree) -> ConsistencyProof:
        return ConsistencyProof(
            first,
            second,
            tree.root(first),
            tree.root(second),
            tree.consistency_proof(first, second),
        )

    near = (first - 1, first, second - 1)
    return await (cache or SubtreeCache()).prove(session, checkpoint, answer, near=near)


def sync_url(url: str) -> str:
    """The synchronous driver's URL for an async database URL (aiosqlite -> pysqlite)."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        parsed = parsed.set(drivername="sqlite")
    return parsed.render_as_string(hide_password=False)


def _engine(url: str, *, snapshot: bool = False) -> Engine:
    """A short-lived synchronous engine; with ``snapshot``, each transaction reads one snapshot
    of the database: REPEATABLE READ on PostgreSQL, and on SQLite (WAL) a real ``BEGIN``, which
    the driver leaves out before a read."""
    parsed = make_url(sync_url(url))
    if not snapshot or parsed.get_backend_name() != "sqlite":
        options = {"isolation_level": "REPEATABLE READ"} if snapshot else {}
        return create_engine(parsed, poolclass=NullPool, **options)
    engine = create_engine(parsed, poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, issues BEGIN

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def _stream(conn: Connection, up_to: int | None) -> Generator[dict[str, object], None, None]:
    query = (
        select(*_COLUMNS, AuditEntry.leaf_hash)
        .where(AuditEntry.seq.is_not(None))
        .order_by(AuditEntry.seq)
    )
    if up_to is not None:
        query = query.where(AuditEntry.seq < up_to)
    result = conn.execution_options(yield_per=_STREAM_CHUNK).execute(query)
    try:
        for row in result:
            yield entry_record(row)
    finally:  # a reader that stops early (the verifier, at the first bad entry)
        result.close()


def _latest_note(conn: Connection) -> tuple[int, str] | None:
    row = conn.execute(
        select(AuditCheckpoint.tree_size, AuditCheckpoint.note)
        .order_by(AuditCheckpoint.tree_size.desc())
        .limit(1)
    ).first()
    return None if row is None else (int(row.tree_size), str(row.note))


def iter_log(url: str, *, up_to: int | None = None) -> Generator[dict[str, object], None, None]:
    """Stream the sequenced entries of the database at ``url`` in ``seq`` order, each with its
    stored leaf hash (the verifier's input). ``up_to`` stops before that ``seq``. A reader that
    stops early closes the generator (``contextlib.closing``) to release the cursor at once."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            yield from _stream(conn, up_to)
    finally:
        engine.dispose()


def latest_checkpoint_note(url: str) -> tuple[int, str] | None:
    """The largest stored checkpoint's tree size and signed note, or None before the first; a
    synchronous read for the CLI, the verifier and the export (one row, however many the
    sequencer has stored: one a second while entries arrive)."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return _latest_note(conn)
    finally:
        engine.dispose()


@contextlib.contextmanager
def log_snapshot(
    url: str,
) -> Iterator[tuple[tuple[int, str] | None, Iterator[dict[str, object]]]]:
    """The latest stored checkpoint (as `latest_checkpoint_note`) and the stream of sequenced
    entries (as `iter_log`), read in one transaction on one snapshot, valid inside the block.

    The sequencer numbers entries and stores the checkpoint covering them in one transaction, so
    in this snapshot no genuine sequenced entry lies beyond the checkpoint, however the
    sequencer runs meanwhile; two separate reads could see entries sequenced after the
    checkpoint was read."""
    engine = _engine(url, snapshot=True)
    try:
        with engine.connect() as conn, conn.begin():
            latest = _latest_note(conn)
            entries = _stream(conn, None)
            with contextlib.closing(entries):
                yield latest, entries
    finally:
        engine.dispose()
