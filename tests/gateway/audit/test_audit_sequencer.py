"""The sequencer on SQLite and PostgreSQL: contiguous positions, signed heads, no fork, resume."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from gateway.audit import MerkleTree, verify_entries
from gateway.audit.checkpoint import CheckpointVerifier
from gateway.audit.log import iter_log
from gateway.audit.sequencer import sequence, sequence_once
from gateway.audit.signer import RingNoteSigner
from gateway.errors import AuditLogInconsistent
from gateway.flow.audit import record
from gateway.store import Database
from gateway.store.models import AuditCheckpoint, AuditEntry
from tests.gateway.audit.conftest import DB_ORIGIN, append_entries, audit_event


async def _sequenced(db: Database) -> list[tuple[int, int | None, str | None]]:
    async with db.read() as session:
        rows = await session.execute(
            select(AuditEntry.id, AuditEntry.seq, AuditEntry.leaf_hash).order_by(AuditEntry.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def _checkpoints(db: Database) -> list[AuditCheckpoint]:
    async with db.read() as session:
        rows = await session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size))
        return list(rows.scalars())


async def test_first_run_signs_the_empty_tree(db: Database, ring_signer: RingNoteSigner) -> None:
    """On an empty log the sequencer still signs a checkpoint of size 0 with the empty root."""
    result = await sequence_once(db, ring_signer, DB_ORIGIN)
    assert (result.previous_size, result.tree_size, result.appended) == (0, 0, 0)
    assert result.note is not None and result.note.startswith(f"{DB_ORIGIN}\n0\n")
    assert [c.tree_size for c in await _checkpoints(db)] == [0]
    again = await sequence_once(db, ring_signer, DB_ORIGIN)
    assert again.note is None  # nothing new: no second checkpoint
    assert len(await _checkpoints(db)) == 1


async def test_entries_get_contiguous_seq_in_insertion_order(
    db: Database, ring_signer: RingNoteSigner
) -> None:
    """Unsequenced rows receive seq 0..n-1 in id order, with their canonical leaf hashes."""
    await append_entries(db, 12)
    result = await sequence(db, ring_signer, DB_ORIGIN)
    assert (result.previous_size, result.tree_size) == (0, 12)
    rows = await _sequenced(db)
    assert [seq for _, seq, _ in rows] == list(range(12))
    assert all(leaf is not None and len(leaf) == 64 for _, _, leaf in rows)


async def test_checkpoint_signature_verifies_with_the_ring_key(
    db: Database, ring_signer: RingNoteSigner, ring_verifier: CheckpointVerifier
) -> None:
    """The stored note verifies with the published key and signs the recomputed tree head."""
    await append_entries(db, 9)
    result = await sequence(db, ring_signer, DB_ORIGIN)
    assert result.note is not None
    checkpoint = ring_verifier.verify(result.note)
    leaves = [bytes.fromhex(str(leaf)) for _, _, leaf in await _sequenced(db)]
    assert checkpoint.size == 9
    assert checkpoint.root_hash == MerkleTree(leaves).root()
    report = verify_entries(iter_log(db.url), checkpoint=result.note, verifier=ring_verifier)
    assert report.ok, report


async def test_sequencer_resumes_from_the_stored_frontier_after_a_restart(
    database_url: str, ring_signer: RingNoteSigner, ring_verifier: CheckpointVerifier
) -> None:
    """A new process continues the same tree: every checkpoint is a prefix of the final tree."""
    for start in (0, 5, 6, 19):
        db = Database(database_url)
        try:
            await append_entries(db, {0: 5, 5: 1, 6: 13, 19: 14}[start], start=start)
            await sequence(db, ring_signer, DB_ORIGIN, batch=4)
        finally:
            await db.dispose()
    db = Database(database_url)
    try:
        leaves = [bytes.fromhex(str(leaf)) for _, _, leaf in await _sequenced(db)]
        tree = MerkleTree(leaves)
        checkpoints = await _checkpoints(db)
    finally:
        await db.dispose()
    assert tree.size == 33
    for checkpoint in checkpoints:
        assert ring_verifier.verify(checkpoint.note).root_hash == tree.root(checkpoint.tree_size)
    assert checkpoints[-1].tree_size == 33


async def test_concurrent_writers_and_two_sequencers_never_fork_or_lose_entries(
    database_url: str, ring_signer: RingNoteSigner, ring_verifier: CheckpointVerifier
) -> None:
    """300 concurrent writers and two sequencers on separate engines (two replicas): every entry
    is sequenced exactly once, seq is contiguous, and every checkpoint lies on one tree."""
    writers, replicas = 300, (Database(database_url), Database(database_url))
    done = asyncio.Event()

    async def write(i: int) -> None:
        async with replicas[i % 2].write() as session:
            record(session, audit_event(i))
            await asyncio.sleep(0)

    async def sequencer(db: Database) -> None:
        while not done.is_set():
            await sequence_once(db, ring_signer, DB_ORIGIN, batch=25)
            await asyncio.sleep(0.005)

    try:
        tasks = [asyncio.create_task(sequencer(db)) for db in replicas]
        await asyncio.gather(*(write(i) for i in range(writers)))
        done.set()
        await asyncio.gather(*tasks)
        await sequence(replicas[0], ring_signer, DB_ORIGIN, batch=25)
        rows = await _sequenced(replicas[1])
        checkpoints = await _checkpoints(replicas[1])
    finally:
        for db in replicas:
            await db.dispose()
    assert len(rows) == writers
    assert sorted(seq for _, seq, _ in rows if seq is not None) == list(range(writers))
    by_seq = sorted(rows, key=lambda row: row[1] or 0)
    tree = MerkleTree(bytes.fromhex(str(leaf)) for _, _, leaf in by_seq)
    sizes = [checkpoint.tree_size for checkpoint in checkpoints]
    assert sizes == sorted(set(sizes)) and sizes[-1] == writers
    assert len(sizes) > 2  # the sequencers interleaved with the writers
    for checkpoint in checkpoints:
        assert ring_verifier.verify(checkpoint.note).root_hash == tree.root(checkpoint.tree_size)
    report = verify_entries(
        iter_log(database_url), checkpoint=checkpoints[-1].note, verifier=ring_verifier
    )
    assert report.ok, report


async def test_sequencer_refuses_a_log_sequenced_beyond_its_checkpoint(
    db: Database, ring_signer: RingNoteSigner
) -> None:
    """A seq set behind the sequencer's back stops it; it never signs over the gap."""
    await append_entries(db, 3)
    await sequence(db, ring_signer, DB_ORIGIN)
    await append_entries(db, 2, start=3)
    async with db.write() as session:
        await session.execute(
            text("UPDATE audit_entries SET seq = 7 WHERE id = (SELECT max(id) FROM audit_entries)")
        )
    with pytest.raises(AuditLogInconsistent):
        await sequence_once(db, ring_signer, DB_ORIGIN)
    assert [c.tree_size for c in await _checkpoints(db)] == [3]


