"""Helpers shared by the adapter tests."""

from __future__ import annotations

import hashlib

import httpx

from adapters.receiver import Receiver
from gateway.contract.envelope import JOSE_MEDIA_TYPE
from gateway.store.models import OutboxMessage


def pnc_forms(pnc: str) -> set[str]:
    """A PNC id as it might leak: as written, its serial part, slash replaced or dropped, any
    case, and its unkeyed SHA-256 and SHA-1 (a few million PNC ids are quickly tried)."""
    serial = pnc.split("/")[1]
    spellings = {pnc, pnc.replace("/", "_"), pnc.replace("/", ""), pnc.replace("/", "-")}
    spellings |= {s.lower() for s in spellings}
    digests = {
        getattr(hashlib, name)(s.encode()).hexdigest()
        for name in ("sha256", "sha1")
        for s in spellings
    }
    return spellings | digests | {serial, serial[:-1], serial.lower()}


async def post_delivery(
    receiver: Receiver, row: OutboxMessage, *, key: str | None = None, kind: str | None = None
) -> httpx.Response:
    """POST an outbox row's sealed body to ``receiver`` as the relay does (``Idempotency-Key``
    its id, ``MAPPA-Message-Kind`` its kind); ``key`` and ``kind`` replace those headers (a
    replay by whoever captured the body)."""
    transport = httpx.ASGITransport(app=receiver.app())
    async with httpx.AsyncClient(transport=transport, base_url="https://partner.test") as http:
        return await http.post(
            "/mappa/deliveries",
            content=row.body,
            headers={
                "Content-Type": JOSE_MEDIA_TYPE,
                "Idempotency-Key": key or row.id,
                "MAPPA-Message-Kind": kind or row.kind,
            },
        )
