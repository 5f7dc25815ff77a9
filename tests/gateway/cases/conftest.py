"""Fixtures: a gateway with Barnet's agencies (and one of another area) on SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.gateway.cases.scenario import onboard_barnet
from tests.gateway.cases.support import World, open_world, settings_for


@pytest.fixture
async def world(
    sqlite_url: str,
    gateway_keys: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[World]:
    """The gateway on SQLite with Barnet's agencies registered."""
    monkeypatch.chdir(tmp_path)
    async with open_world(settings_for(sqlite_url, gateway_keys)) as opened:
        await onboard_barnet(opened)
        yield opened


@pytest.fixture
async def any_world(
    database_url: str,
    gateway_keys: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[World]:
    """The same, once on SQLite and once on PostgreSQL."""
    monkeypatch.chdir(tmp_path)
    async with open_world(settings_for(database_url, gateway_keys)) as opened:
        await onboard_barnet(opened)
        yield opened
