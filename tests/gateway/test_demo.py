"""`mappa-gateway demo init` and `serve`: the newcomer's path, over real HTTP."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.demo import DEMO_AGENCIES, DemoRefused, init_demo
from gateway.settings import DEV_KEYS_MARKER, Settings


def _settings(tmp_path: Path, profile: str = "development") -> Settings:
    return Settings(
        profile=profile,  # type: ignore[arg-type]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'var' / 'mappa.db'}",
        keys_dir=tmp_path / "var" / "keys",
        kek_file=tmp_path / "var" / "kek.bin",
        issuer="https://gateway.test",
    )


def test_demo_onboards_four_agencies_and_an_ig_officer(tmp_path: Path) -> None:
    """One of each demo agency, each with its own keys (private half kept 0600), and an officer."""
    created = init_demo(_settings(tmp_path))
    assert created == [*(a.id for a in DEMO_AGENCIES), "ig.officer"]
    db = sqlite3.connect(tmp_path / "var" / "mappa.db")
    types = dict(db.execute("SELECT id, agency_type FROM agencies"))
    assert sorted(types.values()) == ["childrens_services", "housing", "police", "probation"]
    stored = db.execute("SELECT jwk FROM agency_keys").fetchall()
    assert len(stored) == 8  # a signing and an encryption key per agency
    assert all('"d"' not in row[0] for row in stored)  # only public halves reach the gateway
    for agency in DEMO_AGENCIES:
        private = tmp_path / "var" / "demo" / "agencies" / agency.id / "private-jwks.json"
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        assert all("d" in key for key in json.loads(private.read_text())["keys"])
    password_file = tmp_path / "var" / "demo" / "ig-officer.txt"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    (hash_,) = db.execute("SELECT password_hash FROM ig_officers").fetchone()
    assert hash_.startswith("$argon2id$")
    assert password_file.read_text().split("password: ")[1].strip() not in hash_
    assert (tmp_path / "var" / "keys" / DEV_KEYS_MARKER).exists()


def test_demo_is_idempotent(tmp_path: Path) -> None:
    """Running it again creates nothing and keeps the agencies' keys."""
    init_demo(_settings(tmp_path))
    keys_before = (tmp_path / "var" / "demo" / "agencies").rglob("*.json")
    before = {p: p.read_bytes() for p in keys_before}
    assert init_demo(_settings(tmp_path)) == []
    assert {p: p.read_bytes() for p in before} == before


def test_demo_refused_outside_development(tmp_path: Path) -> None:
    """Demo agencies and generated keys never appear in another profile."""
    with pytest.raises(DemoRefused):
        init_demo(_settings(tmp_path, profile="test"))
    assert not (tmp_path / "var").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_over_real_http(tmp_path: Path) -> None:
    """`mappa-gateway serve` migrates, loads keys and answers /readyz on 127.0.0.1."""
    port = _free_port()
    env = {
        **os.environ,
        "MAPPA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'var' / 'mappa.db'}",
        "MAPPA_KEYS_DIR": str(tmp_path / "var" / "keys"),
        "MAPPA_KEK_FILE": str(tmp_path / "var" / "kek.bin"),
        "MAPPA_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                body = response.json() if response.status_code == 200 else None
            except httpx.TransportError:
                time.sleep(0.2)
        assert body == {"status": "ready", "checks": {"database": True, "keys": True}}
    finally:
        process.terminate()
        process.wait(timeout=20)
