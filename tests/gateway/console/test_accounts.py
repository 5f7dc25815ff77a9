"""IG officer accounts: argon2id, no enumeration, no weak passwords, a display name shown as
itself."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from gateway.console.accounts import add_officer, officer_by_id, set_scope, verify_officer
from gateway.console.scope import NATIONAL, NO_SCOPE, ReviewScope
from gateway.errors import Conflict, NotFound, ValidationFailed
from gateway.store import Database
from gateway.store.models import IGOfficer
from tests.gateway.hostile_labels import HOSTILE, LEGITIMATE, hostile_character


async def test_officer_verifies_with_the_right_password_only(db: Database) -> None:
    """The right password returns the officer; a wrong one or an unknown id returns None."""
    async with db.write() as session:
        await add_officer(session, "ig.one", "IG One", "correct horse battery")
    async with db.read() as session:
        assert (await verify_officer(session, "ig.one", "correct horse battery")) is not None
        assert await verify_officer(session, "ig.one", "wrong password!!") is None
        assert await verify_officer(session, "ig.nobody", "correct horse battery") is None


@pytest.mark.parametrize(
    ("officer_id", "password"),
    [
        ("ig.two", "short"),  # too short
        ("IG Two; DROP", "long enough password"),  # not an id
    ],
)
async def test_bad_accounts_are_refused(db: Database, officer_id: str, password: str) -> None:
    """Weak passwords and malformed ids are refused and nothing is stored."""
    with pytest.raises(ValidationFailed):
        async with db.write() as session:
            await add_officer(session, officer_id, "IG Two", password)
    async with db.read() as session:
        assert await verify_officer(session, officer_id, password) is None


async def test_duplicate_officer_is_refused(db: Database) -> None:
    """An officer id is unique."""
    async with db.write() as session:
        await add_officer(session, "ig.three", "IG Three", "a long password!")
    with pytest.raises(Conflict):
        async with db.write() as session:
            await add_officer(session, "ig.three", "Other", "another long one")


async def test_oidc_only_officer_has_no_password_and_is_found_by_identity(db: Database) -> None:
    """An officer registered with an OIDC identity only: no password verifies (not even the
    marker), the exact issuer and subject find the officer, near misses do not."""
    from gateway.console.accounts import oidc_officer

    idp = "https://login.example.gov.uk/tenant"
    async with db.write() as session:
        await add_officer(session, "ig.oidc", "IG OIDC", None, oidc=(idp, "sub-123"))
    async with db.read() as session:
        for guess in ("!", "", "sub-123", "a long enough password"):
            assert await verify_officer(session, "ig.oidc", guess) is None
        found = await oidc_officer(session, idp, "sub-123")
        assert found is not None and found.id == "ig.oidc"
        assert await oidc_officer(session, idp + "/", "sub-123") is None
        assert await oidc_officer(session, idp, "SUB-123") is None


async def test_oidc_identity_is_unique_and_an_officer_needs_some_credential(db: Database) -> None:
    """Two officers cannot share an OIDC identity; an officer with neither is refused."""
    idp = "https://login.example.gov.uk/tenant"
    async with db.write() as session:
        await add_officer(session, "ig.a", "IG A", None, oidc=(idp, "sub-1"))
    with pytest.raises(Conflict):
        async with db.write() as session:
            await add_officer(session, "ig.b", "IG B", None, oidc=(idp, "sub-1"))
    with pytest.raises(ValidationFailed):
        async with db.write() as session:
            await add_officer(session, "ig.c", "IG C", None)


async def test_an_id_is_compared_whole(db: Database) -> None:
    """An id as long as ids may be, typed with more after it, is no account: otherwise every
    such spelling would be a new id for the per-officer lock, all checked against one password."""
    longest = "ig." + "l" * 61
    async with db.write() as session:
        await add_officer(session, longest, "IG Long", "correct horse battery")
    async with db.read() as session:
        assert await verify_officer(session, longest, "correct horse battery") is not None
        for typed in (longest + "x", longest + "\x07", longest + " " * 100):
            assert await verify_officer(session, typed, "correct horse battery") is None


# -- the display name the console shows ---------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE)
async def test_a_display_name_with_a_hidden_character_is_refused(db: Database, name: str) -> None:
    """A display name with a bidirectional control, a zero-width or other format character, a
    separator, a control, a private-use, unassigned or surrogate code point would let one
    officer's name read as another's in the console: refused, naming the rule and the code
    point and not the name, and no account is created."""
    char = hostile_character(name)
    with pytest.raises(ValidationFailed) as refused:
        async with db.write() as session:
            await add_officer(session, "ig.four", name, "a long enough password")
    detail = refused.value.detail or ""
    assert detail.startswith("display name:") and detail.endswith(f"U+{ord(char):04X}")
    assert char not in detail and "Police" not in detail
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(IGOfficer)) == 0


@pytest.mark.parametrize("name", LEGITIMATE)
async def test_a_display_name_in_any_script_is_kept(db: Database, name: str) -> None:
    async with db.write() as session:
        await add_officer(session, "ig.five", name, "a long enough password")
    async with db.read() as session:
        officer = await officer_by_id(session, "ig.five")
        assert officer is not None and officer.display_name == name


async def test_a_display_name_is_stored_composed(db: Database) -> None:
    """A combining accent is stored precomposed (NFC), the name's surrounding spaces dropped."""
    async with db.write() as session:
        await add_officer(session, "ig.six", " Siobha\u0301n Ni\u0301 ", "a long enough password")
    async with db.read() as session:
        officer = await officer_by_id(session, "ig.six")
        assert officer is not None and officer.display_name == "Siobhán Ní"


