"""The SDK opens whatever the gateway can seal: its JWE and JWS limits are the gateway's own.

The contract lets minutes run to hundreds of items of 10,000 characters; the gateway seals a
signed body up to its payload cap (:data:`keys.DEFAULT_LIMITS`), which makes a JWE of nearly
twice that. The receiver must read such a push whole and the client open it (pulled, or as a
sealed answer): a push it refused would be retried and dead-lettered, a pulled one never read.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from joserfc.jwk import KeySet

from adapters.client import GatewayClient
from adapters.identity import AgencyIdentity
from adapters.police import PoliceAdapter
from adapters.receiver import MAX_BODY, Receiver, SeenDeliveries
from adapters.standin import JsonStore
from gateway.contract.envelope import JOSE_MEDIA_TYPE
from gateway.flow import deliver
from gateway.state import GatewayState
from keys import DEFAULT_LIMITS

ISSUER = "https://gateway.test"
POLICE = "barnet-police"
#: The contract's longest text (a minutes item: ``gateway.contract.types.LongText``).
LONG_TEXT = 10_000


def _largest_minutes() -> dict[str, Any]:
    """Minutes whose conclusions are items of the longest text the contract allows, as many as
    the gateway's payload cap leaves room for (the contract allows more than it can seal)."""
    text = ("Agreed: the nominal reports weekly to the approved premises. " * 200)[:LONG_TEXT]
    room = DEFAULT_LIMITS.max_payload_bytes - 8192  # the signed envelope around the minutes
    count = room // (LONG_TEXT + 64)
    return {
        "minutes": {
            "meeting_id": str(uuid.uuid4()),
            "nominal_id": str(uuid.uuid4()),
            "meeting_type": "level_2",
            "held_on": "2026-12-01",
            "conclusions": [{"id": f"c{n}", "text": text} for n in range(count)],
            "actions": [],
        }
    }


async def test_the_largest_minutes_are_received_and_opened(
    app: FastAPI, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Minutes at the gateway's payload cap, sealed by the gateway: the receiver applies them
    (200, written onto the nominal) and the client opens the same message as pulled."""
    state: GatewayState = app.state.gateway
    assert state.sealer is not None
    identity = AgencyIdentity.generate(POLICE)
    body = _largest_minutes()
    message_id = str(uuid.uuid4())
    push = deliver.prepare_push(
        state.sealer,
        body,
        recipient_id=POLICE,
        keys=[identity.encryption_key.as_dict(private=False)],
        kind="minutes",
        nominal_ref=None,
        now=state.clock(),
        message_id=message_id,
    )
    sealed = push.sealed.jwe
    assert len(sealed) > 1_048_576  # more than a mebibyte on the wire
    assert len(sealed) <= MAX_BODY

    store = JsonStore(tmp_path / "police.json")
    receiver = Receiver(
        identity,
        PoliceAdapter(store),
        ISSUER,
        gateway_keys=KeySet.import_key_set((await client.get("/.well-known/jwks.json")).json()),
        clock=state.clock,
        seen=SeenDeliveries(tmp_path / "seen-deliveries.sqlite3"),
    )
    transport = httpx.ASGITransport(app=receiver.app())
    async with httpx.AsyncClient(transport=transport, base_url="https://partner.test") as http:
        answer = await http.post(
            "/mappa/deliveries",
            content=sealed,
            headers={
                "Content-Type": JOSE_MEDIA_TYPE,
                "Idempotency-Key": message_id,
                "MAPPA-Message-Kind": "minutes",
            },
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["action"] == "minutes_recorded"
    nominal = store.get("nominals", body["minutes"]["nominal_id"]) or {}
    conclusions = nominal["meeting_outcome"]["conclusions"]
    assert conclusions == body["minutes"]["conclusions"]

    pulled, _evidence = await GatewayClient(identity, ISSUER, client, clock=state.clock).open(
        sealed
    )
    assert pulled.jti == message_id and pulled.kind == "minutes"
    assert pulled.body == body
