"""The sequencer on SQLite and PostgreSQL: contiguous positions, signed heads, no fork, resume,
and no checkpoint signed over a log rewritten in the database (security review 2, finding 1)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit import MerkleTree, Problem, entry_leaf_hash, verify_entries
from gateway.audit.checkpoint import Checkpoint, CheckpointVerifier, sign_checkpoint
from gateway.audit.export import verify_database
from gateway.audit.log import entry_fields, inclusion_proof, iter_log, unsequenced_lag
from gateway.audit.merkle import EMPTY_ROOT, Frontier, verify_inclusion
from gateway.audit.sequencer import sequence, sequence_once
from gateway.audit.signer import RingNoteSigner
from gateway.audit.subtrees import SubtreeCache
from gateway.audit.witness import CheckpointWitness
from gateway.errors import AuditLogInconsistent
from gateway.flow.audit import entry_row, record
from gateway.store import Database
from gateway.store.models import AuditCheckpoint, AuditEntry
from tests.gateway.audit.conftest import (
    DB_ORIGIN,
    Ed25519NoteSigner,
    append_entries,
    audit_event,
)


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
    """An entry whose detail JSON cannot be canonicalised is reported, and the batch rolls back.
    The gateway's append path refuses such an entry (`entry_row`): this one is written into the
    table directly, as by someone with the database."""
    await append_entries(db, 2)
    async with db.write() as session:
        row = {**entry_row(audit_event(2)), "detail": {"n": 2**60}}  # beyond exact I-JSON
        session.add(AuditEntry(**row))
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


# --- A database writer cannot get a forged history signed (security review 2, finding 1) ------
#
# The insider has the database, not the checkpoint key. Before the fix, the sequencer resumed
# from the latest checkpoint row's unsigned ``frontier``/``root_hash`` columns: rewrite an entry,
# fix those columns up, wait for the next audited act, and the gateway signed a checkpoint over
# the forged log, after which every verification said "verified".


async def _latest(session: AsyncSession) -> AuditCheckpoint:
    query = select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc()).limit(1)
    return (await session.scalars(query)).one()


async def _rewrite_and_rehash(db: Database, seq: int) -> bytes:
    """Rewrite who received disclosure ``seq`` and its outcome, recompute every stored leaf hash
    and the tree; return the forged root."""
    async with db.write() as session:
        await session.execute(
            update(AuditEntry)
            .where(AuditEntry.seq == seq)
            .values(agency_id="agency-innocent", recipients=["agency-innocent"], outcome="refused")
        )
    async with db.write() as session:
        query = select(AuditEntry).where(AuditEntry.seq.is_not(None)).order_by(AuditEntry.seq)
        leaves = []
        for row in (await session.scalars(query)).all():
            leaf = entry_leaf_hash(entry_fields(row))
            row.leaf_hash = leaf.hex()
            leaves.append(leaf)
    return Frontier().extend(leaves).root()


async def _fix_up_columns(db: Database) -> None:
    """Make the latest checkpoint row's frontier and root columns match the stored leaves."""
    async with db.write() as session:
        query = select(AuditEntry.leaf_hash).where(AuditEntry.seq.is_not(None))
        leaves = (await session.scalars(query.order_by(AuditEntry.seq))).all()
        frontier = Frontier().extend(bytes.fromhex(str(leaf)) for leaf in leaves)
        latest = await _latest(session)
        latest.root_hash = frontier.root().hex()
        latest.frontier = [h.hex() for h in frontier.hashes]


async def _forge_columns(db: Database, signer: Ed25519NoteSigner) -> None:
    await _rewrite_and_rehash(db, 3)
    await _fix_up_columns(db)


async def _forge_columns_and_note(db: Database, signer: Ed25519NoteSigner) -> None:
    """As above, and a note over the forged root signed by a key of the attacker's own."""
    root = await _rewrite_and_rehash(db, 3)
    await _fix_up_columns(db)
    async with db.write() as session:
        latest = await _latest(session)
        latest.note = sign_checkpoint(Checkpoint(DB_ORIGIN, latest.tree_size, root), signer)


