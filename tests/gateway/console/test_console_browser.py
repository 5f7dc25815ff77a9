"""The IG console end to end in real headless Chromium against a real gateway process.

Debian's ``chromium`` (``make system-deps`` installs it) driven by Playwright through its
executable path; no browser is downloaded. The gateway runs under uvicorn on 127.0.0.1 with its
background sequencer on, so the entries the test writes are signed by the time the officer looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.console.accounts import add_officer
from gateway.console.scope import NATIONAL
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.store import Database, upgrade
from tests.gateway.console.conftest import OFFICER, PASSWORD
from tests.support import skip_or_fail_in_ci

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _seed(url: str) -> None:
    db = Database(url)
    try:
        async with db.write() as session:
            await add_officer(session, OFFICER, "Ida Governance", PASSWORD, scope=NATIONAL)
        for i in range(8):
            async with db.write() as session:
                record(
                    session,
                    AuditEvent(
                        operation=Operation.DISCLOSURE,
                        outcome=Outcome.REFUSED if i == 5 else Outcome.ALLOWED,
                        agency_id=f"housing-{i % 2}",
                        officer_id=f"HO-{100 + i}",
                        nominal_ref=f"N{i:05d}",
                        legal_basis="cja2003-s325",
                        purpose="risk-management",
                        rule="need-to-know" if i == 5 else "level2-attendee",
                        reason_code="no_need_to_know" if i == 5 else None,
                        request_id=f"req-{i}",
                    ),
                )
    finally:
        await db.dispose()


@pytest.fixture
def gateway_server(tmp_path: Path, console_keys: tuple[Path, Path]) -> Iterator[str]:
    """A real gateway process on a loopback port, with an IG officer and eight entries."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    asyncio.run(_seed(url))
    port = _free_port()
    env = {
        **os.environ,
        "MAPPA_PROFILE": "test",
        "MAPPA_DATABASE_URL": url,
        "MAPPA_ISSUER": "https://gateway.test",  # the test profile wants https
        "MAPPA_KEYS_DIR": str(console_keys[0]),
        "MAPPA_KEK_FILE": str(console_keys[1]),
        "MAPPA_AUDIT_SEQUENCE_INTERVAL_SECONDS": "0.2",
        "MAPPA_LOG_LEVEL": "warning",
    }
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "gateway.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError((tmp_path / "server.log").read_text())
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("gateway did not start")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _sign_in(page: Any, base: str) -> None:
    page.goto(base + "/console/login")
    page.fill("#officer_id", OFFICER)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/entries")
    assert "Ida Governance" in page.inner_text("header")


@contextlib.contextmanager
def _signed_in_page(base: str) -> Iterator[tuple[Any, list[str]]]:
    """A page of real headless Chromium, 1280 by 900, signed in to the console at ``base``,
    and the script and console errors it meets (skipped, or failed in CI, without Chromium)."""
    if not CHROMIUM.exists():
        skip_or_fail_in_ci("Debian's chromium is not installed (make system-deps)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail_in_ci("the playwright package is not installed")
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            page.on("pageerror", lambda error: problems.append(str(error)))
            _sign_in(page, base)
            yield page, problems
        finally:
            browser.close()


def test_officer_signs_in_searches_opens_an_entry_and_sees_its_proof_verified(
    gateway_server: str, tmp_path: Path
) -> None:
    """Real Chromium: sign in, filter with htmx, open an entry, proof verified, screenshot."""
    with _signed_in_page(gateway_server) as (page, problems):
        page.fill("input[name=agency]", "housing-1")
        page.click("form.filters button[type=submit]")  # htmx swaps #results
        page.wait_for_url("**/console/entries?*agency=housing-1*")
        results = page.inner_text("#results")
        assert "N00003" in results and "N00002" not in results

        # Give the server's background sequencer time to sign the entries.
        deadline = time.monotonic() + 15
        while True:
            page.click("#results a:has-text('20')")  # the first row's timestamp link
            page.wait_for_selector("#proof")
            status = page.inner_text("#proof .status")
            if status == "verified" or time.monotonic() > deadline:
                break
            page.go_back()
            time.sleep(0.3)
        assert status == "verified", page.inner_text("#proof")
        assert "Checked against the signed checkpoint" in page.inner_text("#proof")
        assert "housing-1" in page.inner_text("table.detail")

        shot = tmp_path / "console-entry.png"
        page.screenshot(path=str(shot), full_page=True)
        keep = os.environ.get("MAPPA_SCREENSHOT_DIR")
        if keep:
            shutil.copyfile(shot, Path(keep) / shot.name)

    width, height = _png_size(shot)
    assert width == 1280 and height >= 600
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    assert not problems, problems


def _all_sequenced(database: Path) -> bool:
    with sqlite3.connect(database) as conn:
        waiting = conn.execute("SELECT count(*) FROM audit_entries WHERE seq IS NULL").fetchone()
        signed = conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone()
    return bool(waiting[0] == 0 and signed[0] > 0)


def test_an_entry_edited_in_the_database_shows_failed_on_the_integrity_page(
    gateway_server: str, tmp_path: Path
) -> None:
    """Real Chromium: once the log is signed, an entry is edited in the database behind the
    gateway's back; the Integrity page announces the failure (role alert), in the failed style
    (the status and the card's edge in the page's colour for bad, not its text colour), naming
    the problem and the entry's seq; no script or CSP error."""
    database = tmp_path / "gateway.db"
    with _signed_in_page(gateway_server) as (page, problems):
        deadline = time.monotonic() + 15
        while not _all_sequenced(database) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _all_sequenced(database)
        with sqlite3.connect(database) as conn:
            conn.execute("UPDATE audit_entries SET officer_id = 'HO-999' WHERE seq = 3")

        page.goto(gateway_server + "/console/integrity")
        card = page.locator("#integrity")
        assert card.get_attribute("role") == "alert"
        assert "proof-failed" in (card.get_attribute("class") or "")
        assert page.inner_text("#integrity .status") == "FAILED"
        assert "edited at entry seq 3" in card.inner_text()
        colours = page.evaluate(
            """() => {
                const card = document.querySelector('#integrity');
                return {
                    status: getComputedStyle(card.querySelector('.status')).color,
                    edge: getComputedStyle(card).borderLeftColor,
                    text: getComputedStyle(document.body).color,
                };
            }"""
        )
        assert colours["status"] == colours["edge"] != colours["text"], colours
        page.screenshot(path=str(tmp_path / "console-integrity-failed.png"), full_page=True)
    assert not problems, problems
