"""The metadata of a key file (status, dates, purpose, alg) is sealed under the KEK: an edited
file is refused, by a running process as by a fresh one; ``keys seal-metadata`` upgrades a key
directory written before metadata seals."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from keys import (
    Envelope,
    FileKeyRepository,
    KeysError,
    KeyStatus,
    KeyStoreError,
    KeyUnknown,
    LocalKek,
    Purpose,
    generate_development_keys,
)
from keys._keyfiles import seal_meta
from tests.keys.keys_support import T0


def _path(repository: FileKeyRepository, purpose: Purpose, kid: str) -> Path:
    return repository.directory / purpose.value / f"{kid}.json"


def _edit(path: Path, **fields: Any) -> None:
    record = json.loads(path.read_text())
    record.update(fields)
    path.write_text(json.dumps(record))


def _key_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*/*.json"))


def _unseal_metadata(directory: Path) -> None:
    """Make the directory look as an older version wrote it: no metadata seals."""
    for path in _key_files(directory):
        record = json.loads(path.read_text())
        del record["meta_seal"]
        path.write_text(json.dumps(record))


def _snapshot(directory: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in _key_files(directory)}


def _retired_pair(repository: FileKeyRepository) -> tuple[str, str]:
    """Rotate token-signing and retire the old key: (old kid, new kid)."""
    old = repository.ring(Purpose.TOKEN_SIGNING).current(now=T0).kid
    (new,) = repository.rotate(Purpose.TOKEN_SIGNING, timedelta(hours=1), now=T0)
    repository.retire(Purpose.TOKEN_SIGNING, old, now=T0)
    return old, new.kid


@pytest.mark.parametrize(
    "edit",
    [
        {"status": "current", "retire_after": None},
        {"status": "previous", "retire_after": "2099-01-01T00:00:00+00:00"},
        {"retire_after": None},
        {"created_at": "2099-01-01T00:00:00+00:00"},
    ],
)
def test_a_key_file_with_edited_metadata_is_refused(
    repository: FileKeyRepository, edit: dict[str, Any]
) -> None:
    """Someone with write access to the key directory edits a retired key's file (back to
    current, its retirement moved or erased, its dates changed): the file no longer matches its
    metadata seal, and the ring is refused, not served, in the process that had loaded it and in
    a fresh one."""
    running = FileKeyRepository(repository.directory, repository._envelope)
    old, _ = _retired_pair(running)
    assert running.ring(Purpose.TOKEN_SIGNING).usable_key(old, now=T0) is None
    _edit(_path(running, Purpose.TOKEN_SIGNING, old), **edit)
    running.reload()
    with pytest.raises(KeyStoreError, match="does not match its seal"):
        running.ring(Purpose.TOKEN_SIGNING)
    with pytest.raises(KeyStoreError, match="does not match its seal"):
        FileKeyRepository(repository.directory, repository._envelope).ring(Purpose.TOKEN_SIGNING)


def test_a_key_file_copied_into_another_purpose_is_refused_by_its_metadata_seal(
    repository: FileKeyRepository,
) -> None:
    """The reviewer's reproduction (purpose edited, blobs untouched) meets the metadata seal
    first; the private key's associated data would refuse it next."""
    running = FileKeyRepository(repository.directory, repository._envelope)
    kid = running.ring(Purpose.TOKEN_SIGNING).current(now=T0).kid
    source = _path(running, Purpose.TOKEN_SIGNING, kid)
    target = _path(running, Purpose.PAYLOAD_SIGNING, kid)
    target.write_bytes(source.read_bytes())
    _edit(target, purpose="payload-signing")
    running.reload()
    with pytest.raises(KeyStoreError, match="does not match its seal"):
        running.ring(Purpose.PAYLOAD_SIGNING)


def test_the_seals_written_by_rotate_and_retire_are_accepted(
    repository: FileKeyRepository,
) -> None:
    """rotate and retire reseal what they change: a fresh process reads their statuses."""
    old, new = _retired_pair(repository)
    fresh = FileKeyRepository(repository.directory, repository._envelope)
    statuses = {i.kid: i.status for i in fresh.ring(Purpose.TOKEN_SIGNING).infos()}
    assert statuses == {old: KeyStatus.RETIRED, new: KeyStatus.CURRENT}


def test_a_directory_without_metadata_seals_is_refused_until_seal_metadata(
    repository: FileKeyRepository,
) -> None:
    """A key directory written before metadata seals is refused with the command that upgrades
    it; seal-metadata seals every file once (then has nothing to do) and the keys load again."""
    kids = {(i.purpose, i.kid) for i in repository.list()}
    _unseal_metadata(repository.directory)
    with pytest.raises(KeyStoreError, match="keys seal-metadata"):
        FileKeyRepository(repository.directory, repository._envelope).ring(Purpose.TOKEN_SIGNING)
    upgrader = FileKeyRepository(repository.directory, repository._envelope)
    assert {(i.purpose, i.kid) for i in upgrader.seal_metadata()} == kids
    assert upgrader.seal_metadata() == []
    fresh = FileKeyRepository(repository.directory, repository._envelope)
    assert {(i.purpose, i.kid) for i in fresh.list()} == kids


def test_seal_metadata_refuses_a_file_whose_key_does_not_open_and_writes_nothing(
    repository: FileKeyRepository,
) -> None:
    """An unsealed key file copied into another purpose's folder is not given a seal: its key
    does not open for that purpose. Nothing is written, not even the good files' seals."""
    kid = repository.ring(Purpose.TOKEN_SIGNING).current(now=T0).kid
    _unseal_metadata(repository.directory)
    target = _path(repository, Purpose.PAYLOAD_SIGNING, kid)
    target.write_bytes(_path(repository, Purpose.TOKEN_SIGNING, kid).read_bytes())
    _edit(target, purpose="payload-signing")
    before = _snapshot(repository.directory)
    with pytest.raises(KeysError, match=r"envelope|aes-gcm"):
        repository.seal_metadata()
    assert _snapshot(repository.directory) == before


def test_seal_metadata_reseal_accepts_a_named_key(repository: FileKeyRepository) -> None:
    """A file an older version retired after the upgrade (status changed, seal not) is refused;
    the operator, having checked it, reseals that kid alone. An unknown kid is refused."""
    old = repository.ring(Purpose.TOKEN_SIGNING).current(now=T0).kid
    repository.rotate(Purpose.TOKEN_SIGNING, timedelta(hours=1), now=T0)
    _edit(_path(repository, Purpose.TOKEN_SIGNING, old), status="retired")
    fresh = FileKeyRepository(repository.directory, repository._envelope)
    with pytest.raises(KeyStoreError, match="does not match its seal"):
        fresh.ring(Purpose.TOKEN_SIGNING)
    with pytest.raises(KeyUnknown):
        fresh.seal_metadata(reseal=["A" * 43])
    (sealed,) = fresh.seal_metadata(reseal=[old])
    assert (sealed.kid, sealed.status) == (old, KeyStatus.RETIRED)
    assert fresh.ring(Purpose.TOKEN_SIGNING).usable_key(old, now=T0) is None


def test_rewrap_moves_the_metadata_seals_and_needs_them(
    repository: FileKeyRepository, kek: LocalKek
) -> None:
    """A rewrap moves each metadata seal with its key (the metadata still checked under the new
    KEK alone); a directory not yet upgraded is refused before anything is written."""
    new = LocalKek(os.urandom(32))
    repository.rewrap(new)
    fresh = FileKeyRepository(repository.directory, new)
    old_kid, _ = _retired_pair(fresh)
    _edit(_path(fresh, Purpose.TOKEN_SIGNING, old_kid), status="current")
    with pytest.raises(KeyStoreError, match="does not match its seal"):
        FileKeyRepository(repository.directory, new).list()

    other = generate_development_keys(repository.directory.parent / "old", kek, "development")
    _unseal_metadata(other.directory)
    before = _snapshot(other.directory)
    with pytest.raises(KeyStoreError, match="keys seal-metadata"):
        other.rewrap(LocalKek(os.urandom(32)))
    assert _snapshot(other.directory) == before


def test_development_keys_made_before_metadata_seals_are_sealed_on_start(
    repository: FileKeyRepository,
) -> None:
    """The development profile upgrades its own directory (generate_development_keys)."""
    _unseal_metadata(repository.directory)
    again = generate_development_keys(repository.directory, repository._envelope, "development")
    assert len(FileKeyRepository(again.directory, again._envelope).list()) == 5


def test_a_forged_metadata_seal_needs_the_kek(repository: FileKeyRepository) -> None:
    """A seal made under another KEK (all an attacker without the KEK can make) is refused."""
    old, _ = _retired_pair(repository)
    path = _path(repository, Purpose.TOKEN_SIGNING, old)
    record = json.loads(path.read_text())
    record["status"] = "current"
    record["meta_seal"] = seal_meta(Envelope(LocalKek(os.urandom(32))), record)
    path.write_text(json.dumps(record))
    with pytest.raises(KeysError):
        FileKeyRepository(repository.directory, repository._envelope).ring(Purpose.TOKEN_SIGNING)