async def _forge_frontier(db: Database, signer: Ed25519NoteSigner) -> None:
    """Only the frontier column, to a tree head that is not the signed one."""
    async with db.write() as session:
        latest = await _latest(session)
        latest.frontier = [hashlib.sha256(bytes([i])).hexdigest() for i in range(2)]


async def _edit_edge_entry(db: Database, signer: Ed25519NoteSigner) -> None:
    """The last entry's content, its stored leaf hash left alone."""
    async with db.write() as session:
        await session.execute(
            update(AuditEntry).where(AuditEntry.seq == 9).values(officer_id="officer-framed")
        )


async def _edit_edge_entry_and_leaf(db: Database, signer: Ed25519NoteSigner) -> None:
    """The last entry's content and its stored leaf hash, the frontier left alone."""
    async with db.write() as session:
        row = (await session.scalars(select(AuditEntry).where(AuditEntry.seq == 9))).one()
        row.officer_id = "officer-framed"
        row.leaf_hash = entry_leaf_hash(entry_fields(row)).hex()


FORGERIES = {
    # tampering: (the sequencer's reason code, what verifying against the database's latest
    # checkpoint says, and what verifying against the checkpoint saved before the tampering says)
    "entry_rehashed_columns_fixed_up": (
        _forge_columns,
        "checkpoint_columns_mismatch",
        Problem.ROOT_MISMATCH,
        Problem.ROOT_MISMATCH,
    ),
    "entry_rehashed_columns_and_note_forged": (
        _forge_columns_and_note,
        "checkpoint_unverified",
        Problem.CHECKPOINT_INVALID,
        Problem.ROOT_MISMATCH,
    ),
    # the sequencer's own state only: the entries are intact, so the log itself verifies
    "frontier_column_only": (_forge_frontier, "frontier_root_mismatch", None, None),
    "edge_entry_edited": (
        _edit_edge_entry,
        "edge_entry_edited",
        Problem.EDITED,
        Problem.EDITED,
    ),
    "edge_entry_and_leaf_rewritten": (
        _edit_edge_entry_and_leaf,
        "edge_frontier_mismatch",
        Problem.ROOT_MISMATCH,
        Problem.ROOT_MISMATCH,
    ),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_sequencer_refuses_to_sign_over_a_forged_log(
    db: Database,
    ring_signer: RingNoteSigner,
    ring_verifier: CheckpointVerifier,
    new_signer: Callable[[str], Ed25519NoteSigner],
    forgery: str,
) -> None:
    """After each tampering the next step raises with its reason code and signs nothing; the
    new entry waits unsequenced, and verifying against the database's own latest checkpoint (as
    `audit verify` and the console do by default) still reports the tampering."""
    tamper, reason, problem, against_saved = FORGERIES[forgery]
    await append_entries(db, 10)
    first = await sequence(db, ring_signer, DB_ORIGIN)
    assert verify_database(db.url, ring_verifier).ok
    await tamper(db, new_signer(DB_ORIGIN))
    await append_entries(db, 1, start=100)  # the next audited act

    for _ in range(2):  # and it stays refused
        with pytest.raises(AuditLogInconsistent) as caught:
            await sequence(db, ring_signer, DB_ORIGIN)
        assert caught.value.diagnostics["reason"] == reason

    assert [c.tree_size for c in await _checkpoints(db)] == [10]
    assert [seq for _, seq, _ in await _sequenced(db)][-1] is None
    report = verify_database(db.url, ring_verifier)
    assert report.problem is problem, report
    saved = verify_database(db.url, ring_verifier, checkpoint=first.note)
    assert saved.problem is against_saved, saved


async def test_a_refused_forgery_leaves_the_entry_failing_its_inclusion_check(
    db: Database, ring_signer: RingNoteSigner, ring_verifier: CheckpointVerifier
) -> None:
    """The review's reproduction: the rewritten entry's inclusion proof (the API's) and the
    console's per-entry check fail against the latest signed checkpoint, after the next act."""
    from gateway.console.checks import check_entry

    await append_entries(db, 10)
    await sequence(db, ring_signer, DB_ORIGIN)
    await _rewrite_and_rehash(db, 3)
    await _fix_up_columns(db)
    await append_entries(db, 1, start=100)
    with pytest.raises(AuditLogInconsistent):
        await sequence(db, ring_signer, DB_ORIGIN)

    async with db.read() as session:
        row = (await session.scalars(select(AuditEntry).where(AuditEntry.seq == 3))).one()
        signed = ring_verifier.verify((await _latest(session)).note)
        proof = await inclusion_proof(session, row.entry_id)
        check = await check_entry(session, row, ring_verifier)
    leaf = entry_leaf_hash(entry_fields(row))
    assert not verify_inclusion(leaf, 3, signed.size, proof.path, signed.root_hash)
    assert check.status == "failed"


async def test_untampered_log_keeps_growing_under_the_checks(
    db: Database, ring_signer: RingNoteSigner, ring_verifier: CheckpointVerifier
) -> None:
    """Sizes whose right edge is one leaf, a small subtree, or wider than EDGE_LEAVES (only the
    last entry re-hashed): every step passes the checks and extends one tree."""
    from gateway.audit.sequencer import EDGE_LEAVES

    for size in (1, 2, 3, 8, 2 * EDGE_LEAVES, 2 * EDGE_LEAVES + 5):
        await append_entries(db, size - (await _tree_size(db)), start=await _tree_size(db))
        result = await sequence(db, ring_signer, DB_ORIGIN, batch=7)
        assert result.tree_size == size
    checkpoints = await _checkpoints(db)
    tree = MerkleTree(bytes.fromhex(str(leaf)) for _, _, leaf in await _sequenced(db))
    for checkpoint in checkpoints:
        assert ring_verifier.verify(checkpoint.note).root_hash == tree.root(checkpoint.tree_size)
    assert verify_database(db.url, ring_verifier).ok


async def _tree_size(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


async def test_background_sequencer_raises_an_integrity_alert_and_lag_grows(
    db: Database, ring_signer: RingNoteSigner
) -> None:
    """run_sequencer logs ``audit_integrity_alert`` (error level; codes and sizes, no entry
    content), counts it in its health, signs nothing, and the unsequenced entries age."""
    from gateway.audit.sequencer import SequencerHealth, run_sequencer

    await append_entries(db, 10)
    await sequence(db, ring_signer, DB_ORIGIN)
    await _rewrite_and_rehash(db, 3)
    await _fix_up_columns(db)
    await append_entries(db, 2, start=100)
    health, stop = SequencerHealth(), asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(
            run_sequencer(
                db, ring_signer, DB_ORIGIN, interval=0.02, batch=100, stop=stop, health=health
            )
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if health.integrity_refusals >= 3:
                    break
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert health.integrity_refusals >= 3
    assert health.alert == "checkpoint_columns_mismatch"
    alerts = [entry for entry in logs if entry["event"] == "audit_integrity_alert"]
    assert alerts and all(entry["log_level"] == "error" for entry in alerts)
    assert alerts[0]["code"] == "audit_log_inconsistent"
    assert alerts[0]["reason"] == "checkpoint_columns_mismatch"
    assert alerts[0]["tree_size"] == 10
    assert "agency-innocent" not in repr(logs)
    assert [c.tree_size for c in await _checkpoints(db)] == [10]
    async with db.read() as session:
        count, _ = await unsequenced_lag(session, dt.datetime.now(dt.UTC))
    assert count == 2


# --- Deleted checkpoints and rolled-back heads: the checkpoint witness -------------------------


async def _wipe_checkpoints(db: Database) -> None:
    """The review's second variant: delete an entry, blank every seq and leaf hash, and delete
    every checkpoint row. Inside the database this is a log that was never sequenced."""
    async with db.write() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.seq == 3))
        await session.execute(update(AuditEntry).values(seq=None, leaf_hash=None))
        await session.execute(delete(AuditCheckpoint))


async def _roll_back_to(db: Database, size: int) -> None:
    """Delete the checkpoints above ``size``, unsequence the entries they covered, and rewrite
    one of them: the database now shows an older, genuinely signed head."""
    async with db.write() as session:
        await session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.tree_size > size))
        await session.execute(
            update(AuditEntry).where(AuditEntry.seq >= size).values(seq=None, leaf_hash=None)
        )
        await session.execute(
            update(AuditEntry)
            .where(AuditEntry.request_id == f"req-{size + 2}")
            .values(outcome="refused")
        )


