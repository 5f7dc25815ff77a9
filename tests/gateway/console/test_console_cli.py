"""``mappa-gateway ig add-officer``: a local IG officer account from the command line."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.console.accounts import verify_officer
from gateway.settings import get_settings
from gateway.store import Database
from tests.gateway.hostile_labels import HOSTILE, LEGITIMATE, hostile_character


@pytest.fixture
def env(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    monkeypatch.setenv("MAPPA_PROFILE", "test")
    monkeypatch.setenv("MAPPA_ISSUER", "https://gateway.test")
    monkeypatch.setenv("MAPPA_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MAPPA_KEYS_DIR", str(tmp_path / "keys"))
    get_settings.cache_clear()
    yield sqlite_url
    get_settings.cache_clear()


async def _verifies(url: str, officer_id: str, password: str) -> bool:
    db = Database(url)
    try:
        async with db.read() as session:
            return await verify_officer(session, officer_id, password) is not None
    finally:
        await db.dispose()


def test_add_officer_creates_an_account_that_signs_in(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The password read from standard input verifies; a second add of the id is refused."""
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    assert main(["ig", "add-officer", "ig.two", "--name", "IG Two", "--password-stdin"]) == 0
    assert "IG officer ig.two created" in capsys.readouterr().out
    assert asyncio.run(_verifies(env, "ig.two", "a long enough passphrase"))
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    assert main(["ig", "add-officer", "ig.two", "--name", "IG Two", "--password-stdin"]) == 2


def test_add_officer_refuses_a_short_password(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A password under the minimum length is refused with the reason; nothing is created."""
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["ig", "add-officer", "ig.three", "--name", "IG", "--password-stdin"]) == 2
    assert "at least" in capsys.readouterr().err
    assert not asyncio.run(_verifies(env, "ig.three", "short"))


def test_add_officer_with_an_oidc_subject_needs_no_password(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--oidc-subject ISSUER SUBJECT registers an officer who signs in through OIDC only."""
    from gateway.console.accounts import oidc_officer

    idp = "https://login.example.gov.uk/tenant"
    args = ["ig", "add-officer", "ig.sso", "--name", "IG SSO", "--oidc-subject", idp, "abc-42"]
    assert main(args) == 0
    assert "IG officer ig.sso created" in capsys.readouterr().out

    async def lookup() -> str | None:
        db = Database(env)
        try:
            async with db.read() as session:
                officer = await oidc_officer(session, idp, "abc-42")
                return officer.id if officer else None
        finally:
            await db.dispose()

    assert asyncio.run(lookup()) == "ig.sso"
    assert not asyncio.run(_verifies(env, "ig.sso", "!"))


async def _display_name(url: str, officer_id: str) -> str | None:
    from gateway.console.accounts import officer_by_id

    db = Database(url)
    try:
        async with db.read() as session:
            officer = await officer_by_id(session, officer_id)
            return officer.display_name if officer else None
    finally:
        await db.dispose()


@pytest.mark.parametrize("name", HOSTILE)
def test_add_officer_refuses_a_display_name_with_a_hidden_character(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """`--name` with a bidirectional control, a zero-width character, a separator, a control, a
    private-use, unassigned or surrogate code point (what Python makes of a byte of an argument
    that is not UTF-8): exit 2 naming the rule and the code point, not the name; no account."""
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    assert main(["ig", "add-officer", "ig.four", "--name", name, "--password-stdin"]) == 2
    err = capsys.readouterr().err.removesuffix("\n")  # the line's own end
    assert "display name:" in err and f"U+{ord(hostile_character(name)):04X}" in err
    assert hostile_character(name) not in err and "Police" not in err
    assert asyncio.run(_display_name(env, "ig.four")) is None


@pytest.mark.parametrize("name", LEGITIMATE)
def test_add_officer_keeps_a_display_name_in_any_script(
    env: str, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    assert main(["ig", "add-officer", "ig.five", "--name", name, "--password-stdin"]) == 0
    assert asyncio.run(_display_name(env, "ig.five")) == name
