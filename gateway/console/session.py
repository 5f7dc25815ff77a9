"""Console sessions: an opaque random token in the cookie, its SHA-256 in the store.

A session belongs to one active IG officer, ends after ``console_session_idle_seconds`` without a
request and after ``console_session_max_seconds`` in any case, and ends at once when the officer
logs out or is deactivated. Each session has its own CSRF token, checked on every POST. The
cookie is ``__Host-`` prefixed: Secure, HttpOnly, SameSite=Strict, Path=/, no Domain. Sessions
live in the database, so every replica behind the load balancer knows them. The officer's
review scope (`gateway.console.scope`) is read from the officer's record with the session, on
every request: a scope set while the officer is signed in holds from the next page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from sqlalchemy import delete

from gateway.console.scope import NO_SCOPE, ReviewScope
from gateway.errors import CsrfRejected
from gateway.store import Database
from gateway.store.models import ConsoleSession, IGOfficer

__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "OfficerSession",
    "check_csrf",
    "close_session",
    "current_session",
    "open_session",
]

SESSION_COOKIE: Final = "__Host-mappa-console"
#: Double-submit cookie protecting the login form itself (there is no session yet).
LOGIN_COOKIE: Final = "__Host-mappa-console-login"
_TOUCH_EVERY: Final = dt.timedelta(seconds=30)
_MAX_TOKEN: Final = 128


@dataclass(frozen=True, slots=True)
class OfficerSession:
    officer_id: str
    display_name: str
    csrf_token: str
    scope: ReviewScope = NO_SCOPE


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


async def open_session(
    db: Database, officer: IGOfficer, *, now: dt.datetime, max_seconds: int
) -> tuple[str, OfficerSession]:
    """Start a session for ``officer``; returns the cookie's token and the session."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    async with db.write() as session:
        session.add(
            ConsoleSession(
                token_hash=_hash(token),
                officer_id=officer.id,
                csrf_token=csrf,
                created_at=now,
                last_seen_at=now,
                expires_at=now + dt.timedelta(seconds=max_seconds),
            )
        )
    return token, OfficerSession(officer.id, officer.display_name, csrf, ReviewScope.of(officer))


async def current_session(
    db: Database, token: str | None, *, now: dt.datetime, idle_seconds: int
) -> OfficerSession | None:
    """The live session of ``token``, or None (unknown, expired, idle, officer deactivated)."""
    if not token or len(token) > _MAX_TOKEN:
        return None
    async with db.read() as session:
        row = await session.get(ConsoleSession, _hash(token))
        officer = await session.get(IGOfficer, row.officer_id) if row is not None else None
    if row is None or officer is None or not officer.active:
        return None
    idle = dt.timedelta(seconds=idle_seconds)
    if now >= row.expires_at or now - row.last_seen_at >= idle:
        await close_session(db, token)
        return None
    if now - row.last_seen_at >= _TOUCH_EVERY:
        async with db.write() as session:
            stored = await session.get(ConsoleSession, row.token_hash)
            if stored is not None:
                stored.last_seen_at = now
    return OfficerSession(officer.id, officer.display_name, row.csrf_token, ReviewScope.of(officer))


async def close_session(db: Database, token: str) -> None:
    async with db.write() as session:
        await session.execute(
            delete(ConsoleSession).where(ConsoleSession.token_hash == _hash(token))
        )


def check_csrf(expected: str | None, submitted: str | None) -> None:
    """Raise `CsrfRejected` unless ``submitted`` is the expected token (constant time)."""
    if (
        not expected
        or not submitted
        or not hmac.compare_digest(
            expected.encode("ascii", "replace"), submitted.encode("ascii", "replace")
        )
    ):
        raise CsrfRejected()