async def test_without_a_witness_a_wiped_log_is_signed_again_from_scratch(
    db: Database, ring_signer: RingNoteSigner, ring_verifier: CheckpointVerifier
) -> None:
    """What the database alone cannot show (docs/ig-guide.md): with every checkpoint row deleted
    and every seq and leaf hash blanked, a sequencer without a witness starts a new tree, and
    only a checkpoint kept outside the database catches it."""
    await append_entries(db, 10)
    first = await sequence(db, ring_signer, DB_ORIGIN)
    await _wipe_checkpoints(db)
    again = await sequence(db, ring_signer, DB_ORIGIN)
    assert again.tree_size == 9
    assert verify_database(db.url, ring_verifier).ok
    assert not verify_database(db.url, ring_verifier, checkpoint=first.note).ok


async def test_leaf_hashes_left_behind_without_a_checkpoint_are_refused(
    db: Database, ring_signer: RingNoteSigner
) -> None:
    """Checkpoints deleted and seq blanked, but leaf hashes left: no genuine log looks like
    that (the leaf hash is set with the checkpoint that covers it), so nothing is signed."""
    await append_entries(db, 10)
    await sequence(db, ring_signer, DB_ORIGIN)
    async with db.write() as session:
        await session.execute(update(AuditEntry).values(seq=None))
        await session.execute(delete(AuditCheckpoint))
    with pytest.raises(AuditLogInconsistent) as caught:
        await sequence(db, ring_signer, DB_ORIGIN)
    assert caught.value.diagnostics["reason"] == "checkpoints_missing"
    assert await _checkpoints(db) == []


