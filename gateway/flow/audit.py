"""The audit stage: what is recorded for every act, and how it is written.

An :class:`AuditEvent` is built (and validated) by the stage that acts; :func:`record` adds it to
the caller's open transaction, so the entry commits with the act it records or not at all
("no audit, no disclosure"). Free text from callers (an unknown client id, an officer id) is kept
literally, length-capped; it is never interpreted.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
import uuid
from collections.abc import Sequence
from typing import Any, Final, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import errors
from gateway.audit.canonical import canonical_entry
from gateway.audit.errors import MalformedEntryError
from gateway.store.direct import Direct
from gateway.store.models import AuditEntry

__all__ = [
    "SALT_KEY",
    "AuditEvent",
    "Operation",
    "Outcome",
    "Withheld",
    "entry_row",
    "record",
    "record_rows",
]

#: The ``detail`` key of a refused or failed entry's secret salt (`entry_row`).
SALT_KEY: Final = "salt"


class Operation(enum.StrEnum):
    """DPA 2018 s.62 operations, plus the gateway's own security events."""

    COLLECTION = "collection"
    ALTERATION = "alteration"
    CONSULTATION = "consultation"
    DISCLOSURE = "disclosure"
    COMBINATION = "combination"
    ERASURE = "erasure"
    AUTHENTICATION = "authentication"
    TOKEN_ISSUE = "token_issue"  # noqa: S105 - an operation name, not a secret
    ADMINISTRATION = "administration"
    CONSOLE = "console"


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"
    REFUSED = "refused"
    FAILED = "failed"


class Withheld(BaseModel):
    """A field withheld from a disclosure and the rule that withheld it (never its value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(max_length=200)
    rule: str = Field(max_length=128)


def _cap(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]


class AuditEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    entry_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    operation: Operation
    outcome: Outcome
    agency_id: str | None = None
    officer_id: str | None = None
    recipients: tuple[str, ...] = ()
    nominal_ref: str | None = None
    record_refs: tuple[str, ...] = ()
    legal_basis: str | None = None
    purpose: str | None = None
    policy_version: str | None = None
    rule: str | None = None
    withheld: tuple[Withheld, ...] = ()
    payload_digest: str | None = None
    request_id: str | None = None
    reason_code: str | None = None
    #: Non-personal diagnostics (codes, key ids, algorithm names): the full reason for the IG
    #: officer that the caller never sees.
    detail: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("audit times are timezone-aware")
        return value.astimezone(dt.UTC)

    @field_validator("agency_id", "officer_id")
    @classmethod
    def _cap_identity(cls, value: str | None) -> str | None:
        return _cap(value, 200)

    @field_validator("legal_basis", "purpose", "reason_code", "nominal_ref")
    @classmethod
    def _cap_code(cls, value: str | None) -> str | None:
        return _cap(value, 64)


def entry_row(event: AuditEvent) -> dict[str, Any]:
    """The ``audit_entries`` row of ``event`` (``seq`` and ``leaf_hash`` left to the sequencer).

    The row must have a canonical form (`gateway.audit.canonical`), as the sequencer will need
    one: an entry without (an integer beyond 2**53, a NaN, a ``detail`` nested too deeply, a
    lone surrogate) would stop the sequencer for good. It raises `errors.AuditUnavailable`
    instead, in the act's transaction: the act fails, nothing of it is released or stored.

    A refused or failed entry's ``detail`` gets a secret salt (`SALT_KEY`: 16 random bytes,
    hex; any value of the key the act gave is replaced), and so does an entry that names
    records (``record_refs``). An agency reads some of its own refusals reshaped, and another
    agency's entries without the ids of nominals or records it may not know, each without the
    salt (`gateway.audit.agency_view`), while the leaf hash of every entry is public
    (consistency and inclusion proofs hold leaves): without the salt it could rebuild the entry
    a guess would have stored (a suspected id put back), hash it and compare. The console and
    exports show the salt, so the entry verifies whole."""
    detail = dict(event.detail)
    if event.outcome is not Outcome.ALLOWED or event.record_refs:
        detail[SALT_KEY] = secrets.token_hex(16)
    row = {
        "entry_id": event.entry_id,
        "occurred_at": event.occurred_at,
        "operation": event.operation.value,
        "outcome": event.outcome.value,
        "agency_id": event.agency_id,
        "officer_id": event.officer_id,
        "recipients": list(event.recipients),
        "nominal_ref": event.nominal_ref,
        "record_refs": list(event.record_refs),
        "legal_basis": event.legal_basis,
        "purpose": event.purpose,
        "policy_version": event.policy_version,
        "rule": event.rule,
        "withheld": [w.model_dump() for w in event.withheld],
        "payload_digest": event.payload_digest,
        "request_id": event.request_id,
        "reason_code": event.reason_code,
        "detail": detail,
    }
    try:
        canonical_entry({**row, "seq": 0})
    except MalformedEntryError as exc:
        raise errors.AuditUnavailable(
            diagnostics={"reason": exc.code, "entry_id": event.entry_id}
        ) from exc
    return row


def record(session: AsyncSession, event: AuditEvent) -> AuditEntry:
    """Add ``event`` to the open transaction of ``session`` (flushed with it)."""
    entry = AuditEntry(**entry_row(event))
    session.add(entry)
    return entry


#: Every call appends entries: below SQLAlchemy's execution layer (gateway.store.direct).
_INSERT_ENTRIES = Direct(insert(cast(Table, AuditEntry.__table__)))


async def record_rows(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows made by `entry_row` into the open transaction in one executemany (the group
    committer's batch: no ORM flush per entry; each act made its own row, so that an entry
    without a canonical form fails its act alone)."""
    await _INSERT_ENTRIES.many(session, rows)
