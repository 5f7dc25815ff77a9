"""``mappa-gateway keys ...``: the gateway's key changes are recorded in the audit log
(gateway.key_audit), with the keys' public metadata and never their material."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.cli import main as gateway_main
from gateway.settings import get_settings
from gateway.store import Database
from gateway.store.models import AuditEntry
from keys import FileKeyRepository, Purpose, kek_from_file


def _run(argv: list[str]) -> int:
    get_settings.cache_clear()
    try:
        return gateway_main(argv)
    finally:
        get_settings.cache_clear()


async def _key_entries(database_url: str) -> list[AuditEntry]:
    db = Database(database_url)
    try:
        async with db.read() as session:
            rows = await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.reason_code.like("keys_%"))
                .order_by(AuditEntry.id)
            )
            return list(rows.all())
    finally:
        await db.dispose()


@pytest.fixture
def keys_env(
    sqlite_url: str,
    gateway_keys: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """The gateway's settings in the environment, over a copy of the session's keys."""
    keys_dir = Path(shutil.copytree(gateway_keys[0], tmp_path / "keys"))
    for name in ("MAPPA_KEK", "MAPPA_PREVIOUS_KEK_FILES", "MAPPA_PREVIOUS_KEKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAPPA_PROFILE", "test")
    monkeypatch.setenv("MAPPA_ISSUER", "https://gateway.test")
    monkeypatch.setenv("MAPPA_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MAPPA_KEYS_DIR", str(keys_dir))
    monkeypatch.setenv("MAPPA_KEK_FILE", str(gateway_keys[1]))
    return keys_dir


def test_rotate_retire_and_destroy_are_recorded_with_public_metadata_only(
    keys_env: Path, sqlite_url: str, gateway_keys: tuple[Path, Path]
) -> None:
    """Each change is one administration entry naming what was asked and the purpose's keys as
    they stand after it; a command that fails records nothing; no private key value appears."""
    repository = FileKeyRepository(keys_env, kek_from_file(gateway_keys[1]))
    old = repository.ring(Purpose.TOKEN_SIGNING).current().kid
    private = repository.ring(Purpose.TOKEN_SIGNING).current().jose_key.as_dict(private=True)
    assert _run(["keys", "rotate", "token-signing", "--overlap-hours", "1"]) == 0
    assert _run(["keys", "retire", "token-signing", "--", old]) == 0
    assert _run(["keys", "destroy", "token-signing", "--", old]) == 0
    new = FileKeyRepository(keys_env, kek_from_file(gateway_keys[1]))
    current = new.ring(Purpose.TOKEN_SIGNING).current().kid
    assert _run(["keys", "destroy", "token-signing", "--", current]) == 1  # not retired

    entries = asyncio.run(_key_entries(sqlite_url))  # the commands run their own loops
    assert [e.reason_code for e in entries] == ["keys_rotate", "keys_retire", "keys_destroy"]
    assert {(e.operation, e.outcome) for e in entries} == {("administration", "allowed")}
    rotate, retire, destroy = (dict(e.detail) for e in entries)
    assert rotate["purpose"] == "token-signing" and rotate["overlap_hours"] == 1.0
    statuses = {k["kid"]: k["status"] for k in rotate["keys"]}
    assert statuses == {old: "previous", current: "current"}
    assert retire["kids"] == [old]
    assert {k["kid"]: k["status"] for k in retire["keys"]}[old] == "retired"
    assert destroy["kids"] == [old]
    [gone] = [k for k in destroy["keys"] if k["kid"] == old]
    assert gone["destroyed_at"] is not None
    text = json.dumps([e.detail for e in entries])
    assert private["d"] not in text and "sealed" not in text


def test_a_change_that_cannot_be_recorded_stands_and_says_so(
    keys_env: Path,
    gateway_keys: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No database to record in (a new installation before db upgrade, or the database down):
    the keys change all the same, the command exits 0, and stderr says the change is not in the
    audit log, to be recorded by hand."""
    missing = tmp_path / "nowhere" / "gateway.db"
    monkeypatch.setenv("MAPPA_DATABASE_URL", f"sqlite+aiosqlite:///{missing}")
    before = len(FileKeyRepository(keys_env, kek_from_file(gateway_keys[1])).list())
    assert _run(["keys", "rotate", "payload-signing"]) == 0
    after: Any = FileKeyRepository(keys_env, kek_from_file(gateway_keys[1])).list()
    assert len(after) == before + 1
    err = capsys.readouterr().err
    assert "NOT in the audit log" in err and "keys rotate" in err
