"""Giving up on a queued message before it is pushed or listed: the one step that does it.

A message is dead-lettered as it is claimed for a push or listed for a pull (or, too old, by the
relay's sweep when neither meets it) when it was queued
longer ago than a partner accepts a push (``expired``:
:func:`gateway.delivery.lease.expire_stale`), when its recipient can no longer open it (sealed
to a key it has retired, ``recipient_key_retired``:
:func:`gateway.delivery.lease.retire_unopenable`) or when it may no longer have it
(need-to-know decided again, ``recipient_may_not_know``: :mod:`gateway.delivery.redecide`).
:func:`dead_letter` does all of it in the caller's open transaction: the row dead with its code
and no lease, an alert log line by ids and codes, and one audit entry for the message. It returns
the :class:`DeadLetter` that the dead-letter metric counts once that transaction has committed (the
relay after its claim, the inbox route after its read): counted before, a rollback would leave a
count for a message still queued.

The audit entry is a disclosure to the recipient that did not happen, naming the message by id
and kind and how it was to go (``delivery``: push or pull; ``sweep`` for a message too old
that neither met, :func:`gateway.delivery.lease.expire_unserved`), never its content. A message
need-to-know refused is ``refused``, with the refusing rule, its policy version and the
decision's diagnostics, about the message's nominal; one that cannot be delivered is ``failed``
and names no nominal (nothing was decided on it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

import policies
from gateway import errors
from gateway.delivery.outbox import OutboxStatus
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.logs import get_logger
from gateway.store.models import OutboxMessage

__all__ = ["DeadLetter", "dead_letter"]

log = get_logger("gateway.delivery")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message given up on: what the dead-letter metric counts (by kind and code)."""

    id: str
    kind: str
    code: str


def dead_letter(
    session: AsyncSession,
    row: OutboxMessage,
    code: str,
    *,
    now: dt.datetime,
    delivery: str,
    refusal: errors.NotFound | None = None,
    **detail: str,
) -> DeadLetter:
    """Give up on ``row`` with ``code`` in the open transaction: dead, no lease, an alert log
    line and its audit entry (``refused`` by ``refusal``'s rule, else ``failed``; ``detail``
    adds non-personal diagnostics, such as a key id). Count the result once committed."""
    row.status = OutboxStatus.DEAD.value
    row.last_error_code = code
    row.lease_owner = None
    row.lease_expires_at = None
    agency_id = row.recipient_agency_id
    diagnostics = dict(refusal.diagnostics) if refusal is not None else {}
    rule = str(diagnostics.pop("rule", policies.DEFAULT_DENY)) if refusal is not None else None
    version = diagnostics.pop("policy_version", None)
    log.error(
        "outbox_dead_letter",
        alert=True,
        message_id=row.id,
        agency_id=agency_id,
        kind=row.kind,
        code=code,
        **({"rule": rule} if rule is not None else {}),
    )
    record(
        session,
        AuditEvent(
            occurred_at=now,
            operation=Operation.DISCLOSURE,
            outcome=Outcome.REFUSED if refusal is not None else Outcome.FAILED,
            agency_id=agency_id,
            recipients=(agency_id,),
            nominal_ref=row.nominal_ref if refusal is not None else None,
            record_refs=(row.id,),
            rule=rule,
            policy_version=str(version) if version is not None else None,
            reason_code=code,
            detail={
                **diagnostics,
                **detail,
                "resource": "outbox",
                "kind": row.kind,
                "message_id": row.id,
                "delivery": delivery,
            },
        ),
    )
    return DeadLetter(row.id, row.kind, code)