@pytest.mark.parametrize("tampering", ["wipe", "roll_back"])
async def test_witness_refuses_a_head_behind_the_last_checkpoint_signed(
    db: Database,
    ring_signer: RingNoteSigner,
    ring_verifier: CheckpointVerifier,
    tmp_path: Path,
    tampering: str,
) -> None:
    """With the witness file, deleted checkpoint rows (all of them, or the newest back to an
    older genuine head) stop the sequencer; `audit verify` against the witness reports it."""
    witness = CheckpointWitness(tmp_path / "witness" / "log.note")
    await append_entries(db, 5)
    await sequence(db, ring_signer, DB_ORIGIN, witness=witness)
    await append_entries(db, 5, start=5)
    last = await sequence(db, ring_signer, DB_ORIGIN, witness=witness)
    assert witness.read() == last.note
    if tampering == "wipe":
        await _wipe_checkpoints(db)
    else:
        await _roll_back_to(db, 5)
    behind = 0 if tampering == "wipe" else 5

    with pytest.raises(AuditLogInconsistent) as caught:
        await sequence(db, ring_signer, DB_ORIGIN, witness=witness)
    assert caught.value.diagnostics == {
        "reason": "checkpoint_behind_witness",
        "witness_size": 10,
        "tree_size": behind,
    }
    assert [c.tree_size for c in await _checkpoints(db)] == ([] if behind == 0 else [5])
    assert witness.read() == last.note
    report = verify_database(db.url, ring_verifier, checkpoint=witness.read())
    assert report.problem is Problem.TRUNCATED


