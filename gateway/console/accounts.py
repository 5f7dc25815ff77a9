"""Local IG officer accounts: argon2id password hashes, nothing else about the person."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.errors import Conflict, ValidationFailed
from gateway.store.models import IGOfficer

__all__ = ["MIN_PASSWORD_LENGTH", "add_officer", "verify_officer"]

MIN_PASSWORD_LENGTH = 12
_OFFICER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 defaults
#: Verified against when the account does not exist, so timing does not reveal which ids exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password-placeholder")


async def add_officer(
    session: AsyncSession, officer_id: str, display_name: str, password: str
) -> IGOfficer:
    if not _OFFICER_ID.match(officer_id):
        raise ValidationFailed("officer id: lower-case letters, digits, '.', '_' or '-'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if await session.get(IGOfficer, officer_id) is not None:
        raise Conflict("an officer with this id exists")
    officer = IGOfficer(
        id=officer_id, display_name=display_name[:200], password_hash=_hasher.hash(password)
    )
    session.add(officer)
    return officer


async def verify_officer(session: AsyncSession, officer_id: str, password: str) -> IGOfficer | None:
    """The active officer whose password this is, or None (constant work either way)."""
    officer = (
        await session.execute(select(IGOfficer).where(IGOfficer.id == officer_id[:64]))
    ).scalar_one_or_none()
    try:
        _hasher.verify(officer.password_hash if officer else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if officer is None or not officer.active:
        return None
    return officer