async def test_entry_without_canonical_form_stops_the_sequencer_with_nothing_sequenced(
    db: Database, ring_signer: RingNoteSigner
) -> None:
    """An entry whose detail JSON cannot be canonicalised is reported, and the batch rolls back."""
    await append_entries(db, 2)
    async with db.write() as session:
        record(session, audit_event(2, detail={"n": 2**60}))  # beyond I-JSON's exact integers
    with pytest.raises(AuditLogInconsistent) as caught:
        await sequence_once(db, ring_signer, DB_ORIGIN)
    assert caught.value.diagnostics["reason"] == "audit_entry_malformed"
    assert all(seq is None for _, seq, _ in await _sequenced(db))


async def test_background_sequencer_integrates_new_entries_within_its_interval(
    database_url: str, ring_signer: RingNoteSigner
) -> None:
    """run_sequencer signs new entries within about one interval and stops cleanly."""
    from gateway.audit.sequencer import run_sequencer

    db = Database(database_url)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_sequencer(db, ring_signer, DB_ORIGIN, interval=0.05, batch=100, stop=stop)
    )
    try:
        await append_entries(db, 4)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(seq is not None for _, seq, _ in await _sequenced(db)):
                break
            await asyncio.sleep(0.05)
        assert [seq for _, seq, _ in await _sequenced(db)] == [0, 1, 2, 3]
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        async with db.read() as session:
            count = await session.scalar(select(func.count()).select_from(AuditCheckpoint))
        await db.dispose()
    assert count and count >= 2


def test_one_process_at_a_time_holds_the_sequencer_turn(tmp_path: Path) -> None:
    """The turn is an exclusive flock: a second holder is refused until the first lets go."""
    from gateway.audit.sequencer import SequencerTurn

    lock = tmp_path / "audit.db.sequencer.lock"
    first, second = SequencerTurn(lock), SequencerTurn(lock)
    try:
        assert first.mine()
        assert first.mine()  # held: asking again is free
        assert not second.mine()
        first.release()
        assert second.mine()
        assert not first.mine()
    finally:
        first.release()
        second.release()


async def test_the_sequencer_turn_is_beside_a_sqlite_file_and_absent_on_postgresql(
    database_url: str,
) -> None:
    from gateway.audit.sequencer import sequencer_turn

    db = Database(database_url)
    try:
        turn = sequencer_turn(db)
        if db.is_sqlite:
            assert turn is not None
            assert turn.path.name.endswith(".sequencer.lock")
            assert turn.path.parent.exists()  # beside the database file
        else:
            assert turn is None  # PostgreSQL sequencers take turns by the advisory lock
    finally:
        await db.dispose()


async def test_a_background_sequencer_without_the_turn_waits_then_takes_over(
    sqlite_url: str, ring_signer: RingNoteSigner
) -> None:
    """While another process holds the turn nothing is sequenced here; once it lets go (as when
    that worker ends), this one takes over within an interval."""
    from gateway.audit.sequencer import run_sequencer, sequencer_turn

    db = Database(sqlite_url)
    holder, mine = sequencer_turn(db), sequencer_turn(db)
    assert holder is not None and mine is not None
    assert holder.mine()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_sequencer(db, ring_signer, DB_ORIGIN, interval=0.05, batch=100, stop=stop, turn=mine)
    )
    try:
        await append_entries(db, 3)
        await asyncio.sleep(0.5)  # ten intervals
        assert all(seq is None for _, seq, _ in await _sequenced(db))
        holder.release()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(seq is not None for _, seq, _ in await _sequenced(db)):
                break
            await asyncio.sleep(0.05)
        assert [seq for _, seq, _ in await _sequenced(db)] == [0, 1, 2]
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        holder.release()
        await db.dispose()
    assert holder.mine()  # the stopped sequencer let its turn go
    holder.release()
