"""Shared fixtures: databases (SQLite file, PostgreSQL schema), settings, the app and a client."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
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
from keys import generate_kek_file, generate_keys
from keys.hsm import Pkcs11Kek
from tests.support import skip_or_fail_in_ci

# Hundreds of apps start in this one process: each freezing the heap at start (a full
# collection, and nothing built before it ever collected again) would slow the suite and grow it.
# tests/gateway/test_app.py checks the freeze itself.
os.environ.setdefault("MAPPA_FREEZE_HEAP_AT_START", "false")

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


#: When the shared test keys were made: before any clock a test sets.
KEYS_CREATED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def gateway_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A gateway key directory (every purpose) and its KEK file, made once per session."""
    base = tmp_path_factory.mktemp("gateway-keys")
    kek = generate_kek_file(base / "kek.bin")
    generate_keys(base / "keys", kek, now=KEYS_CREATED)
    return base / "keys", base / "kek.bin"


@pytest.fixture(scope="session")
def _migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "gateway.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, _migrated_template: Path) -> str:
    """A migrated SQLite file: a copy of one migrated once per session (fast)."""
    path = tmp_path / "gateway.db"
    shutil.copyfile(_migrated_template, path)
    return f"sqlite+aiosqlite:///{path}"


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
def settings(sqlite_url: str, gateway_keys: tuple[Path, Path]) -> Settings:
    keys_dir, kek_file = gateway_keys
    return Settings(
        profile="test",
        database_url=sqlite_url,
        issuer="https://gateway.test",
        keys_dir=keys_dir,
        kek_file=kek_file,
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


#: Where Debian's ``softhsm2`` package puts the SoftHSM2 PKCS#11 library (CI: apt-get install
#: -y softhsm2); ``MAPPA_TEST_SOFTHSM_LIB`` names another.
SOFTHSM_CANDIDATES = [
    os.environ.get("MAPPA_TEST_SOFTHSM_LIB", ""),
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
]
SOFTHSM_LIB = next((p for p in SOFTHSM_CANDIDATES if p and Path(p).exists()), None)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A SoftHSM2 token with two AES-256 KEKs (kek-1, kek-2), in a private token directory.
    Once a session: the library reads its configuration once per process."""
    if SOFTHSM_LIB is None or shutil.which("softhsm2-util") is None:
        skip_or_fail_in_ci("SoftHSM2 is not installed (make test installs it: apt-get softhsm2)")
    pytest.importorskip("pkcs11", reason="python-pkcs11 is not installed (pip install '.[test]')")
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            "softhsm2-util", "--init-token", "--free", "--label", "mappa-test",
            "--pin", "1234", "--so-pin", "5678",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    settings = {"library_path": SOFTHSM_LIB, "token_label": "mappa-test", "user_pin": "1234"}
    Pkcs11Kek.create_key(**settings, key_label="kek-1")
    Pkcs11Kek.create_key(**settings, key_label="kek-2")
    yield settings
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous
