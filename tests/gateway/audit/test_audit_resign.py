"""``audit resign-head``: the log's head carried over to a new checkpoint key after a compromise.

The keys/README.md procedure for a compromised key (``keys rotate checkpoint-signing
--overlap-hours 0``, then ``keys retire``) leaves the latest checkpoint signed by a retired key,
which the sequencer refuses (``checkpoint_unverified``) at every step. `resign_head` re-signs the
head with the new key once the entries, the witness and a saved checkpoint show it is the log's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from gateway.audit.export import verify_database, verify_export, write_export
from gateway.audit.resign import resign_head
from gateway.audit.sequencer import sequence
from gateway.audit.signer import RingNoteSigner, log_verifier, verifier_keys
from gateway.audit.witness import CheckpointWitness, witness_path
from gateway.errors import AuditLogInconsistent
from gateway.settings import Settings
from gateway.store import Database
from gateway.store.models import AuditCheckpoint, AuditEntry
from keys import FileKeyRepository, Purpose, generate_development_keys, generate_kek_file
from tests.gateway.audit.cli_support import Run, in_process_cli
from tests.gateway.audit.conftest import DB_ORIGIN, append_entries

CHECKPOINT = Purpose.CHECKPOINT_SIGNING


@pytest.fixture
def repository(tmp_path: Path) -> FileKeyRepository:
    """A key directory of its own: these tests rotate and retire its checkpoint key."""
    kek = generate_kek_file(tmp_path / "kek.bin")
    return generate_development_keys(tmp_path / "keys", kek, "development")


@pytest.fixture
def signer(repository: FileKeyRepository) -> RingNoteSigner:
    return RingNoteSigner(
        DB_ORIGIN,
        lambda: repository.ring(CHECKPOINT),
        reread=lambda: repository.ring_reread(CHECKPOINT),
    )


@pytest.fixture
def witness(tmp_path: Path) -> CheckpointWitness:
    return CheckpointWitness(tmp_path / "witness" / "log.note")


def _compromised(repository: FileKeyRepository, *, destroy: bool = False) -> str:
    """keys/README.md step 1 for the checkpoint key: rotate with no overlap, retire the old
    (and, with ``destroy``, destroy its private half: its public half checks the old head)."""
    old = repository.ring(CHECKPOINT).current("Ed25519").kid
    repository.rotate(CHECKPOINT, dt.timedelta(hours=0))
    repository.retire(CHECKPOINT, old)
    if destroy:
        assert [info.kid for info in repository.destroy(CHECKPOINT, [old])] == [old]
    return old


async def _heads(db: Database) -> list[tuple[int, str]]:
    async with db.read() as session:
        rows = (await session.scalars(select(AuditCheckpoint))).all()
    return sorted((row.tree_size, row.note) for row in rows)


async def _administration(db: Database) -> list[dict[str, Any]]:
    async with db.read() as session:
        rows = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.operation == "administration")
            )
        ).all()
    return [dict(row.detail) for row in rows]


async def _wedged(db: Database, signer: RingNoteSigner, witness: CheckpointWitness) -> None:
    with pytest.raises(AuditLogInconsistent) as caught:
        await sequence(db, signer, DB_ORIGIN, witness=witness)
    assert caught.value.diagnostics["reason"] == "checkpoint_unverified"


@pytest.mark.parametrize("destroy", [False, True], ids=["retired", "destroyed"])
async def test_compromise_procedure_then_resign_head_lets_the_sequencer_resume(
    db: Database,
    repository: FileKeyRepository,
    signer: RingNoteSigner,
    witness: CheckpointWitness,
    tmp_path: Path,
    destroy: bool,
) -> None:
    """The review's scenario end to end: after rotate (no overlap) and retire, the sequencer is
    wedged; resign-head signs the same head with the new key, records who did it from which
    key, and the sequencer signs new checkpoints; the log verifies with the published keys
    alone (database, witness and export pack). The same once the old key's private half is
    destroyed (keys destroy): its public half still checks the head it signed."""
    await append_entries(db, 3)
    await sequence(db, signer, DB_ORIGIN, witness=witness)
    await append_entries(db, 2, start=3)
    before = await sequence(db, signer, DB_ORIGIN, witness=witness)
    assert before.tree_size == 5
    old = _compromised(repository, destroy=destroy)
    new = signer.kid
    await append_entries(db, 2, start=5)
    await _wedged(db, signer, witness)

    done = await resign_head(db, signer, DB_ORIGIN, witness=witness, officer="cli:ops")
    assert (done.tree_size, done.root_hash, done.resigned) == (5, before.root_hash, True)
    assert (done.kid, done.from_kids, done.witness_size, done.witness_written) == (
        new,
        (old,),
        5,
        True,
    )
    assert witness.read() == done.note
    assert [size for size, _ in await _heads(db)] == [3, 5]
    assert (await _heads(db))[-1][1] == done.note
    published = log_verifier(DB_ORIGIN, repository.ring(CHECKPOINT))
    assert published.verify(done.note).root_hash == before.root_hash
    assert await _administration(db) == [
        {
            "action": "audit_head_resigned",
            "via": "cli",
            "tree_size": 5,
            "root_hash": before.root_hash.hex(),
            "kid": new,
            "from_kids": [old],
            "witness_size": 5,
            "saved_checkpoint_size": None,
        }
    ]

    resumed = await sequence(db, signer, DB_ORIGIN, witness=witness)
    assert (resumed.previous_size, resumed.tree_size) == (5, 8)  # two entries and the record
    await append_entries(db, 1, start=7)
    assert (await sequence(db, signer, DB_ORIGIN, witness=witness)).tree_size == 9

    report = verify_database(db.url, published, witness=witness.read())
    assert report.ok, report.detail
    assert report.tree_size == 9 and report.witness is not None and report.witness.size == 9
    pack = tmp_path / "pack.jsonl"
    keys = verifier_keys(DB_ORIGIN, repository.ring(CHECKPOINT))
    with pack.open("w", encoding="utf-8") as out:
        write_export(db.url, out, verifier_keys=keys)
    assert verify_export(pack, verifier_keys=keys).ok

    again = await resign_head(db, signer, DB_ORIGIN, witness=witness, officer="cli:ops")
    assert not again.resigned and again.tree_size == 9 and again.note == witness.read()
    assert len(await _administration(db)) == 1  # nothing to do, nothing recorded


async def test_resign_head_refuses_an_entry_edited_since_the_head_was_signed(
    db: Database,
    repository: FileKeyRepository,
    signer: RingNoteSigner,
    witness: CheckpointWitness,
) -> None:
    """An entry under the head no longer as signed (edited in the database): refused, nothing
    signed, stored or written to the witness."""
    await append_entries(db, 4)
    head = await sequence(db, signer, DB_ORIGIN, witness=witness)
    _compromised(repository)
    async with db.write() as session:
        await session.execute(
            update(AuditEntry).where(AuditEntry.seq == 2).values(purpose="covert")
        )
    with pytest.raises(AuditLogInconsistent) as caught:
        await resign_head(db, signer, DB_ORIGIN, witness=witness, officer="cli:ops")
    assert caught.value.diagnostics["reason"] == "log_unverified"
    assert caught.value.diagnostics["problem"] == "edited"
    assert caught.value.diagnostics["seq"] == 2
    assert await _heads(db) == [(4, str(head.note))]
    assert witness.read() == head.note
    assert await _administration(db) == []
    await _wedged(db, signer, witness)


async def test_resign_head_refuses_a_head_the_witness_does_not_hold(
    db: Database,
    repository: FileKeyRepository,
    signer: RingNoteSigner,
    witness: CheckpointWitness,
) -> None:
    """The database rolled back to an older, genuinely signed head: the witness holds a larger
    tree, so the head is not re-signed (that would bless the rollback)."""
    await append_entries(db, 3)
    older = await sequence(db, signer, DB_ORIGIN, witness=witness)
    await append_entries(db, 3, start=3)
    newest = await sequence(db, signer, DB_ORIGIN, witness=witness)
    _compromised(repository)
    async with db.write() as session:
        await session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.tree_size > 3))
        await session.execute(
            update(AuditEntry).where(AuditEntry.seq >= 3).values(seq=None, leaf_hash=None)
        )
    with pytest.raises(AuditLogInconsistent) as caught:
        await resign_head(db, signer, DB_ORIGIN, witness=witness, officer="cli:ops")
    assert caught.value.diagnostics["reason"] == "log_unverified"
    assert caught.value.diagnostics["against"] == "checkpoint witness"
    assert caught.value.diagnostics["problem"] == "truncated"
    assert await _heads(db) == [(3, str(older.note))]
    assert witness.read() == newest.note
    assert await _administration(db) == []


async def test_resign_head_needs_the_witness_or_a_saved_checkpoint(
    db: Database,
    repository: FileKeyRepository,
    signer: RingNoteSigner,
    witness: CheckpointWitness,
) -> None:
    """Without a witness file there is nothing outside the database to hold the head to: it is
    refused, unless a checkpoint saved earlier is given, which the entries must extend."""
    await append_entries(db, 3)
    saved = await sequence(db, signer, DB_ORIGIN)
    await append_entries(db, 2, start=3)
    head = await sequence(db, signer, DB_ORIGIN)
    _compromised(repository)
    with pytest.raises(AuditLogInconsistent) as caught:
        await resign_head(db, signer, DB_ORIGIN, witness=witness, officer="cli:ops")
    assert caught.value.diagnostics == {"reason": "witness_missing"}
    assert await _heads(db) == [(3, str(saved.note)), (5, str(head.note))]

    done = await resign_head(
        db, signer, DB_ORIGIN, witness=witness, officer="cli:ops", saved=saved.note
    )
    assert done.resigned and done.tree_size == 5 and witness.read() == done.note
    assert (await _administration(db))[0]["saved_checkpoint_size"] == 3


async def test_resign_head_refuses_a_log_rewritten_by_whoever_held_the_key(
    db: Database,
    repository: FileKeyRepository,
    signer: RingNoteSigner,
    witness: CheckpointWitness,
) -> None:
    """The attack the compromise procedure is for: with the old key (and the host), the log was
    rewritten and signed again from scratch, the witness replaced. Only the checkpoint saved
    off the host before the compromise shows it, and resign-head then refuses."""
    await append_entries(db, 4)
    saved = await sequence(db, signer, DB_ORIGIN, witness=witness)
    async with db.write() as session:
        await session.execute(
            update(AuditEntry).where(AuditEntry.seq == 1).values(outcome="refused")
        )
        await session.execute(update(AuditEntry).values(seq=None, leaf_hash=None))
        await session.execute(delete(AuditCheckpoint))
    witness.path.unlink()
    forged = await sequence(db, signer, DB_ORIGIN, witness=witness)  # still the old key
    assert forged.tree_size == 4 and witness.read() == forged.note
    _compromised(repository)

    with pytest.raises(AuditLogInconsistent) as caught:
        await resign_head(
            db, signer, DB_ORIGIN, witness=witness, officer="cli:ops", saved=saved.note
        )
    assert caught.value.diagnostics["against"] == "saved checkpoint"
    assert caught.value.diagnostics["problem"] == "root_mismatch"
    assert await _heads(db) == [(4, str(forged.note))]
    assert await _administration(db) == []


# --- The command -------------------------------------------------------------------------------


@pytest.fixture
def cli(
    sqlite_url: str,
    repository: FileKeyRepository,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Run]:
    environment = {
        "MAPPA_PROFILE": "development",  # the repository fixture's keys are development keys
        "MAPPA_DATABASE_URL": sqlite_url,
        "MAPPA_ISSUER": "https://gateway.test",
        "MAPPA_KEYS_DIR": str(tmp_path / "keys"),
        "MAPPA_KEK_FILE": str(tmp_path / "kek.bin"),
        # One process runs every command here, and keeps its key repository: re-read the rings
        # at once, as a new process would after the rotation.
        "MAPPA_KEY_REFRESH_SECONDS": "0.001",
    }
    yield from in_process_cli(environment, monkeypatch, capsys)


def test_audit_resign_head_command_after_the_compromise_procedure(
    sqlite_url: str, repository: FileKeyRepository, cli: Run, tmp_path: Path
) -> None:
    """``mappa-gateway audit resign-head``: the wedged sequencer runs again and ``audit verify``
    passes, with the witness; a saved checkpoint of another tree makes it refuse (exit 1)."""

    async def grow(count: int, start: int) -> None:
        db = Database(sqlite_url)
        try:
            await append_entries(db, count, start=start)
        finally:
            await db.dispose()

    asyncio.run(grow(3, 0))
    status, output = cli("audit", "sequence")
    assert status == 0, output
    saved = tmp_path / "saved.note"
    assert cli("audit", "checkpoint", "--out", str(saved))[0] == 0
    _compromised(repository)
    asyncio.run(grow(2, 3))
    status, output = cli("audit", "sequence")
    assert status == 1 and "checkpoint_unverified" in output, output

    elsewhere = tmp_path / "other.note"
    elsewhere.write_text(saved.read_text().replace("\n3\n", "\n2\n", 1), encoding="utf-8")
    status, output = cli("audit", "resign-head", "--checkpoint", str(elsewhere))
    assert status == 1 and "NOT re-signed" in output, output

    status, output = cli("audit", "resign-head", "--checkpoint", str(saved), "--officer", "ops")
    assert status == 0, output
    assert "re-signed by checkpoint key" in output and "tree size 3" in output
    status, output = cli("audit", "sequence")
    assert status == 0 and "tree size 6" in output, output
    status, output = cli("audit", "verify")
    assert status == 0 and "checkpoint witness of size 6 extended" in output, output
    settings = Settings(
        profile="development",
        database_url=sqlite_url,
        issuer="https://gateway.test",
        keys_dir=tmp_path / "keys",
        kek_file=tmp_path / "kek.bin",
    )
    assert witness_path(settings).read_text(encoding="utf-8").count("\n\u2014 ") == 1
