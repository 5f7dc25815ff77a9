"""The durable, shared replay store for client-assertion and DPoP-proof ``jti`` values.

:func:`consume` inserts a row keyed by SHA-256(kind, issuer, jti) into ``used_jtis`` in the
caller's transaction, inside a savepoint. The primary key does the work: of two replicas that
race to accept the same ``jti``, the database lets exactly one insert commit, and the other gets
:class:`Replayed`. Because the table lives in the shared database, a restart forgets nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Literal

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.models import UsedJti

__all__ = ["JtiKind", "Replayed", "consume", "purge_expired", "replay_key"]

JtiKind = Literal["client_assertion", "dpop"]


class Replayed(Exception):
    """This ``jti`` was already used by this issuer."""

    def __init__(self, kind: JtiKind) -> None:
        super().__init__(f"{kind} jti replayed")
        self.kind = kind


def replay_key(kind: JtiKind, issuer: str, jti: str) -> str:
    material = "\x00".join((kind, issuer, jti)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(material).hexdigest()


async def consume(
    session: AsyncSession,
    *,
    kind: JtiKind,
    issuer: str,
    jti: str,
    expires_at: dt.datetime,
    agency_id: str | None,
    now: dt.datetime,
) -> None:
    """Record ``jti`` as spent, or raise :class:`Replayed` if it already is."""
    row = UsedJti(
        key=replay_key(kind, issuer, jti),
        kind=kind,
        agency_id=agency_id,
        seen_at=now,
        expires_at=expires_at,
    )
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError as exc:
        raise Replayed(kind) from exc


async def purge_expired(session: AsyncSession, *, now: dt.datetime) -> int:
    """Delete spent ``jti`` rows whose tokens would be refused as expired anyway."""
    result = await session.execute(delete(UsedJti).where(UsedJti.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)
