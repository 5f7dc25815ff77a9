"""``Idempotency-Key`` on every write, remembered in the store that every replica shares.

A write names a key (1-128 letters, digits and ``. _ : -``). Its request digest is SHA-256 over
the method, the path and the canonical JSON of the opened body, so an adapter that re-seals the
same body for a retry (a new JWE, a new signature) is still recognised. The key is remembered
with the answer in the write's own transaction:

* same key, same digest: the original answer is replayed (sealed to the caller afresh), and
  nothing is written again but the replay's own audit entry, which names the original write's
  entry (:attr:`Remembered.audit_entry_id`): a replay discloses the answer once more;
* same key, another digest: 422 ``idempotency_key_reused``;
* two replicas racing with one key: the primary key lets one commit; the other finds the
  winner's row and replays it.

Keys are kept for :data:`KEEP_FOR`: a key older than that is as if unknown (its row is
replaced in the transaction of the write that uses it again), and each process purges expired
keys at most every :data:`PURGE_INTERVAL`, in a write's transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from gateway import errors
from gateway.store.direct import Direct
from gateway.store.models import IdempotentRequest
from gateway.store.sealed import CaseSealer, canonical_json

__all__ = [
    "KEEP_FOR",
    "PURGE_INTERVAL",
    "Remembered",
    "key_of",
    "lookup",
    "remember",
    "request_digest",
]

KEEP_FOR = dt.timedelta(hours=24)
PURGE_INTERVAL = dt.timedelta(hours=1)
_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TABLE = "idempotency_keys"
#: When this process last purged expired keys (by the writes' clock).
_purged_at: dt.datetime | None = None
#: Every write looks its key up first: below the ORM (see gateway.store.direct).
_LOOKUP = Direct(
    select(
        IdempotentRequest.request_digest,
        IdempotentRequest.status_code,
        IdempotentRequest.answer_sealed,
        IdempotentRequest.audit_entry_id,
    ).where(
        IdempotentRequest.agency_id == bindparam("agency_id"),
        IdempotentRequest.key == bindparam("key"),
        IdempotentRequest.expires_at > bindparam("now"),
    )
)
#: ... and forgets its key's expired row, if any, before remembering the answer.
_FORGET_EXPIRED = Direct(
    delete(IdempotentRequest).where(
        IdempotentRequest.agency_id == bindparam("agency_id"),
        IdempotentRequest.key == bindparam("key"),
        IdempotentRequest.expires_at <= bindparam("now"),
    )
)


@dataclass(frozen=True, slots=True)
class Remembered:
    """The answer a write got the first time."""

    status_code: int
    answer: dict[str, Any]
    #: The audit entry of the original write (None for a key remembered before it was kept).
    audit_entry_id: str | None = None


def key_of(request: Request) -> str:
    """The request's one well-formed ``Idempotency-Key``, or 400 ``idempotency_key_missing``."""
    values = request.headers.getlist("idempotency-key")
    if len(values) != 1 or not _KEY.fullmatch(values[0]):
        reason = "missing" if not values else "repeated" if len(values) > 1 else "malformed"
        raise errors.IdempotencyKeyMissing(diagnostics={"reason": f"idempotency_key_{reason}"})
    return values[0]


def request_digest(method: str, path: str, body: Mapping[str, Any]) -> str:
    material = method.upper().encode() + b"\x00" + path.encode() + b"\x00" + canonical_json(body)
    return hashlib.sha256(material).hexdigest()


def _row_id(agency_id: str, key: str) -> str:
    return f"{agency_id}/{key}"


async def lookup(
    session: AsyncSession,
    sealer: CaseSealer,
    *,
    agency_id: str,
    key: str,
    digest: str,
    now: dt.datetime,
) -> Remembered | None:
    """The remembered answer for this key, None if it is new (or expired at ``now``), or 422 if
    it was used otherwise."""
    row = await _LOOKUP.first(session, {"agency_id": agency_id, "key": key, "now": now})
    if row is None:
        return None
    request_digest, status_code, answer_sealed, audit_entry_id = row
    if request_digest != digest:
        raise errors.IdempotencyConflict(diagnostics={"reason": "idempotency_key_reused"})
    answer = sealer.unseal(_TABLE, _row_id(agency_id, key), "answer_sealed", answer_sealed)
    return Remembered(status_code, answer, audit_entry_id)


async def remember(
    session: AsyncSession,
    sealer: CaseSealer,
    *,
    agency_id: str,
    key: str,
    digest: str,
    status_code: int,
    answer: Mapping[str, Any],
    audit_entry_id: str,
    now: dt.datetime,
) -> None:
    """Remember the answer and the write's audit entry in the write's open transaction (they
    commit with the write). An expired row of the same key goes first, in that transaction (the
    key was as if unknown to :func:`lookup`); every :data:`PURGE_INTERVAL` so do all expired."""
    global _purged_at
    if _purged_at is None or not _purged_at <= now < _purged_at + PURGE_INTERVAL:
        _purged_at = now
        await session.execute(delete(IdempotentRequest).where(IdempotentRequest.expires_at <= now))
    else:
        await _FORGET_EXPIRED.rows(session, {"agency_id": agency_id, "key": key, "now": now})
    session.add(
        IdempotentRequest(
            agency_id=agency_id,
            key=key,
            request_digest=digest,
            status_code=status_code,
            answer_sealed=sealer.seal(_TABLE, _row_id(agency_id, key), "answer_sealed", answer),
            audit_entry_id=audit_entry_id,
            created_at=now,
            expires_at=now + KEEP_FOR,
        )
    )
