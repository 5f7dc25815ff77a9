"""Message ids are time-ordered (RFC 9562 UUIDv7), so a partner's tie-break on the greater
``jti`` for two messages signed in the same second takes the later one (docs/partners.md,
section 4, rule 5)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import KeySet

from adapters.identity import AgencyIdentity
from adapters.probation import ProbationAdapter
from adapters.receiver import Receiver, SeenDeliveries
from adapters.standin import JsonStore
from gateway.delivery import outbox
from gateway.delivery.outbox import message_id_of, new_message_id
from gateway.flow import deliver

ISSUER = "https://gateway.test"
MS = 1_000_000  # nanoseconds


def _fields(mid: str) -> tuple[int, int, int, int]:
    """(unix_ts_ms, version, rand_a, variant) of a UUID's string form."""
    value = uuid.UUID(mid).int
    return value >> 80, (value >> 76) & 0xF, (value >> 64) & 0xFFF, (value >> 62) & 0b11


def test_a_new_message_id_is_a_uuidv7_of_now() -> None:
    before = time.time_ns() // MS
    mid = message_id_of()  # what enqueue and prepare_push give a message with no id
    after = time.time_ns() // MS
    millis, version, _, variant = _fields(mid)
    assert (version, variant) == (7, 0b10)
    assert before <= millis <= after
    assert mid == str(uuid.UUID(mid))  # canonical: lower-case, hyphenated
    assert message_id_of(mid.upper()) == mid  # a given id is kept, canonical


def test_ids_made_one_after_another_sort_in_that_order_as_strings() -> None:
    ids = [new_message_id() for _ in range(20_000)]  # many in each millisecond
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids) == sorted(ids, key=lambda mid: uuid.UUID(mid).int)


def test_the_fraction_of_the_millisecond_orders_ids_within_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rand_a holds the millisecond's fraction in 4096ths (RFC 9562, section 6.2, method 3)."""
    at = [1_780_000_000_000 * MS + MS // 2]
    monkeypatch.setattr(outbox, "_STAMPS", outbox._Stamps(lambda: at[0]))
    first = new_message_id()
    at[0] += MS // 4
    second = new_message_id()
    assert _fields(first)[:3] == (1_780_000_000_000, 7, 2048)
    assert _fields(second)[:3] == (1_780_000_000_000, 7, 3072)
    assert first < second


def test_ids_never_go_backwards_when_the_clock_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock stepped back (NTP), or ids closer than a 4096th of a millisecond: each id is
    still after the one before it."""
    start = 1_780_000_000_000 * MS
    times = iter([start, start, start - 5_000 * MS, start - 5_000 * MS, start + 10])
    monkeypatch.setattr(outbox, "_STAMPS", outbox._Stamps(lambda: next(times)))
    ids = [new_message_id() for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert {_fields(mid)[0] for mid in ids} == {1_780_000_000_000}


async def test_two_changes_signed_in_the_same_second_leave_the_partner_holding_the_later(
    app: FastAPI, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Two level changes of one nominal sealed in the same second (one iat), pushed in the
    order they were written to the SDK's receiver and the probation adapter, which keep the
    message with the greater (iat, jti): the partner ends with the later level every time, and
    the older answered superseded if it comes again after. (With random ids, about half the
    trials ended with the earlier level, the later message answered superseded.)"""
    state = app.state.gateway
    jwks = KeySet.import_key_set((await client.get("/.well-known/jwks.json")).json())
    identity = AgencyIdentity.generate("probation-x")
    keys = [identity.encryption_key.as_dict(private=False)]
    nominal = str(uuid.uuid4())
    held = []
    for trial in range(20):
        store = JsonStore(tmp_path / f"standin-{trial}.json")
        receiver = Receiver(
            identity,
            ProbationAdapter(store),
            ISSUER,
            gateway_keys=jwks,
            clock=state.clock,
            seen=SeenDeliveries.in_memory(),
        )
        now = state.clock()
        pushes = [
            deliver.prepare_push(
                state.sealer,
                {"nominal_id": nominal, "old_level": old, "level": new, "changed_on": "2026-05-01"},
                recipient_id="probation-x",
                keys=keys,
                kind="level_change",
                nominal_ref=nominal,
                now=now,
            )
            for old, new in ((1, 2), (2, 3))  # written in this order, in one second
        ]
        actions = []
        transport = httpx.ASGITransport(app=receiver.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as http:
            for push in (*pushes, pushes[0]):  # the first again, as a retry would
                answer = await http.post(
                    "/mappa/deliveries",
                    content=push.sealed.jwe,
                    headers={
                        "Content-Type": "application/jose",
                        "Idempotency-Key": push.message_id,
                        "MAPPA-Message-Kind": "level_change",
                    },
                )
                assert answer.status_code == 200, answer.text
                actions.append(answer.json().get("action"))
        assert actions[1] != "superseded", actions
        registration = store.get("registrations", nominal)
        assert registration is not None
        held.append(registration["level"])
    assert held == ["M3"] * 20
