"""Fixtures for the delivery tests: a migrated database and partner stubs on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store import Database
from tests.gateway.delivery.stub import PartnerPKI, PartnerStub, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PartnerPKI:
    return make_pki(tmp_path_factory.mktemp("partner-pki"))


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> PartnerPKI:
    """A second, unrelated CA: a partner's endpoint must never be vouched for by it."""
    return make_pki(tmp_path_factory.mktemp("other-pki"))


@pytest.fixture
async def sqlite_db(sqlite_url: str) -> AsyncIterator[Database]:
    database = Database(sqlite_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def stub(pki: PartnerPKI) -> AsyncIterator[PartnerStub]:
    server = await PartnerStub(pki=pki).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
