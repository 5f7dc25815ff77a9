"""An entry rewritten with its stored hash is located between the stored signed checkpoints.

THREATS.md (audit integrity): the verifier names the first bad entry. Rewritten together with its
leaf hash, an entry passes every entry check and only the signed root shows it; the checkpoints the
sequencer signed per batch then say which batch (or, one entry a batch, which entry) it was.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select, update

from gateway.audit.canonical import entry_leaf_hash
from gateway.audit.checkpoint import Checkpoint, CheckpointVerifier, sign_checkpoint
from gateway.audit.export import verify_database
from gateway.audit.locate import Rewrite
from gateway.audit.log import entry_fields
from gateway.audit.merkle import Frontier
from gateway.audit.sequencer import sequence
from gateway.audit.signer import RingNoteSigner
from gateway.audit.verify import Problem
from gateway.store import Database
from gateway.store.models import AuditCheckpoint, AuditEntry
from tests.gateway.audit.conftest import DB_ORIGIN, append_entries


async def _grown(db: Database, signer: RingNoteSigner, count: int, batch: int) -> None:
    """``count`` entries sequenced ``batch`` at a time: a signed checkpoint every ``batch``."""
    await append_entries(db, count)
    await sequence(db, signer, DB_ORIGIN, batch=batch)


async def _rewrite_and_rehash(db: Database, seq: int) -> bytes:
    """What someone with the database can do: rewrite entry ``seq`` and its stored leaf hash.
    Returns the root the stored leaves now give."""
    async with db.write() as session:
        await session.execute(
            update(AuditEntry)
            .where(AuditEntry.seq == seq)
            .values(agency_id="agency-innocent", recipients=["agency-innocent"])
        )
        row = (await session.scalars(select(AuditEntry).where(AuditEntry.seq == seq))).one()
        row.leaf_hash = entry_leaf_hash(entry_fields(row)).hex()
    async with db.read() as session:
        query = select(AuditEntry.leaf_hash).where(AuditEntry.seq.is_not(None))
        leaves = (await session.scalars(query.order_by(AuditEntry.seq))).all()
    return Frontier().extend(bytes.fromhex(str(leaf)) for leaf in leaves).root()


def _verify(db: Database, verifier: CheckpointVerifier, **notes: str | None):  # type: ignore[no-untyped-def]
    return asyncio.to_thread(verify_database, db.url, verifier, **notes)


async def test_rewrite_is_located_within_the_batch_its_checkpoints_bound(
    db: Database, ring_signer: RingNoteSigner, ring_verifier: CheckpointVerifier
) -> None:
    """600 entries in batches of 100 (crossing 256-leaf tiles), entry 317 rewritten with its
    hash: a root mismatch, the first bad entry among seq 300 to 399."""
    await _grown(db, ring_signer, 600, batch=100)
    assert (await _verify(db, ring_verifier)).ok
    await _rewrite_and_rehash(db, 317)
    report = await _verify(db, ring_verifier)
    assert report.problem is Problem.ROOT_MISMATCH
    assert report.seq is None  # a batch of 100: the entry itself cannot be named
    assert report.detail == (
        "tree head at size 600 differs from the signed root; the first entry no longer as "
        "signed is among seq 300 to 399 (signed checkpoints of sizes 300 and 400)"
    )


async def test_rewrite_is_named_exactly_when_each_entry_was_signed_on_its_own(
    db: Database, ring_signer: RingNoteSigner, ring_verifier: CheckpointVerifier
) -> None:
    """One entry a batch (a quiet log: about one disclosure a second), entry 17 rewritten: the
    report names seq 17, as for an entry edited without its hash."""
    await _grown(db, ring_signer, 40, batch=1)
    await _rewrite_and_rehash(db, 17)
    report = await _verify(db, ring_verifier)
    assert (report.problem, report.seq) == (Problem.ROOT_MISMATCH, 17)
    assert "the first entry no longer as signed is seq 17" in report.detail


async def test_forged_checkpoint_rows_only_widen_the_range(
    db: Database, ring_signer: RingNoteSigner, ring_verifier: CheckpointVerifier
) -> None:
    """Checkpoint rows whose notes no longer verify (300 and 400 rewritten by the attacker to
    point elsewhere) are skipped: the range grows to 200..499, never excludes entry 317."""
    await _grown(db, ring_signer, 600, batch=100)
    await _rewrite_and_rehash(db, 317)
    async with db.write() as session:
        for row in (
            await session.scalars(
                select(AuditCheckpoint).where(AuditCheckpoint.tree_size.in_((300, 400)))
            )
        ).all():
            row.note = row.note.replace(f"\n{row.tree_size}\n", f"\n{row.tree_size + 1}\n", 1)
    report = await _verify(db, ring_verifier)
    assert report.problem is Problem.ROOT_MISMATCH
    assert "among seq 200 to 499 (signed checkpoints of sizes 200 and 500)" in report.detail


async def test_rewrite_found_through_the_witness_is_located_too(
    db: Database, ring_signer: RingNoteSigner, ring_verifier: CheckpointVerifier
) -> None:
    """A database checkpoint that agrees with the rewritten log (as after a re-signed restore)
    and the witness that does not: located from the witness's size down."""
    await _grown(db, ring_signer, 50, batch=10)
    async with db.read() as session:
        genuine = (
            await session.scalars(
                select(AuditCheckpoint.note).where(AuditCheckpoint.tree_size == 50)
            )
        ).one()
    forged_root = await _rewrite_and_rehash(db, 23)
    agreeing = sign_checkpoint(Checkpoint(DB_ORIGIN, 50, forged_root), ring_signer)
    report = await _verify(db, ring_verifier, checkpoint=agreeing, witness=genuine)
    assert report.problem is Problem.ROOT_MISMATCH
    assert report.detail.startswith("checkpoint witness: tree head at size 50 differs")
    assert "among seq 20 to 29 (signed checkpoints of sizes 20 and 30)" in report.detail


async def test_an_intact_log_is_not_located_at_all(
    db: Database, ring_signer: RingNoteSigner, ring_verifier: CheckpointVerifier
) -> None:
    await _grown(db, ring_signer, 30, batch=10)
    report = await _verify(db, ring_verifier)
    assert report.ok and report.detail == ""


def test_a_range_of_one_names_the_entry() -> None:
    assert Rewrite(17, 18).seq == 17
    assert Rewrite(0, 1).seq == 0
    assert Rewrite(300, 400).seq is None
