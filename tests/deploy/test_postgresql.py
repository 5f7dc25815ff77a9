"""deploy/postgresql/ on the local PostgreSQL: the database and its two roles created by
01-create.sql, the migrations run as the owner, 02-grants.sql, then the gateway
(``mappa-gateway serve`` as its unit runs it, with the environment file) and the operators'
commands as the application role, which can change rows but neither the schema nor the audit
log's past. And every setting in mappa.conf is one the server knows."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from adapters.identity import AgencyIdentity
from tests.conftest import POSTGRES_ADMIN_URL, require_postgres
from tests.deploy.support import (
    DEPLOY,
    ENV_EXAMPLE,
    VENV_BIN,
    copy_keys,
    parse_environment_file,
    relocate,
)
from tests.gateway.oauth.support import free_port
from tests.support import skip_or_fail_in_ci

pytestmark = pytest.mark.postgres

SQL = DEPLOY / "postgresql"
GATEWAY = str(VENV_BIN / "mappa-gateway")


def _psql() -> str:
    found = shutil.which("psql")
    if found is None:
        skip_or_fail_in_ci("psql is not installed (Debian: postgresql-client)")
    return found


def _url(user: str, database: str, driver: str = "postgresql") -> str:
    url = make_url(POSTGRES_ADMIN_URL).set(drivername=driver, username=user, database=database)
    return url.render_as_string(hide_password=False)


@dataclass
class Created:
    db: str
    owner: str
    app: str

    def variables(self) -> list[str]:
        return ["-v", f"db={self.db}", "-v", f"owner={self.owner}", "-v", f"app={self.app}"]


def _run_psql(dsn: str, script: Path, created: Created) -> None:
    done = subprocess.run(
        [_psql(), "-X", "-q", "-d", dsn, *created.variables(), "-f", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ERROR" not in done.stderr, done.stderr


@pytest.fixture
def created() -> Iterator[Created]:
    """01-create.sql with throwaway names (roles are the whole server's), dropped after."""
    require_postgres()
    _psql()
    suffix = uuid.uuid4().hex[:10]
    made = Created(f"mappa_t_{suffix}", f"mappa_owner_t_{suffix}", f"mappa_app_t_{suffix}")
    try:
        _run_psql(POSTGRES_ADMIN_URL, SQL / "01-create.sql", made)
        yield made
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{made.db}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{made.owner}"')
            conn.execute(f'DROP ROLE IF EXISTS "{made.app}"')


def _environment(
    tmp_path: Path, database_url: str, gateway_keys: tuple[Path, Path]
) -> dict[str, str]:
    """deploy/gateway.env.example as the services get it, with the site's folders under
    ``tmp_path``, this test's database, a copy of the test keys and their KEK file in place of
    Vault (the production profile takes a KEK file)."""
    values = parse_environment_file(relocate(ENV_EXAMPLE.read_text(), tmp_path))
    values = {k: v for k, v in values.items() if not k.startswith("MAPPA_KEK_VAULT_")}
    values.pop("PGPASSFILE")
    keys_dir, kek_file = gateway_keys
    Path(values["MAPPA_KEYS_DIR"]).parent.mkdir(parents=True, exist_ok=True)
    copy_keys(keys_dir, Path(values["MAPPA_KEYS_DIR"]))
    Path(values["MAPPA_AUDIT_CHECKPOINT_FILE"]).parent.mkdir(parents=True, exist_ok=True)
    secret = Path(values["MAPPA_CONSOLE_OIDC_CLIENT_SECRET_FILE"])  # as the operator writes it
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("the-console-client-secret\n")
    secret.chmod(0o600)
    values |= {
        "MAPPA_DATABASE_URL": database_url,
        "MAPPA_KEK_FILE": str(kek_file),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MAPPA_FREEZE_HEAP_AT_START": "false",
    }
    return values


def _gateway(env: dict[str, str], *words: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GATEWAY, *words], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _serve_command(port: int) -> list[str]:
    """The gateway unit's ExecStart, on this machine's loopback and one worker."""
    unit = (DEPLOY / "systemd" / "mappa-gateway.service").read_text()
    (line,) = re.findall(r"(?m)^ExecStart=(.*)$", unit)
    words = shlex.split(line)[1:]
    words[words.index("--host") + 1] = "127.0.0.1"
    words[words.index("--port") + 1] = str(port)
    words[words.index("--workers") + 1] = "1"
    return [GATEWAY, *words]


@pytest.mark.slow
def test_owner_migrates_and_the_application_role_runs_the_gateway(
    created: Created, tmp_path: Path, gateway_keys: tuple[Path, Path]
) -> None:
    owner_env = _environment(
        tmp_path, _url(created.owner, created.db, "postgresql+psycopg"), gateway_keys
    )
    # The application role cannot migrate: the schema is the owner's.
    app_url = _url(created.app, created.db, "postgresql+psycopg")
    refused = _gateway({**owner_env, "MAPPA_DATABASE_URL": app_url}, "db", "upgrade", cwd=tmp_path)
    assert refused.returncode != 0
    assert "permission denied for schema mappa" in refused.stderr

    migrated = _gateway(owner_env, "db", "upgrade", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    _run_psql(_url(created.owner, created.db), SQL / "02-grants.sql", created)
    _run_psql(_url(created.owner, created.db), SQL / "02-grants.sql", created)  # idempotent

    with psycopg.connect(_url(created.app, created.db), autocommit=True) as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        assert conn.execute("SHOW search_path").fetchone() == ("mappa",)
        assert conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == (False,)
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
        for statement in (
            "CREATE TABLE mappa.intruder (id integer)",
            "CREATE TABLE public.intruder (id integer)",
            "DELETE FROM audit_entries",
            "DELETE FROM audit_checkpoints",
            "TRUNCATE audit_entries",
            "DELETE FROM audit_entry_nominals",
            "UPDATE audit_entry_nominals SET entry_id = entry_id",
            "UPDATE alembic_version SET version_num = version_num",
            "DROP TABLE nominals",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)

    env = _environment(tmp_path / "app", app_url, gateway_keys)
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        _serve_command(port), env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline, ready = time.monotonic() + 60, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready is not None, (tmp_path / "serve.log").read_text()
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": True, "keys": True}

        # The operators' commands, as the application role with the same environment.
        jwks = tmp_path / "police-jwks.json"
        jwks.write_text(json.dumps(AgencyIdentity.generate("police-avon").public_jwks()))
        for words in (
            ["agencies", "add", "--id", "police-avon", "--name", "Avon and Somerset Police",
             "--type", "police", "--role", "responsible_authority", "--area", "avon-somerset",
             "--scope", "case:read", "--jwks", str(jwks)],
            ["audit", "sequence"],
            ["audit", "checkpoint", "--out", str(tmp_path / "checkpoint.note")],
            ["audit", "verify", "--checkpoint", str(tmp_path / "checkpoint.note")],
            ["outbox", "purge", "--older-than-days", "30"],
            ["relay", "--no-migrate", "--once"],
        ):  # fmt: skip
            done = _gateway(env, *words, cwd=tmp_path)
            assert done.returncode == 0, (words, done.stdout, done.stderr)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_every_setting_in_mappa_conf_is_one_the_server_knows() -> None:
    require_postgres()
    names = re.findall(r"(?m)^#?([a-z_]+)\s*=", (SQL / "mappa.conf").read_text())
    assert "synchronous_commit" in names
    with psycopg.connect(POSTGRES_ADMIN_URL) as conn:
        known = {row[0] for row in conn.execute("SELECT name FROM pg_settings")}
    assert set(names) <= known, sorted(set(names) - known)


def test_the_sql_names_the_tables_the_migrations_make() -> None:
    """02-grants.sql names tables of the migrated schema (a renamed table would make it fail
    anyway, on PostgreSQL; this says which)."""
    from gateway.store.models import Base

    lines = (SQL / "02-grants.sql").read_text().splitlines()
    statements = "\n".join(line for line in lines if not line.lstrip().startswith("--"))
    named = set(re.findall(r"\bmappa\.([a-z_]+)", statements))
    assert named == {
        "audit_entries",
        "audit_checkpoints",
        "audit_entry_nominals",
        "alembic_version",
    }
    assert named <= {*Base.metadata.tables, "alembic_version"}, named