# -- the review scope ------------------------------------------------------------------------------


async def test_an_officer_s_scope_is_none_unless_given(db: Database) -> None:
    """National is never a default: an officer added without a scope reads nothing."""
    async with db.write() as session:
        officer = await add_officer(session, "ig.seven", "IG", "a long enough password")
    assert ReviewScope.of(officer) == NO_SCOPE and NO_SCOPE.sees_nothing
    assert NO_SCOPE.searched == () and NATIONAL.searched is None


async def test_a_scope_names_areas_the_gateway_knows(db: Database) -> None:
    """An area no agency is registered with is refused, naming it; nothing is stored."""
    with pytest.raises(ValidationFailed) as refused:
        async with db.write() as session:
            await add_officer(
                session, "ig.eight", "IG", "a long enough password", scope=ReviewScope(areas=("x",))
            )
    assert "area 'x': no agency of the gateway is registered" in (refused.value.detail or "")
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(IGOfficer)) == 0
    with pytest.raises(NotFound):
        async with db.write() as session:
            await set_scope(session, "ig.nobody", NATIONAL)


@pytest.mark.parametrize(
    ("national", "areas"),
    [
        (True, ["barnet"]),  # national and an area: which?
        (False, "barnet"),  # not a list
        (False, ["barnet", 7]),  # not text
        (False, ["national"]),  # the word, stored as an area
        (False, ["barnet\u202e"]),  # not an area code
    ],
)
async def test_a_stored_scope_that_is_no_scope_reads_as_none(
    db: Database, national: bool, areas: object
) -> None:
    """A row changed behind the gateway's back is never read wider than it says: none."""
    async with db.write() as session:
        await add_officer(session, "ig.nine", "IG", "a long enough password", scope=NATIONAL)
    async with db.write() as session:
        officer = await officer_by_id(session, "ig.nine")
        assert officer is not None
        officer.national, officer.areas = national, areas  # type: ignore[assignment]
    async with db.read() as session:
        officer = await officer_by_id(session, "ig.nine")
        assert officer is not None and ReviewScope.of(officer) == NO_SCOPE


def test_a_review_scope_holds_its_invariants() -> None:
    """Built only valid: national or areas, the areas sorted, once each, area codes."""
    for bad in (
        {"national": True, "areas": ("barnet",)},
        {"areas": ("enfield", "barnet")},
        {"areas": ("barnet", "barnet")},
        {"areas": ("National",)},
        {"areas": ("a\nb",)},
    ):
        with pytest.raises(ValueError):
            ReviewScope(**bad)
    assert ReviewScope(areas=("barnet", "enfield")).describe() == "barnet, enfield"
    assert NATIONAL.as_detail() == {"national": True}
