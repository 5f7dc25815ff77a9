"""Shared fixtures: databases (SQLite file, PostgreSQL schema), settings, the app and a client."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.settings import Settings
from gateway.store import Database, upgrade
from tests.support import skip_or_fail_in_ci

POSTGRES_ADMIN_URL = os.environ.get(
    "MAPPA_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


def postgres_available() -> bool:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def require_postgres() -> None:
    """Skip locally without PostgreSQL; in CI its absence is a failure, never a skip."""
    if not postgres_available():
        skip_or_fail_in_ci(f"PostgreSQL did not answer at {POSTGRES_ADMIN_URL}")


class PostgresSchema:
    """A throwaway schema in the test database, migrated to head."""

    def __init__(self) -> None:
        self.name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.name}"')
        dsn = POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1)
        sep = "&" if "?" in dsn else "?"
        self.url = f"{dsn}{sep}options=-csearch_path%3D{self.name}"

    def drop(self) -> None:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{self.name}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    require_postgres()
    schema = PostgresSchema()
    try:
        upgrade(schema.url)
        yield schema.url
    finally:
        schema.drop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test that takes this runs on both backends."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    return Settings(
        profile="test",
        database_url=sqlite_url,
        issuer="https://gateway.test",
        keys_dir=tmp_path / "keys",
        kek_file=tmp_path / "kek.bin",
        log_json=True,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://gateway.test") as c:
        yield c
