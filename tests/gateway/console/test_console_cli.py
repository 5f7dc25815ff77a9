"""``mappa-gateway ig add-officer|set-scope|list-officers``: IG officer accounts and their
review scopes from the command line."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.cli import main
from gateway.console.accounts import verify_officer
from gateway.console.scope import ReviewScope
from gateway.domain import AgencyType, Role
from gateway.settings import get_settings
from gateway.store import Database
from gateway.store.models import Agency, AuditEntry
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


# -- the review scope: --area, --national, set-scope, list-officers ------------------------------


async def _agency_in(url: str, area: str) -> None:
    db = Database(url)
    try:
        async with db.write() as session:
            session.add(
                Agency(
                    id=f"police-{area}",
                    name="Police",
                    agency_type=AgencyType.POLICE,
                    role=Role.RESPONSIBLE_AUTHORITY,
                    area=area,
                )
            )
    finally:
        await db.dispose()


async def _scope_of(url: str, officer_id: str) -> ReviewScope | None:
    from gateway.console.accounts import officer_by_id

    db = Database(url)
    try:
        async with db.read() as session:
            officer = await officer_by_id(session, officer_id)
            return ReviewScope.of(officer) if officer else None
    finally:
        await db.dispose()


async def _administration(url: str) -> list[tuple[str | None, dict[str, object]]]:
    db = Database(url)
    try:
        async with db.read() as session:
            rows = await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.operation == "administration")
                .order_by(AuditEntry.id)
            )
            return [(row.officer_id, dict(row.detail)) for row in rows]
    finally:
        await db.dispose()


def _add(officer_id: str, *scope: str) -> list[str]:
    return ["ig", "add-officer", officer_id, "--name", "IG", "--password-stdin", *scope]


@pytest.fixture
def passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))


def test_add_officer_with_areas_of_registered_agencies(
    env: str, passwords: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """--area, repeatable, takes the areas agencies are registered with; the account and its
    scope are recorded in the audit log (an administration entry)."""
    asyncio.run(_agency_in(env, "barnet"))
    asyncio.run(_agency_in(env, "enfield"))
    assert main(_add("ig.two", "--area", "enfield", "--area", "barnet")) == 0
    assert "IG officer ig.two created, scope: barnet, enfield" in capsys.readouterr().out
    assert asyncio.run(_scope_of(env, "ig.two")) == ReviewScope(areas=("barnet", "enfield"))
    ((officer_id, detail),) = asyncio.run(_administration(env))
    assert officer_id == "ig.two" and detail["action"] == "ig_officer_added"
    assert detail["scope"] == {"areas": ["barnet", "enfield"]}
    assert detail["sign_in"] == ["password"]


@pytest.mark.parametrize(
    ("area", "reason"),
    [
        ("barnett", "no agency of the gateway is registered with this area"),  # a typo
        ("national", "every area is the national scope"),  # the word, not --national
        ("NATIONAL", "every area is the national scope"),
        ("barnet\u202e", "area: 1 to 64 letters"),  # not a code: never echoed
        ("", "area: 1 to 64 letters"),
    ],
)
def test_add_officer_refuses_an_area_the_gateway_does_not_know(
    env: str, passwords: None, capsys: pytest.CaptureFixture[str], area: str, reason: str
) -> None:
    """Exit 2 with the reason; no account (a mistyped area would read nothing, silently)."""
    asyncio.run(_agency_in(env, "barnet"))
    assert main(_add("ig.six", "--area", area)) == 2
    err = capsys.readouterr().err
    assert reason in err and "\u202e" not in err
    assert asyncio.run(_scope_of(env, "ig.six")) is None
    assert asyncio.run(_administration(env)) == []


def test_add_officer_national_and_areas_are_one_or_the_other(
    env: str, passwords: None, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_agency_in(env, "barnet"))
    with pytest.raises(SystemExit) as refused:
        main(_add("ig.seven", "--area", "barnet", "--national"))
    assert refused.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert main(_add("ig.seven", "--national")) == 0
    assert "scope: national (every area)" in capsys.readouterr().out
    assert asyncio.run(_scope_of(env, "ig.seven")) == ReviewScope(national=True)


def test_add_officer_without_a_scope_says_the_officer_reads_nothing(
    env: str, passwords: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """National is never the default: no option, no scope, and the operator is told."""
    assert main(_add("ig.eight")) == 0
    out = capsys.readouterr().out
    assert "scope: none; no review scope: the officer reads no audit entry" in out
    assert "ig set-scope" in out
    assert asyncio.run(_scope_of(env, "ig.eight")) == ReviewScope()


def test_set_scope_replaces_the_scope_and_is_audited(
    env: str, passwords: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """--area, --national, --none in turn; each change an administration entry with the scope
    before and after; an unknown officer or area changes nothing (exit 2)."""
    asyncio.run(_agency_in(env, "barnet"))
    assert main(_add("ig.nine")) == 0
    assert main(["ig", "set-scope", "ig.nine", "--area", "barnet"]) == 0
    assert "IG officer ig.nine scope: barnet (was: none)" in capsys.readouterr().out
    assert main(["ig", "set-scope", "ig.nine", "--national"]) == 0
    assert main(["ig", "set-scope", "ig.nine", "--none"]) == 0
    assert "reads no audit entry" in capsys.readouterr().out
    assert main(["ig", "set-scope", "ig.nobody", "--national"]) == 2
    assert "no IG officer with this id" in capsys.readouterr().err
    assert main(["ig", "set-scope", "ig.nine", "--area", "wiltshire"]) == 2
    assert asyncio.run(_scope_of(env, "ig.nine")) == ReviewScope()
    changes = [d for _, d in asyncio.run(_administration(env)) if d["action"] != "ig_officer_added"]
    assert [(d["previous_scope"], d["scope"]) for d in changes] == [
        ({"areas": []}, {"areas": ["barnet"]}),
        ({"areas": ["barnet"]}, {"national": True}),
        ({"national": True}, {"areas": []}),
    ]
    with pytest.raises(SystemExit):
        main(["ig", "set-scope", "ig.nine"])  # one of --area, --national, --none


def test_list_officers_shows_each_account_and_its_scope(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line an officer, names shown literally, the scope 'none' where there is none."""
    asyncio.run(_agency_in(env, "barnet"))
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    assert main(_add("ig.a", "--area", "barnet")) == 0
    idp = "https://login.example.gov.uk/tenant"
    assert main(["ig", "add-officer", "ig.b", "--name", "B", "--oidc-subject", idp, "s"]) == 0
    capsys.readouterr()
    assert main(["ig", "list-officers"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "ig.a\tactive\tpassword\tscope=barnet\tIG",
        "ig.b\tactive\toidc\tscope=none\tB",
    ]
