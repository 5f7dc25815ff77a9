"""Blind indexes: equal identifiers match, the secret is sealed at rest, creation is atomic and
only where keys are made, and a KEK rewrap moves it with the keys, all or nothing."""

from __future__ import annotations

import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from keys import (
    BLIND_INDEX_FILE,
    BlindIndex,
    FileKeyRepository,
    KekUnavailable,
    KeysError,
    KeyStoreError,
    LocalKek,
    generate_development_keys,
    init_blind_index,
    load_blind_index,
)

PNC = "2019/0123456A"


def _snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (but the lock) and its bytes."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


def test_equal_identifiers_give_equal_indexes_after_normalising(
    tmp_path: Path, kek: LocalKek
) -> None:
    """Case and spacing do not matter; kind and value do."""
    index = load_blind_index(tmp_path, kek, create=True)
    assert index.index("pnc", "2019/0123456A") == index.index("pnc", " 2019/0123456a ")
    assert index.index("pnc", "2019/0123456A") != index.index("crn", "2019/0123456A")
    assert index.index("pnc", "2019/0123456A") != index.index("pnc", "2019/0123456B")
    assert len(index.index("crn", "X123456")) == 64


def test_secret_survives_reload_and_is_sealed_on_disk(tmp_path: Path, kek: LocalKek) -> None:
    """A second load reads the same secret; the file is 0600 and holds no raw secret."""
    first = load_blind_index(tmp_path, kek, create=True)
    second = load_blind_index(tmp_path, kek)
    assert first.index("visor", "V1") == second.index("visor", "V1")
    path = tmp_path / BLIND_INDEX_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["format"] == "mappa-blind-index/v1"
    assert set(document) == {"format", "sealed"}


def test_another_kek_cannot_open_the_secret(tmp_path: Path, kek: LocalKek) -> None:
    """The secret is bound to the KEK that sealed it."""
    load_blind_index(tmp_path, kek, create=True)
    with pytest.raises(KeysError):
        load_blind_index(tmp_path, LocalKek(os.urandom(32)))


def test_missing_secret_without_create_is_refused(tmp_path: Path, kek: LocalKek) -> None:
    """An operator can ask for the existing secret only (nothing is generated silently)."""
    with pytest.raises(KeysError):
        load_blind_index(tmp_path, kek, create=False)


