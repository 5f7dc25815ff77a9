"""Development keys never serve outside the development profile: ``keys init-dev`` and
``generate_development_keys`` mark each key (its sealed metadata) and the directory, production
settings and repositories refuse them wherever the files are copied, ``init-dev`` refuses under
another configured profile, and ``keys init`` makes the first production keys."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import gateway.cli as gateway_cli
from gateway.settings import DEV_KEYS_MARKER, Settings, get_settings
from keys import (
    FileKeyRepository,
    KeyStoreError,
    LocalKek,
    ProfileRefused,
    Purpose,
    generate_development_keys,
    generate_kek_file,
    generate_keys,
)
from keys.cli import main as keys_main


def _production(keys_dir: Path, kek_file: Path) -> Settings:
    return Settings(
        profile="production",
        issuer="https://gateway.example",
        database_url="postgresql+psycopg://gw@127.0.0.1:5432/gw",
        keys_dir=keys_dir,
        kek_file=kek_file,
    )


@pytest.fixture
def kek_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("MAPPA_KEK", "MAPPA_PROFILE", "MAPPA_KEYS_DIR", "MAPPA_KEK_FILE"):
        monkeypatch.delenv(name, raising=False)
    generate_kek_file(tmp_path / "kek")
    return tmp_path / "kek"


def test_init_dev_marks_the_directory_and_production_refuses_it(
    tmp_path: Path, kek_file: Path
) -> None:
    keys_dir = tmp_path / "keys"
    assert (
        keys_main(
            [
                "keys",
                "init-dev",
                "--profile",
                "development",
                "--keys-dir",
                str(keys_dir),
                "--kek-file",
                str(kek_file),
            ]
        )
        == 0
    )
    assert (keys_dir / DEV_KEYS_MARKER).exists()
    with pytest.raises(ValueError, match="development keys"):
        _production(keys_dir, kek_file)


def test_development_keys_stay_refused_without_the_marker_or_copied(
    tmp_path: Path, kek_file: Path
) -> None:
    """The mark is in each key's sealed metadata: deleting the marker file, or copying the
    purpose folders to a new directory, does not make production accept them."""
    repository = generate_development_keys(tmp_path / "keys", _kek(kek_file), "development")
    (repository.directory / DEV_KEYS_MARKER).unlink()
    copy = tmp_path / "copied"
    for purpose in Purpose:
        shutil.copytree(repository.directory / purpose.value, copy / purpose.value)
    for directory in (repository.directory, copy):
        with pytest.raises(ValueError, match="development keys"):
            _production(directory, kek_file)
        production = FileKeyRepository(directory, _kek(kek_file), profile="production")
        with pytest.raises(ProfileRefused):
            production.ring(Purpose.TOKEN_SIGNING)
        # the development profile (and a tool with no profile) still reads them
        FileKeyRepository(directory, _kek(kek_file), profile="development").ring(
            Purpose.TOKEN_SIGNING
        )


def test_a_development_key_with_its_mark_removed_is_refused(tmp_path: Path, kek_file: Path) -> None:
    repository = generate_development_keys(tmp_path / "keys", _kek(kek_file), "development")
    (repository.directory / DEV_KEYS_MARKER).unlink()
    for path in (repository.directory / "token-signing").glob("*.json"):
        record = json.loads(path.read_text())
        del record["profile"]
        path.write_text(json.dumps(record))
    assert not any(
        '"profile"' in p.read_text() for p in (repository.directory / "token-signing").iterdir()
    )
    production = FileKeyRepository(repository.directory, _kek(kek_file), profile="production")
    with pytest.raises(KeyStoreError, match="does not match its seal"):
        production.ring(Purpose.TOKEN_SIGNING)


def test_init_dev_refuses_when_the_configured_profile_is_production(
    tmp_path: Path, kek_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_dir = tmp_path / "prod-keys"
    for name, value in {
        "MAPPA_PROFILE": "production",
        "MAPPA_ISSUER": "https://gateway.example",
        "MAPPA_DATABASE_URL": "postgresql+psycopg://gw@127.0.0.1:5432/gw",
        "MAPPA_KEYS_DIR": str(keys_dir),
        "MAPPA_KEK_FILE": str(kek_file),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        assert gateway_cli.main(["keys", "init-dev", "--profile", "development"]) == 1
    finally:
        get_settings.cache_clear()
    assert not keys_dir.exists() or not any(keys_dir.rglob("*.json"))


def test_keys_init_makes_production_keys_once(tmp_path: Path, kek_file: Path) -> None:
    keys_dir = tmp_path / "keys"
    argv = ["keys", "init", "--keys-dir", str(keys_dir), "--kek-file", str(kek_file)]
    assert keys_main(argv) == 0
    _production(keys_dir, kek_file)  # accepted
    production = FileKeyRepository(keys_dir, _kek(kek_file), profile="production")
    assert {info.purpose for info in production.list()} == set(Purpose)
    assert (keys_dir / "blind-index.json").exists()
    before = sorted(p.name for p in keys_dir.rglob("*.json"))
    assert keys_main(argv) == 1  # keys exist: refused, nothing written
    assert sorted(p.name for p in keys_dir.rglob("*.json")) == before
    with pytest.raises(KeyStoreError):
        generate_keys(keys_dir, _kek(kek_file))


def test_keys_init_refuses_a_development_directory(tmp_path: Path, kek_file: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / DEV_KEYS_MARKER).touch()
    with pytest.raises(KeyStoreError):
        generate_keys(tmp_path / "keys", _kek(kek_file))


def _kek(path: Path) -> LocalKek:
    from keys import kek_from_file

    kek = kek_from_file(path)
    assert isinstance(kek, LocalKek)
    return kek


def test_unmarked_keys_are_production_keys(tmp_path: Path) -> None:
    """Keys written without the mark (production, or before it existed) open as before."""
    kek = LocalKek(os.urandom(32))
    generate_keys(tmp_path / "keys", kek)
    FileKeyRepository(tmp_path / "keys", kek, profile="production").ring(Purpose.TOKEN_SIGNING)


def test_keys_init_refuses_the_development_profile(
    tmp_path: Path, kek_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the development profile keys init would make development keys, which every other
    profile refuses: it says what to do instead and writes nothing."""
    monkeypatch.setenv("MAPPA_PROFILE", "development")
    keys_dir = tmp_path / "keys"
    argv = ["keys", "init", "--keys-dir", str(keys_dir), "--kek-file", str(kek_file)]
    assert keys_main(argv) == 2
    assert not keys_dir.exists() or not any(keys_dir.rglob("*.json"))
