"""The deliver stage: an answer sealed to the caller, or a push sealed to another agency.

Case data leaves the gateway only as ``application/jose``: signed by the gateway and encrypted
to the recipient's registered encryption key (:class:`gateway.flow.seal.Sealer`). An answer goes
back in the HTTP response; a push (a hazard flag, minutes to a participant, an approved onward
disclosure, a record shared with the lead agency) is sealed before the write transaction opens
(:func:`prepare_push`) and joins it through the transactional outbox (:func:`enqueue`), in the
same commit as the act and its audit entry. A push signs its kind and a message id (its
``jti``; queued by :func:`enqueue`, also its outbox id and so the ``Idempotency-Key`` of every
push of it) with the body, so a recipient acts on neither from an unsigned header. A recipient
without a usable key gets nothing: the act fails (503 ``recipient_key_unavailable``) rather than
send anything in clear.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from gateway.contract.envelope import JOSE_MEDIA_TYPE
from gateway.delivery import outbox
from gateway.flow.seal import Sealer

__all__ = ["Push", "Sealed", "enqueue", "jose_response", "prepare_push", "seal_answer"]


@dataclass(frozen=True, slots=True)
class Sealed:
    """A compact JWE for one recipient and the digest of the signed body inside it."""

    jwe: str
    digest: str


@dataclass(frozen=True, slots=True)
class Push:
    """A message sealed for an agency, ready to join the write transaction."""

    recipient_id: str
    kind: str
    sealed: Sealed
    nominal_ref: str | None
    #: The outbox id, signed as the body's ``jti``.
    message_id: str
    #: The meeting the push is about (minutes, an onward disclosure): decided again on it.
    subject_ref: str | None = None


@dataclass(frozen=True, slots=True)
class _Recipient:
    """The agency an answer or a push is sealed to: its id, all the sealer reads (an ORM
    ``Agency`` built for it cost a few microseconds a call)."""

    id: str


def seal_answer(
    sealer: Sealer,
    body: Mapping[str, Any],
    *,
    recipient_id: str,
    keys: Sequence[Mapping[str, Any]],
    now: dt.datetime,
    kind: str | None = None,
    message_id: str | None = None,
) -> Sealed:
    """``body`` signed by the gateway and encrypted to ``recipient_id``'s key (with its
    ``kind`` and ``message_id`` signed too, for a push)."""
    jwe, digest = sealer.seal(
        body,
        recipient=_Recipient(recipient_id),
        recipient_keys=keys,
        now=now,
        kind=kind,
        jti=message_id,
    )
    return Sealed(jwe, digest)


def prepare_push(
    sealer: Sealer,
    body: Mapping[str, Any],
    *,
    recipient_id: str,
    keys: Sequence[Mapping[str, Any]],
    kind: str,
    nominal_ref: str | None,
    now: dt.datetime,
    message_id: str | None = None,
    subject_ref: str | None = None,
) -> Push:
    """``body`` sealed for ``recipient_id`` as a push of ``kind``: the kind and the message id
    (a new one unless given; :func:`enqueue` queues it under that id) are signed with it."""
    mid = outbox.message_id_of(message_id)
    sealed = seal_answer(
        sealer, body, recipient_id=recipient_id, keys=keys, now=now, kind=kind, message_id=mid
    )
    return Push(recipient_id, kind, sealed, nominal_ref, mid, subject_ref)


async def enqueue(session: AsyncSession, push: Push, *, now: dt.datetime) -> str:
    """Add ``push`` to the outbox in the open transaction; the message id."""
    return await outbox.enqueue(
        session,
        recipient_agency_id=push.recipient_id,
        kind=push.kind,
        body=push.sealed.jwe,
        nominal_ref=push.nominal_ref,
        subject_ref=push.subject_ref,
        message_id=push.message_id,
        now=now,
    )


def jose_response(sealed: Sealed, status_code: int = 200) -> Response:
    return Response(
        content=sealed.jwe.encode("ascii"),
        status_code=status_code,
        media_type=JOSE_MEDIA_TYPE,
        headers={"Cache-Control": "no-store"},
    )