def test_racing_creators_agree_on_one_secret(tmp_path: Path, kek: LocalKek) -> None:
    """Of several processes creating it at once, one wins and all use its secret."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        indexes = list(pool.map(lambda _: load_blind_index(tmp_path, kek, create=True), range(16)))
    assert len({i.index("pnc", "A1") for i in indexes}) == 1
    assert [p.name for p in tmp_path.iterdir()] == [BLIND_INDEX_FILE]


def test_secret_must_be_32_bytes_and_is_not_in_repr() -> None:
    """A short secret is refused; repr never shows the secret."""
    with pytest.raises(KeysError):
        BlindIndex(b"short")
    assert "secret>" in repr(BlindIndex(bytes(32)))


def test_missing_secret_is_refused_by_default_and_nothing_is_written(
    tmp_path: Path, kek: LocalKek
) -> None:
    """Without an explicit create, a missing secret is an error that says to restore it, and
    no new secret appears (a new one would match none of the stored indexes)."""
    with pytest.raises(KeyStoreError) as refused:
        load_blind_index(tmp_path, kek)
    assert "restore it from the key directory's backup" in refused.value.reason
    assert not (tmp_path / BLIND_INDEX_FILE).exists()
    assert list(tmp_path.iterdir()) == []


def test_development_keys_include_the_blind_index_secret(tmp_path: Path, kek: LocalKek) -> None:
    """Where keys are generated (development), the blind-index secret is too; once."""
    generate_development_keys(tmp_path / "keys", kek, "development")
    assert (tmp_path / "keys" / BLIND_INDEX_FILE).exists()
    first = load_blind_index(tmp_path / "keys", kek, create=False).index("pnc", PNC)
    generate_development_keys(tmp_path / "keys", kek, "development")
    assert load_blind_index(tmp_path / "keys", kek, create=False).index("pnc", PNC) == first


def test_init_creates_once_and_never_replaces(tmp_path: Path, kek: LocalKek) -> None:
    """init_blind_index (keys init-blind-index) makes the secret of a new installation; run
    again it keeps it, and an existing secret the KEK cannot open is refused, not replaced."""
    assert init_blind_index(tmp_path, kek) is True
    before = (tmp_path / BLIND_INDEX_FILE).read_bytes()
    assert init_blind_index(tmp_path, kek) is False
    assert (tmp_path / BLIND_INDEX_FILE).read_bytes() == before
    with pytest.raises(KeysError):
        init_blind_index(tmp_path, LocalKek(os.urandom(32)))
    assert (tmp_path / BLIND_INDEX_FILE).read_bytes() == before


def test_rewrap_moves_the_blind_index_with_the_keys(
    repository: FileKeyRepository, kek: LocalKek
) -> None:
    """After a KEK rewrap the new KEK alone opens the secret, and the same identifier gives the
    same index (stored indexes still match); the old KEK no longer opens it."""
    directory = repository.directory
    before = load_blind_index(directory, kek, create=True).index("pnc", PNC)
    kids = {info.kid for info in repository.list()}
    new = LocalKek(os.urandom(32))
    assert repository.rewrap(new) == 6  # five private keys and the blind-index secret
    assert load_blind_index(directory, new).index("pnc", PNC) == before
    assert {info.kid for info in FileKeyRepository(directory, new).list()} == kids
    with pytest.raises(KekUnavailable):
        load_blind_index(directory, kek)
    assert repository.rewrap(new) == 0  # idempotent


def test_rewrap_refused_before_writing_when_the_blind_index_does_not_open(
    repository: FileKeyRepository, kek: LocalKek
) -> None:
    """A blind-index secret the old KEK cannot open stops the rewrap before any file changes:
    the old KEK still opens every key."""
    (repository.directory / BLIND_INDEX_FILE).unlink(missing_ok=True)
    load_blind_index(repository.directory, LocalKek(os.urandom(32)), create=True)
    before = _snapshot(repository.directory)
    with pytest.raises(KekUnavailable):
        repository.rewrap(LocalKek(os.urandom(32)))
    assert _snapshot(repository.directory) == before
    assert len(FileKeyRepository(repository.directory, kek).list()) == 5


def test_rewrap_failing_while_replacing_files_puts_every_file_back(
    repository: FileKeyRepository, kek: LocalKek, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename that fails half-way (disk full, a read-only remount) leaves no file rewrapped:
    those already replaced are put back, so the old KEK opens everything as before."""
    load_blind_index(repository.directory, kek, create=True)
    before = _snapshot(repository.directory)
    replace = os.replace
    calls = []

    def failing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KeyStoreError):
        repository.rewrap(LocalKek(os.urandom(32)))
    monkeypatch.undo()
    assert _snapshot(repository.directory) == before
    assert len(FileKeyRepository(repository.directory, kek).list()) == 5
    load_blind_index(repository.directory, kek)


def test_rewrap_failing_its_check_after_writing_puts_every_file_back(
    repository: FileKeyRepository, kek: LocalKek, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the files written do not read back under the new KEK, the originals are restored."""
    load_blind_index(repository.directory, kek, create=True)
    before = _snapshot(repository.directory)

    def unreadable(*args: object, **kwargs: object) -> BlindIndex:
        raise KeyStoreError("cannot read the blind-index secret: OSError")

    monkeypatch.setattr("keys._rewrap.load_blind_index", unreadable)
    with pytest.raises(KeyStoreError):
        repository.rewrap(LocalKek(os.urandom(32)))
    assert _snapshot(repository.directory) == before
    assert len(FileKeyRepository(repository.directory, kek).list()) == 5
