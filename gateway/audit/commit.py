"""No audit, no disclosure: commit an act and its audit entry in one transaction.

The case API calls `commit_audited` with the act: a coroutine that, inside the open write
transaction, stages what it releases (the disclosure's rows, the outbox row for a push) and
returns the result together with the `AuditEvent` describing it. The entry is added to the same
transaction and flushed with it, and the result is handed back only after the commit succeeded.
If the store cannot take the entry (read-only, disk full, connection lost), the whole transaction
rolls back and `AuditUnavailable` (503, ``audit_unavailable``) is raised instead: nothing of the
act is stored and nothing is returned to release.

`record_alone` writes an entry in a transaction of its own, for acts that store nothing else
(a refusal, a console search); it raises `AuditUnavailable` the same way, so that a caller that
must not proceed unaudited (showing audit data) stops there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.errors import AuditUnavailable, StoreUnavailable
from gateway.flow.audit import AuditEvent, record
from gateway.store import Database

__all__ = ["Audited", "commit_audited", "payload_digest", "record_alone"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Audited(Generic[T]):
    """What an act returns: the result to release, and the audit event that records it."""

    result: T
    event: AuditEvent


async def commit_audited(db: Database, act: Callable[[AsyncSession], Awaitable[Audited[T]]]) -> T:
    """Run ``act`` and record its event in one write transaction; return its result once both
    are committed, or raise `AuditUnavailable` with nothing stored."""
    try:
        async with db.write() as session:
            audited = await act(session)
            record(session, audited.event)
            await session.flush()
    except StoreUnavailable as exc:
        raise AuditUnavailable(diagnostics=exc.diagnostics) from exc
    return audited.result


async def record_alone(db: Database, event: AuditEvent) -> None:
    """Commit ``event`` in its own transaction, or raise `AuditUnavailable`."""
    try:
        async with db.write() as session:
            record(session, event)
    except StoreUnavailable as exc:
        raise AuditUnavailable(diagnostics=exc.diagnostics) from exc


def payload_digest(released: bytes) -> str:
    """The ``payload_digest`` of an entry: ``sha256:`` and the hex digest of ``released``, so the
    record proves what left without holding it. For a sealed answer or push the gateway digests
    the signed body (the JWS payload inside the JWE, :meth:`gateway.flow.seal.Sealer.seal`), which
    the recipient can recompute after opening it; the JWE differs at every encryption."""
    return "sha256:" + hashlib.sha256(released).hexdigest()
