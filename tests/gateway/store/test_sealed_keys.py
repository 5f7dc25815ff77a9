"""The case sealer's blind-index secret: generated in development only, refused when missing or
unreadable elsewhere (never silently replaced), and still opening after a KEK rewrap."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.keyring import KeyRepositoryUnavailable
from gateway.settings import Profile, Settings
from gateway.state import GatewayState
from gateway.store import Database
from gateway.store.sealed import install_case_store, open_case_sealer
from keys import (
    BLIND_INDEX_FILE,
    FileKeyRepository,
    LocalKek,
    generate_kek_file,
    kek_from_file,
    load_blind_index,
)

PNC = "2019/0123456A"


@pytest.fixture
def own_keys(tmp_path: Path, gateway_keys: tuple[Path, Path]) -> tuple[Path, Path]:
    """A private copy of the gateway's keys and KEK, so a test may remove or rewrap them."""
    shutil.copytree(gateway_keys[0], tmp_path / "keys")
    shutil.copy(gateway_keys[1], tmp_path / "kek.bin")
    return tmp_path / "keys", tmp_path / "kek.bin"


def _settings(profile: Profile, keys: tuple[Path, Path]) -> Settings:
    return Settings(
        profile=profile,
        # production refuses SQLite; nothing here connects to the database
        database_url="postgresql+psycopg://gateway@127.0.0.1:5432/gateway",
        issuer="https://gateway.test",
        keys_dir=keys[0],
        kek_file=keys[1],
    )


@pytest.mark.parametrize("profile", ["production", "test"])
def test_a_missing_secret_is_refused_outside_development_and_never_regenerated(
    profile: Profile, own_keys: tuple[Path, Path]
) -> None:
    """A key directory restored without blind-index.json does not get a new secret (which would
    match no stored PNC/CRN/ViSOR index): the case sealer is refused, saying what to do."""
    path = own_keys[0] / BLIND_INDEX_FILE
    path.unlink(missing_ok=True)
    with pytest.raises(KeyRepositoryUnavailable) as refused:
        open_case_sealer(_settings(profile, own_keys))
    assert "no blind-index secret" in str(refused.value)
    assert "restore it from the key directory's backup" in str(refused.value)
    assert not path.exists()


async def test_production_refuses_to_start_without_the_secret(
    sqlite_url: str, own_keys: tuple[Path, Path]
) -> None:
    """Like a missing signing key: production does not start; nothing is written."""
    (own_keys[0] / BLIND_INDEX_FILE).unlink(missing_ok=True)
    db = Database(sqlite_url)
    try:
        state = GatewayState(settings=_settings("production", own_keys), db=db)
        with pytest.raises(KeyRepositoryUnavailable):
            install_case_store(state)
        assert state.case_sealer is None
    finally:
        await db.dispose()
    assert not (own_keys[0] / BLIND_INDEX_FILE).exists()


async def test_other_profiles_start_without_case_data(
    sqlite_url: str, own_keys: tuple[Path, Path]
) -> None:
    """The test profile starts with no case sealer (case calls answer 503); nothing is written."""
    (own_keys[0] / BLIND_INDEX_FILE).unlink(missing_ok=True)
    db = Database(sqlite_url)
    try:
        state = GatewayState(settings=_settings("test", own_keys), db=db)
        install_case_store(state)
        assert state.case_sealer is None
        assert "case_data" not in state.loaded_key_purposes
    finally:
        await db.dispose()
    assert not (own_keys[0] / BLIND_INDEX_FILE).exists()


def test_development_generates_a_missing_secret_once(tmp_path: Path) -> None:
    """In development a missing secret is generated, like every other key, then kept."""
    keys = (tmp_path / "keys", tmp_path / "kek.bin")
    settings = Settings(profile="development", keys_dir=keys[0], kek_file=keys[1])
    first = open_case_sealer(settings).index("pnc", PNC)
    assert (keys[0] / BLIND_INDEX_FILE).exists()
    assert open_case_sealer(settings).index("pnc", PNC) == first


def test_an_unreadable_secret_is_not_replaced_even_in_development(
    tmp_path: Path, own_keys: tuple[Path, Path]
) -> None:
    """A secret under another KEK is refused in every profile, never overwritten."""
    path = own_keys[0] / BLIND_INDEX_FILE
    path.unlink(missing_ok=True)
    load_blind_index(own_keys[0], LocalKek(bytes(32)), create=True)
    before = path.read_bytes()
    with pytest.raises(KeyRepositoryUnavailable):
        open_case_sealer(_settings("development", own_keys))
    assert path.read_bytes() == before


def test_after_a_kek_rewrap_the_case_sealer_opens_under_the_new_kek(
    tmp_path: Path, own_keys: tuple[Path, Path]
) -> None:
    """The documented KEK rotation (rewrap, then the new KEK file only) keeps the case sealer
    and its indexes: the same PNC gives the same blind index."""
    before = open_case_sealer(_settings("test", own_keys)).index("pnc", PNC)
    new_kek = tmp_path / "kek-new.bin"
    generate_kek_file(new_kek)
    FileKeyRepository(own_keys[0], kek_from_file(own_keys[1])).rewrap(kek_from_file(new_kek))
    after = open_case_sealer(_settings("production", (own_keys[0], new_kek)))
    assert after.index("pnc", PNC) == before
