"""`mappa-gateway demo init` and `serve`: the newcomer's path, over real HTTP."""

from __future__ import annotations

import datetime as dt
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
from cryptography import x509

from adapters.demo import DEMO_PORTS, demo_tls_dir, ensure_demo_tls
from gateway.demo import DEMO_AGENCIES, DemoRefused, init_demo
from gateway.settings import DEV_KEYS_MARKER, Settings
from tests.support import header_flood


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


def _endpoints(tmp_path: Path) -> dict[str, tuple[str, str | None]]:
    db = sqlite3.connect(tmp_path / "var" / "mappa.db")
    try:
        rows = db.execute("SELECT id, endpoint_url, endpoint_ca_pem FROM agencies").fetchall()
    finally:
        db.close()
    return {agency_id: (url, ca) for agency_id, url, ca in rows}


def test_demo_endpoints_are_https_each_with_its_own_ca(tmp_path: Path) -> None:
    """Every demo endpoint is https on 127.0.0.1, registered with that agency's own CA (the one
    in its tls/ca.pem), whose server certificate is for the loopback, key kept 0600."""
    init_demo(_settings(tmp_path))
    endpoints = _endpoints(tmp_path)
    demo = tmp_path / "var" / "demo"
    for agency in DEMO_AGENCIES:
        url, ca_pem = endpoints[agency.id]
        port = DEMO_PORTS[agency.id][1]
        assert url == f"https://127.0.0.1:{port}/mappa/deliveries"
        tls = demo_tls_dir(demo, agency.id)
        assert ca_pem == (tls / "ca.pem").read_text()
        assert stat.S_IMODE((tls / "server.key").stat().st_mode) == 0o600
        cert = x509.load_pem_x509_certificate((tls / "server.pem").read_bytes())
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem.encode()))
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert len({ca for _, ca in endpoints.values()}) == len(DEMO_AGENCIES)  # one CA each


def test_demo_init_again_keeps_the_certificates(tmp_path: Path) -> None:
    """A second run keeps each CA, certificate and key, and registers nothing again."""
    init_demo(_settings(tmp_path))
    tls_files = sorted((tmp_path / "var" / "demo" / "agencies").rglob("tls/*"))
    before = {p: p.read_bytes() for p in tls_files}
    registered = _endpoints(tmp_path)
    init_demo(_settings(tmp_path))
    assert {p: p.read_bytes() for p in tls_files} == before
    assert _endpoints(tmp_path) == registered
    db = sqlite3.connect(tmp_path / "var" / "mappa.db")
    (count,) = db.execute(
        "SELECT count(*) FROM audit_entries WHERE reason_code = 'endpoint_set'"
    ).fetchone()
    db.close()
    assert count == len(DEMO_AGENCIES)


def test_demo_init_upgrades_a_plain_http_demo_endpoint_and_leaves_others(
    tmp_path: Path,
) -> None:
    """An earlier demo's plain-http registration becomes https with the CA; an endpoint the
    operator registered elsewhere is not touched."""
    init_demo(_settings(tmp_path))
    police, housing = "barnet-police", "barnet-housing"
    db = sqlite3.connect(tmp_path / "var" / "mappa.db")
    db.execute(
        "UPDATE agencies SET endpoint_url = ?, endpoint_ca_pem = NULL WHERE id = ?",
        (f"http://127.0.0.1:{DEMO_PORTS[police][1]}/mappa/deliveries", police),
    )
    db.execute(
        "UPDATE agencies SET endpoint_url = ? WHERE id = ?",
        ("https://127.0.0.1:9443/elsewhere", housing),
    )
    db.commit()
    db.close()
    init_demo(_settings(tmp_path))
    endpoints = _endpoints(tmp_path)
    assert endpoints[police][0] == f"https://127.0.0.1:{DEMO_PORTS[police][1]}/mappa/deliveries"
    assert (
        endpoints[police][1]
        == (demo_tls_dir(tmp_path / "var" / "demo", police) / "ca.pem").read_text()
    )
    assert endpoints[housing][0] == "https://127.0.0.1:9443/elsewhere"


def test_demo_init_renews_a_certificate_near_expiry(tmp_path: Path) -> None:
    """A demo CA with days left is replaced by a new one, registered with the endpoint."""
    demo = tmp_path / "var" / "demo"
    old = ensure_demo_tls(
        demo, "barnet-police", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=88)
    )
    init_demo(_settings(tmp_path))
    renewed = (demo_tls_dir(demo, "barnet-police") / "ca.pem").read_text()
    assert renewed != old
    assert _endpoints(tmp_path)["barnet-police"][1] == renewed
    assert ensure_demo_tls(demo, "barnet-police") == renewed  # now fresh: kept


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
        sent, answer = header_flood(port)
        assert answer.startswith(b"HTTP/1.1 4"), answer[:80]
        assert sent <= 1024 * 1024  # refused while the header block arrived, not at its end
    finally:
        process.terminate()
        process.wait(timeout=20)
