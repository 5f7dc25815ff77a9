"""IG officer accounts: argon2id, no enumeration, no weak passwords."""

from __future__ import annotations

import pytest

from gateway.console.accounts import add_officer, verify_officer
from gateway.errors import Conflict, ValidationFailed
from gateway.store import Database


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
