"""Shared fixtures for keys/ tests: KEKs, a gateway key directory, an agency key directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from keys import FileKeyRepository, LocalKek, generate_development_keys
from tests.keys.keys_support import T0, Party


@pytest.fixture
def kek() -> LocalKek:
    return LocalKek(os.urandom(32))


@pytest.fixture
def repository(tmp_path: Path, kek: LocalKek) -> FileKeyRepository:
    """A fresh gateway key directory (function scope: tests may rotate it)."""
    return generate_development_keys(tmp_path / "keys", kek, "development", now=T0)


@pytest.fixture(scope="session")
def _parties(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Party, Party, Party]]:
    base = tmp_path_factory.mktemp("parties")
    made = tuple(
        Party(generate_development_keys(base / name, LocalKek(os.urandom(32)), "development"))
        for name in ("gateway", "police", "housing")
    )
    yield made  # type: ignore[misc]


@pytest.fixture
def gateway(_parties: tuple[Party, Party, Party]) -> Party:
    """The gateway's keys (session scope: never rotate these)."""
    return _parties[0]


@pytest.fixture
def police(_parties: tuple[Party, Party, Party]) -> Party:
    """A police adapter's keys."""
    return _parties[1]


@pytest.fixture
def housing(_parties: tuple[Party, Party, Party]) -> Party:
    """A housing adapter's keys: another agency, for wrong-sender cases."""
    return _parties[2]
