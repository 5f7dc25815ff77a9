"""The checkpoint witness must be writable where this process sequences the log: a gateway whose
witness file cannot be kept has the protection against a rewritten log (checkpoints included)
silently off, so production refuses to start so, and other profiles say so in ``/metrics``."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from gateway.audit.log import latest_checkpoint
from gateway.audit.sequencer import sequence_once
from gateway.audit.service import (
    AuditWitnessUnwritable,
    install_audit,
    open_audit_keys,
    shutdown_audit,
)
from gateway.settings import Profile, Settings
from gateway.state import GatewayState
from gateway.store import Database


@pytest.fixture
def own_keys(tmp_path: Path, gateway_keys: tuple[Path, Path]) -> tuple[Path, Path]:
    """A private copy of the gateway's keys, so the witness folder made under it is this test's."""
    shutil.copytree(gateway_keys[0], tmp_path / "keys")
    shutil.copy(gateway_keys[1], tmp_path / "kek.bin")
    return tmp_path / "keys", tmp_path / "kek.bin"


def _settings(profile: Profile, keys: tuple[Path, Path], witness: Path) -> Settings:
    return Settings(
        profile=profile,
        # production refuses SQLite by name; the state below is given its database directly
        database_url="postgresql+psycopg://gateway@127.0.0.1:5432/gateway",
        issuer="https://gateway.test",
        keys_dir=keys[0],
        kek_file=keys[1],
        audit_checkpoint_file=witness,
        audit_sequence_interval_seconds=60,
    )


def _unwritable(tmp_path: Path) -> Path:
    """A witness path whose folder cannot be made (its parent is a file): refused even to root."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the witness folder should be")
    return blocker / "checkpoints" / "witness.note"


async def test_production_refuses_to_start_without_a_writable_witness(
    sqlite_url: str, own_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    db = Database(sqlite_url)
    state = GatewayState(settings=_settings("production", own_keys, _unwritable(tmp_path)), db=db)
    try:
        with pytest.raises(AuditWitnessUnwritable) as refused:
            install_audit(state)
        assert "MAPPA_AUDIT_CHECKPOINT_FILE" in str(refused.value)
        assert state.audit is not None and state.audit._task is None  # no sequencer started
    finally:
        await shutdown_audit(state)
        await db.dispose()


@pytest.mark.parametrize("profile", ["production", "test"])
async def test_a_writable_witness_starts_the_sequencer_which_keeps_it(
    db: Database, own_keys: tuple[Path, Path], tmp_path: Path, profile: Profile
) -> None:
    witness = tmp_path / "off-host" / "witness.note"
    state = GatewayState(settings=_settings(profile, own_keys, witness), db=db)
    try:
        install_audit(state)
        assert state.audit is not None and state.audit._task is not None
        for _ in range(200):  # the sequencer's first step signs the empty log at once
            if witness.exists():
                break
            await asyncio.sleep(0.025)
        async with db.read() as session:
            latest = await latest_checkpoint(session)
        assert latest is not None and witness.read_text() == latest.note
        assert not state.audit.health.witness_unwritable
    finally:
        await shutdown_audit(state)


async def test_other_profiles_start_and_report_the_unwritable_witness(
    db: Database, own_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    state = GatewayState(settings=_settings("test", own_keys, _unwritable(tmp_path)), db=db)
    try:
        install_audit(state)
        assert state.audit is not None and state.audit._task is not None
        assert state.audit.health.witness_unwritable
    finally:
        await shutdown_audit(state)


async def test_a_step_whose_witness_write_fails_says_so(
    db: Database, own_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """The checkpoint commits (the log is signed) and the step reports the witness unwritten,
    which the background sequencer turns into the /metrics gauge."""
    settings = _settings("test", own_keys, tmp_path / "w" / "witness.note")
    audit = open_audit_keys(settings)
    (tmp_path / "w" / "witness.note.lock").mkdir(parents=True)  # the write cannot take its lock
    step = await sequence_once(db, audit.signer, audit.origin, witness=audit.witness)
    assert step.note is not None and step.witnessed is False
    async with db.read() as session:
        latest = await latest_checkpoint(session)
    assert latest is not None and latest.note == step.note
    assert not (tmp_path / "w" / "witness.note").exists()