async def test_witness_that_lags_is_caught_up_through_a_consistency_proof(
    db: Database, ring_signer: RingNoteSigner, tmp_path: Path
) -> None:
    """Another replica (no access to this file) signed since: the head extends the witnessed
    one, so this sequencer goes on and the witness catches up. A witness of another tree of the
    same origin and key (a database swapped for another log) is refused."""
    witness = CheckpointWitness(tmp_path / "log.note")
    await append_entries(db, 6)
    await sequence(db, ring_signer, DB_ORIGIN, witness=witness)
    await append_entries(db, 30, start=6)
    await sequence(db, ring_signer, DB_ORIGIN, batch=7)  # the other replica
    await append_entries(db, 2, start=36)
    result = await sequence(db, ring_signer, DB_ORIGIN, witness=witness, cache=SubtreeCache())
    assert result.tree_size == 38
    assert witness.read() == result.note

    other = CheckpointWitness(tmp_path / "other.note")
    other_root = MerkleTree(hashlib.sha256(bytes([i])).digest() for i in range(3)).root()
    other.path.write_text(
        sign_checkpoint(Checkpoint(DB_ORIGIN, 3, other_root), ring_signer), encoding="utf-8"
    )
    await append_entries(db, 1, start=38)
    with pytest.raises(AuditLogInconsistent) as caught:
        await sequence(db, ring_signer, DB_ORIGIN, witness=other)
    assert caught.value.diagnostics["reason"] == "witness_inconsistent"


async def test_witness_of_the_same_size_and_another_root_is_a_fork(
    db: Database, ring_signer: RingNoteSigner, tmp_path: Path
) -> None:
    witness = CheckpointWitness(tmp_path / "log.note")
    await append_entries(db, 4)
    await sequence(db, ring_signer, DB_ORIGIN)
    fork = sign_checkpoint(Checkpoint(DB_ORIGIN, 4, hashlib.sha256(b"fork").digest()), ring_signer)
    witness.path.write_text(fork, encoding="utf-8")
    await append_entries(db, 1, start=4)
    with pytest.raises(AuditLogInconsistent) as caught:
        await sequence(db, ring_signer, DB_ORIGIN, witness=witness)
    assert caught.value.diagnostics["reason"] == "witness_fork"


async def test_witness_not_signed_by_the_log_key_is_refused(
    db: Database,
    ring_signer: RingNoteSigner,
    new_signer: Callable[[str], Ed25519NoteSigner],
    tmp_path: Path,
) -> None:
    witness = CheckpointWitness(tmp_path / "log.note")
    note = sign_checkpoint(Checkpoint(DB_ORIGIN, 0, EMPTY_ROOT), new_signer(DB_ORIGIN))
    witness.path.write_text(note, encoding="utf-8")
    with pytest.raises(AuditLogInconsistent) as caught:
        await sequence(db, ring_signer, DB_ORIGIN, witness=witness)
    assert caught.value.diagnostics["reason"] == "witness_unverified"
    assert await _checkpoints(db) == []


async def test_witness_is_created_on_first_use_from_the_head_found(
    db: Database, ring_signer: RingNoteSigner, tmp_path: Path
) -> None:
    """A gateway that had no witness yet adopts the database's verified head, then holds to it."""
    await append_entries(db, 3)
    await sequence(db, ring_signer, DB_ORIGIN)
    witness = CheckpointWitness(tmp_path / "new" / "log.note")
    await append_entries(db, 2, start=3)
    result = await sequence(db, ring_signer, DB_ORIGIN, witness=witness)
    assert result.tree_size == 5 and witness.read() == result.note
    idle = await sequence(db, ring_signer, DB_ORIGIN, witness=witness)
    assert idle.note is None and witness.read() == result.note


async def test_service_sequencer_uses_a_witness_per_log_and_database(
    database_url: str, audit_gateway_keys: tuple[Path, Path]
) -> None:
    """The app's sequencer has a witness by default, under the key directory, named for the
    log's origin and database; MAPPA_AUDIT_CHECKPOINT_FILE moves it."""
    from gateway.audit.service import open_audit_keys
    from gateway.audit.witness import witness_path
    from gateway.settings import Settings

    keys_dir, kek_file = audit_gateway_keys
    settings = Settings(
        profile="test",
        database_url=database_url,
        issuer="https://gateway.test",
        keys_dir=keys_dir,
        kek_file=kek_file,
    )
    service = open_audit_keys(settings)
    assert service.witness is not None
    assert service.witness.path == witness_path(settings)
    assert service.witness.path.parent == keys_dir / "audit-checkpoints"
    other = settings.model_copy(update={"audit_origin": "elsewhere.test/audit"})
    assert witness_path(other) != witness_path(settings)
    assert "@" not in str(witness_path(settings))  # no credentials in a file name
    moved = settings.model_copy(update={"audit_checkpoint_file": Path("/srv/x.note")})
    assert witness_path(moved) == Path("/srv/x.note")
    db = Database(database_url)
    try:
        await append_entries(db, 2)
        result = await sequence(
            db, service.signer, service.origin, witness=service.witness, cache=service.subtrees
        )
    finally:
        await db.dispose()
    assert service.witness.read() == result.note


