"""The mappa-gateway entry point."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path


def _run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    """`mappa-gateway db upgrade` migrates a new SQLite database to head."""
    import os

    env = {**os.environ, "MAPPA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"}
    result = _run("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tables = {
        row[0]
        for row in sqlite3.connect(tmp_path / "g.db").execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    assert {"agencies", "nominals", "audit_entries", "alembic_version"} <= tables


def test_unsafe_production_settings_refuse_to_start(tmp_path: Path) -> None:
    """The CLI exits 2 with the reason when the settings are unsafe for the profile."""
    import os

    env = {**os.environ, "MAPPA_PROFILE": "production", "MAPPA_ISSUER": "http://x"}
    result = _run("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "refusing to start" in result.stderr
    assert not (tmp_path / "var").exists()


def test_a_previous_kek_named_wrong_refuses_to_start_naming_no_value(tmp_path: Path) -> None:
    """MAPPA_PREVIOUS_KEKS holding an inline key (never allowed there), or a list variable that
    is not JSON: exit 2 with the reason, no traceback, the value not echoed; nothing created."""
    import os

    secret = "c2VjcmV0LWtleS1tYXRlcmlhbC1ub3QtdG8tYmUtZWNob2Vk"
    for name, value in (
        ("MAPPA_PREVIOUS_KEKS", f'[{{"MAPPA_KEK": "{secret}"}}]'),
        ("MAPPA_PREVIOUS_KEK_FILES", f"not json {secret}"),
    ):
        env = {**os.environ, name: value}
        result = _run("db", "upgrade", env=env, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "refusing to start" in result.stderr and "Traceback" not in result.stderr
        assert secret not in result.stderr + result.stdout
        assert not (tmp_path / "var").exists()
