"""IG officer accounts: an argon2id password hash and/or an OIDC identity (issuer, subject),
nothing else about the person, and the officer's review scope (`gateway.console.scope`). An
officer registered with an OIDC identity only has no password (the stored hash is ``"!"``,
which no password verifies against). Adding an officer and setting a scope are each recorded,
in their transaction, as an ``administration`` entry naming the officer and the scope (the
previous one too): entries of no area, read by national officers only.

Checking a password is one argon2id verification (64 MiB, t=3: a few hundred milliseconds of
CPU), so it runs on a worker thread, never on the event loop, and a ``CapacityLimiter`` caps how
many run at once (:data:`gateway.console.throttle.HASH_THREADS` for the console's sign-in)."""

from __future__ import annotations

import re

import anyio
import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.console.scope import NO_SCOPE, ReviewScope, known_scope
from gateway.errors import Conflict, NotFound, ValidationFailed
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.labels import hidden_character, nfc
from gateway.store.models import IGOfficer

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "add_officer",
    "check_password",
    "list_officers",
    "officer_by_id",
    "oidc_officer",
    "set_scope",
    "sign_in_methods",
    "verify_officer",
]

MIN_PASSWORD_LENGTH = 12
_OFFICER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 defaults
#: Verified against when the account does not exist, so timing does not reveal which ids exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password-placeholder")
_NO_PASSWORD = "!"  # noqa: S105 - not a password: the marker of "no local password"


async def add_officer(
    session: AsyncSession,
    officer_id: str,
    display_name: str,
    password: str | None,
    *,
    oidc: tuple[str, str] | None = None,
    scope: ReviewScope = NO_SCOPE,
) -> IGOfficer:
    """Create an officer with a password, an OIDC identity ``(issuer, subject)``, or both, and
    the review ``scope`` (none by default: the officer reads nothing until one is set), each of
    its areas the area of a registered agency.

    The display name, which the console shows, is stored NFC-normalised and refused if it holds
    a character not shown as itself (:func:`gateway.labels.hidden_character`)."""
    if not _OFFICER_ID.fullmatch(officer_id):
        raise ValidationFailed("officer id: lower-case letters, digits, '.', '_' or '-'")
    display_name = nfc(display_name)
    if hidden := hidden_character(display_name):  # never echoed
        raise ValidationFailed(f"display name: one line of visible text; it holds {hidden}")
    if password is None and oidc is None:
        raise ValidationFailed("an officer needs a password or an OIDC identity")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if oidc is not None:
        issuer, subject = oidc
        if not issuer.startswith(("https://", "http://")) or not 0 < len(issuer) <= 500:
            raise ValidationFailed("OIDC issuer: the provider's issuer URL")
        if not 0 < len(subject) <= 255:
            raise ValidationFailed("OIDC subject: 1 to 255 characters")
        if await oidc_officer(session, issuer, subject, active_only=False) is not None:
            raise Conflict("an officer with this OIDC identity exists")
    scope = await known_scope(session, national=scope.national, areas=scope.areas)
    if await session.get(IGOfficer, officer_id) is not None:
        raise Conflict("an officer with this id exists")
    officer = IGOfficer(
        id=officer_id,
        display_name=display_name.strip()[:200],
        password_hash=_hasher.hash(password) if password is not None else _NO_PASSWORD,
        oidc_issuer=oidc[0] if oidc else None,
        oidc_subject=oidc[1] if oidc else None,
        national=scope.national,
        areas=list(scope.areas),
    )
    session.add(officer)
    _audit(
        session,
        officer_id,
        "ig_officer_added",
        scope=scope.as_detail(),
        sign_in=list(sign_in_methods(officer)),
    )
    return officer


def sign_in_methods(officer: IGOfficer) -> tuple[str, ...]:
    """How ``officer`` may sign in: ``password``, ``oidc``, or both."""
    return (
        *(("password",) if officer.password_hash != _NO_PASSWORD else ()),
        *(("oidc",) if officer.oidc_subject is not None else ()),
    )


async def set_scope(
    session: AsyncSession, officer_id: str, scope: ReviewScope
) -> tuple[ReviewScope, ReviewScope]:
    """Replace the review scope of officer ``officer_id`` (active or not) with ``scope``, each
    of its areas the area of a registered agency; the previous and the new scope. It holds from
    the officer's next request, in every session."""
    scope = await known_scope(session, national=scope.national, areas=scope.areas)
    officer = await officer_by_id(session, officer_id)
    if officer is None:
        raise NotFound("no IG officer with this id")
    previous = ReviewScope.of(officer)
    officer.national = scope.national
    officer.areas = list(scope.areas)
    _audit(
        session,
        officer.id,
        "ig_officer_scope_set",
        scope=scope.as_detail(),
        previous_scope=previous.as_detail(),
    )
    return previous, scope


async def list_officers(session: AsyncSession) -> list[IGOfficer]:
    """Every officer account, active or not, by id."""
    return list(await session.scalars(select(IGOfficer).order_by(IGOfficer.id)))


def _audit(session: AsyncSession, officer_id: str, action: str, **detail: object) -> None:
    """An account change, recorded in its transaction (an entry of no area: national only)."""
    record(
        session,
        AuditEvent(
            operation=Operation.ADMINISTRATION,
            outcome=Outcome.ALLOWED,
            officer_id=officer_id,
            reason_code=action,
            detail={"action": action, **detail},
        ),
    )


async def oidc_officer(
    session: AsyncSession, issuer: str, subject: str, *, active_only: bool = True
) -> IGOfficer | None:
    """The officer registered with this OIDC identity (exact issuer and subject), if any."""
    query = select(IGOfficer).where(
        IGOfficer.oidc_issuer == issuer, IGOfficer.oidc_subject == subject
    )
    if active_only:
        query = query.where(IGOfficer.active.is_(True))
    return (await session.execute(query)).scalar_one_or_none()


async def officer_by_id(session: AsyncSession, officer_id: str) -> IGOfficer | None:
    """The officer with exactly this id (active or not), if any. The id is compared whole: an
    id longer than any account's finds nobody, however it begins."""
    return (
        await session.execute(select(IGOfficer).where(IGOfficer.id == officer_id))
    ).scalar_one_or_none()


def _password_matches(stored: str, password: str) -> bool:
    """One argon2id verification against ``stored`` (the dummy hash when there is no account or
    no password, so the work is the same whatever the id); blocking: for a worker thread."""
    try:
        _hasher.verify(_DUMMY_HASH if stored == _NO_PASSWORD else stored, password)
    except (VerificationError, InvalidHashError):
        return False
    return stored != _NO_PASSWORD


async def check_password(
    officer: IGOfficer | None, password: str, *, limiter: anyio.CapacityLimiter | None = None
) -> IGOfficer | None:
    """``officer`` if it is active and this is its password, else None. The verification runs
    on a worker thread (under ``limiter`` when given), the same work for any officer or none."""
    stored = officer.password_hash if officer is not None else _DUMMY_HASH
    matches = await anyio.to_thread.run_sync(_password_matches, stored, password, limiter=limiter)
    if not matches or officer is None or not officer.active:
        return None
    return officer


async def verify_officer(
    session: AsyncSession,
    officer_id: str,
    password: str,
    *,
    limiter: anyio.CapacityLimiter | None = None,
) -> IGOfficer | None:
    """The active officer whose password this is, or None (constant work either way, off the
    event loop)."""
    return await check_password(await officer_by_id(session, officer_id), password, limiter=limiter)