# --- Sequenced entries that no stored checkpoint covers ----------------------------------------


async def _rewrite_uncovered(db: Database, keep: int | None) -> None:
    """Delete the checkpoint rows above ``keep`` (every row when None), then rewrite the last
    entry, which no stored checkpoint covers any more, with its leaf hash recomputed."""
    async with db.write() as session:
        doomed = delete(AuditCheckpoint)
        if keep is not None:
            doomed = doomed.where(AuditCheckpoint.tree_size > keep)
        await session.execute(doomed)
        last = await session.scalar(select(func.max(AuditEntry.seq)))
        row = (await session.scalars(select(AuditEntry).where(AuditEntry.seq == last))).one()
        row.agency_id, row.outcome = "agency-innocent", "refused"
        row.leaf_hash = entry_leaf_hash(entry_fields(row)).hex()


@pytest.mark.parametrize("keep", [5, None], ids=["newest_deleted", "all_deleted"])
async def test_entries_sequenced_beyond_every_stored_checkpoint_fail_verification(
    db: Database, ring_signer: RingNoteSigner, ring_verifier: CheckpointVerifier, keep: int | None
) -> None:
    """The sequencer numbers entries and stores their checkpoint in one transaction, so a
    sequenced entry beyond the latest stored checkpoint (or with none) means checkpoint rows
    were removed: verification names the first uncovered entry, against the database's own
    head and against a checkpoint saved before (which the log extends)."""
    await append_entries(db, 5)
    first = await sequence(db, ring_signer, DB_ORIGIN)
    await append_entries(db, 5, start=5)
    await sequence(db, ring_signer, DB_ORIGIN)
    assert verify_database(db.url, ring_verifier).ok
    await _rewrite_uncovered(db, keep)

    covered = keep or 0
    for checkpoint in (None, first.note):
        report = verify_database(db.url, ring_verifier, checkpoint=checkpoint)
        assert (report.problem, report.seq, report.tree_size) == (
            Problem.UNCOVERED,
            covered,
            covered,
        )
        assert report.detail == (
            f"{10 - covered} entries from seq {covered} sequenced but not covered by any signed "
            "checkpoint: checkpoint rows removed?"
        )


async def test_verification_reads_the_checkpoint_and_the_entries_on_one_snapshot(
    db: Database,
    ring_signer: RingNoteSigner,
    ring_verifier: CheckpointVerifier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sequencer step that commits after the verifier has read the latest checkpoint and
    before it reads the entries is not a finding: both reads see the log as it was."""
    from gateway.audit import log as audit_log

    await append_entries(db, 5)
    await sequence(db, ring_signer, DB_ORIGIN)
    await append_entries(db, 5, start=5)
    loop = asyncio.get_running_loop()
    checkpoint_read = asyncio.Event()
    sequenced = threading.Event()
    read_latest = audit_log._latest_note

    def latest_then_wait(conn: Any) -> tuple[int, str] | None:
        latest = read_latest(conn)
        loop.call_soon_threadsafe(checkpoint_read.set)
        assert sequenced.wait(timeout=30)
        return latest

    monkeypatch.setattr(audit_log, "_latest_note", latest_then_wait)
    verifying = asyncio.create_task(asyncio.to_thread(verify_database, db.url, ring_verifier))
    await asyncio.wait_for(checkpoint_read.wait(), timeout=30)
    try:
        step = await sequence_once(db, ring_signer, DB_ORIGIN)
    finally:
        sequenced.set()
    report = await verifying
    assert step.tree_size == 10
    assert report.ok, report
    assert report.checkpoint is not None and report.checkpoint.size == report.tree_size == 5
