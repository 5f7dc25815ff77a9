"""The transactional outbox: what must reach another agency, written with the act itself.

A flow that owes a message to an agency (a hazard flag, approved minutes, an owner notification,
a shared record, a level change) seals the body for the recipient first, then calls
:func:`enqueue` inside the same open transaction as its audit entry::

    async with database.write() as session:
        ...                                   # the act itself
        await audit.record(session, event)    # its audit entry
        message_id = await outbox.enqueue(
            session, recipient_agency_id="cs-barnet", kind="hazard_flag", body=jwe
        )

Either all three commit or none does. The relay (:mod:`gateway.delivery.relay`) pushes the row
later, outside any transaction; the recipient may also pull it from ``/v1/inbox``. The message
id is the ``Idempotency-Key`` of every push, so a partner dedupes a redelivery.

A message id is time-ordered (:func:`new_message_id`, an RFC 9562 UUIDv7): of two messages
signed in the same second (the signed ``iat`` is in whole seconds) the later has the greater id,
in its string form too, which is how a partner tells which of them is the later
(docs/partners.md, section 4, rule 5).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.flow.signed_push import KIND_PATTERN
from gateway.store.models import OutboxMessage, utcnow

__all__ = [
    "EXPIRED",
    "KEY_RETIRED",
    "KINDS",
    "OutboxStatus",
    "enqueue",
    "message_id_of",
    "new_message_id",
    "sealed_to",
]


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    LEASED = "leased"
    DELIVERED = "delivered"
    DEAD = "dead"


#: Kinds of message the gateway sends (the partner routes on the kind; the body says the rest).
KINDS = frozenset(
    {
        "contributor_decision",
        "erasure",
        "hazard_flag",
        "level_change",
        "minutes",
        "onward_disclosure",
        "owner_notification",
        "record",
        "referral",
        "warning_marker",
        "warning_marker_revocation",
    }
)

#: The code of a message dead-lettered because its recipient no longer holds the key it was
#: sealed to (retired, its overlap over): it is neither pushed nor listed in the inbox.
KEY_RETIRED = "recipient_key_retired"
#: The code of a message dead-lettered because it was queued longer ago than a partner accepts
#: a push (:data:`gateway.flow.signed_push.PUSH_MAX_AGE`: it is signed when queued, and a
#: partner refuses it as ``stale``): neither pushed nor listed; the act is to be issued again.
EXPIRED = "expired"

_KIND = re.compile(KIND_PATTERN)
# A compact JWE: five base64url parts (the header and ciphertext are never empty).
_COMPACT_JWE = re.compile(
    r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$"
)


class _Stamps:
    """The 60-bit time stamps of this process's message ids, never going backwards."""

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> int:
        """Milliseconds since the epoch (48 bits), then the fraction of the millisecond in
        4096ths (12 bits: RFC 9562 section 6.2, method 3); if that is not after the last stamp
        this process gave (the clock stepped back, or two ids in one 4096th of a millisecond),
        the last one plus one."""
        millis, nanos = divmod(self._clock(), 1_000_000)
        stamp = (millis << 12) | (nanos * 4096 // 1_000_000)
        with self._lock:
            stamp = max(stamp, self._last + 1)
            self._last = stamp
        return stamp


_STAMPS = _Stamps()


def new_message_id() -> str:
    """A new message id: an RFC 9562 UUIDv7, its time in milliseconds (``unix_ts_ms``) and the
    millisecond's fraction (``rand_a``), then 62 random bits. Ids never go backwards within a
    process, and the string form sorts as the ids do (fixed-width lower-case hex).

    The id is signed as the message's ``jti``, so it is made when the message is sealed, as the
    act that owes it is written (:func:`gateway.flow.deliver.prepare_push`). Across processes,
    two changes to one thing are put in order by the store: a change is sealed after reading the
    state it changes, and its write refuses it if another change committed in between (a level
    change's 409 ``level_changed_meanwhile``), so the change committed second was sealed after
    the first committed, and its id is made later, in whichever process (as far as the
    gateway hosts' clocks agree: the signed ``iat`` rests on them too)."""
    stamp = _STAMPS.next()
    value = (
        (stamp >> 12) << 80  # unix_ts_ms
        | 0x7 << 76  # version 7
        | (stamp & 0xFFF) << 64  # rand_a: the millisecond's fraction
        | 0b10 << 62  # the RFC 9562 variant
        | secrets.randbits(62)  # rand_b
    )
    return str(uuid.UUID(int=value))


def message_id_of(given: str | None = None) -> str:
    """A message's outbox id: ``given`` (a UUID, in its canonical form), or a new one
    (:func:`new_message_id`)."""
    return str(uuid.UUID(given)) if given is not None else new_message_id()


def sealed_to(body: str) -> str | None:
    """The ``kid`` of the recipient key a stored message was sealed to, from its JWE protected
    header (the gateway always writes one); None when the header names none or is unreadable."""
    head = body.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):  # JSON, UTF-8 and base64 errors alike
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) and kid else None


async def enqueue(
    session: AsyncSession,
    *,
    recipient_agency_id: str,
    kind: str,
    body: str,
    nominal_ref: str | None = None,
    subject_ref: str | None = None,
    message_id: str | None = None,
    now: dt.datetime | None = None,
) -> str:
    """Add one sealed message for ``recipient_agency_id`` to the caller's open transaction.

    ``body`` must be the compact JWE already sealed to the recipient's encryption key (anything
    else is refused: the outbox never holds case data in clear). Nothing is flushed or committed
    here; the caller's transaction decides. ``subject_ref`` names the meeting a message of
    minutes or of an onward disclosure is about (it is decided again on that meeting). Returns
    the message id (a UUID; the push's ``Idempotency-Key``).
    """
    if not _KIND.fullmatch(kind):
        raise ValueError("kind must be a short lower-case code")
    if not _COMPACT_JWE.fullmatch(body):
        raise ValueError("body must be a compact JWE sealed for the recipient")
    if not recipient_agency_id:
        raise ValueError("recipient_agency_id is required")
    mid = message_id_of(message_id)
    when = now or utcnow()
    session.add(
        OutboxMessage(
            id=mid,
            recipient_agency_id=recipient_agency_id,
            kind=kind,
            body=body,
            nominal_ref=nominal_ref,
            subject_ref=subject_ref,
            status=OutboxStatus.PENDING.value,
            attempts=0,
            next_attempt_at=when,
            created_at=when,
        )
    )
    return mid
