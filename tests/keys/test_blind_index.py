"""Blind indexes: equal identifiers match, the secret is sealed at rest, creation is atomic."""

from __future__ import annotations

import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from keys import BLIND_INDEX_FILE, BlindIndex, KeysError, LocalKek, load_blind_index


def test_equal_identifiers_give_equal_indexes_after_normalising(
    tmp_path: Path, kek: LocalKek
) -> None:
    """Case and spacing do not matter; kind and value do."""
    index = load_blind_index(tmp_path, kek)
    assert index.index("pnc", "2019/0123456A") == index.index("pnc", " 2019/0123456a ")
    assert index.index("pnc", "2019/0123456A") != index.index("crn", "2019/0123456A")
    assert index.index("pnc", "2019/0123456A") != index.index("pnc", "2019/0123456B")
    assert len(index.index("crn", "X123456")) == 64


def test_secret_survives_reload_and_is_sealed_on_disk(tmp_path: Path, kek: LocalKek) -> None:
    """A second load reads the same secret; the file is 0600 and holds no raw secret."""
    first = load_blind_index(tmp_path, kek)
    second = load_blind_index(tmp_path, kek, create=False)
    assert first.index("visor", "V1") == second.index("visor", "V1")
    path = tmp_path / BLIND_INDEX_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["format"] == "mappa-blind-index/v1"
    assert set(document) == {"format", "sealed"}


def test_another_kek_cannot_open_the_secret(tmp_path: Path, kek: LocalKek) -> None:
    """The secret is bound to the KEK that sealed it."""
    load_blind_index(tmp_path, kek)
    with pytest.raises(KeysError):
        load_blind_index(tmp_path, LocalKek(os.urandom(32)), create=False)


def test_missing_secret_without_create_is_refused(tmp_path: Path, kek: LocalKek) -> None:
    """An operator can ask for the existing secret only (nothing is generated silently)."""
    with pytest.raises(KeysError):
        load_blind_index(tmp_path, kek, create=False)


def test_racing_creators_agree_on_one_secret(tmp_path: Path, kek: LocalKek) -> None:
    """Of several processes creating it at once, one wins and all use its secret."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        indexes = list(pool.map(lambda _: load_blind_index(tmp_path, kek), range(16)))
    assert len({i.index("pnc", "A1") for i in indexes}) == 1
    assert [p.name for p in tmp_path.iterdir()] == [BLIND_INDEX_FILE]


def test_secret_must_be_32_bytes_and_is_not_in_repr() -> None:
    """A short secret is refused; repr never shows the secret."""
    with pytest.raises(KeysError):
        BlindIndex(b"short")
    assert "secret>" in repr(BlindIndex(bytes(32)))
