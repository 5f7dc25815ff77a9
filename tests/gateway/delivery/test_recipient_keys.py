"""Which of a recipient's keys a message is sealed to, and what becomes of one sealed to a key
the recipient has since retired."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from joserfc.jwk import ECKey
from sqlalchemy import select

from adapters.identity import AgencyIdentity
from gateway.agencies import add_agency, rotate_agency_keys
from gateway.delivery import enqueue
from gateway.delivery.endpoints import set_endpoint
from gateway.delivery.inbox import list_inbox
from gateway.delivery.lease import claim
from gateway.delivery.outbox import KEY_RETIRED
from gateway.delivery.relay import Relay, RelayConfig
from gateway.flow.seal import agency_public_jwks
from gateway.http.metrics import GatewayMetrics
from gateway.store import Database
from gateway.store.models import AuditEntry, OutboxMessage

T0 = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)


def _enc_key() -> dict[str, Any]:
    key = ECKey.generate_key("P-256", private=False)
    data = key.as_dict(private=False)
    data.update({"kid": key.thumbprint(), "use": "enc", "alg": "ECDH-ES+A256KW"})
    return data


async def _agency(db: Database, agency_id: str, keys: list[dict[str, Any]]) -> AgencyIdentity:
    identity = AgencyIdentity.generate(agency_id)
    await add_agency(
        db,
        agency_id=agency_id,
        name=agency_id,
        agency_type="childrens_services",
        role="duty_to_cooperate",
        area="barnet",
        scopes=["inbox:read"],
        jwks={"keys": [identity.signing_key.as_dict(private=False), *keys]},
        now=T0,
    )
    return identity


async def _sealed_to(db: Database, agency_id: str, now: dt.datetime) -> str:
    """The kid Sealer.seal takes: the last encryption key agency_public_jwks lists."""
    async with db.read() as session:
        keys = await agency_public_jwks(session, agency_id, "enc", now)
    return str(keys[-1]["kid"])


async def test_a_message_is_sealed_to_the_newest_current_key_never_a_retiring_one(
    db: Database,
) -> None:
    """During a rotation's overlap the agency's retiring key is still valid, but a new message
    is sealed to its current key (the keys were read in no order, and the last one taken)."""
    kept, dropped = _enc_key(), _enc_key()
    identity = await _agency(db, "cs-a", [kept, dropped])
    sig = identity.signing_key.as_dict(private=False)
    t1 = T0 + dt.timedelta(hours=1)
    await rotate_agency_keys(db, "cs-a", {"keys": [sig, kept]}, dt.timedelta(days=1), now=t1)
    assert await _sealed_to(db, "cs-a", t1) == kept["kid"]

    newer = _enc_key()
    t2 = T0 + dt.timedelta(hours=2)
    await rotate_agency_keys(db, "cs-a", {"keys": [sig, newer, kept]}, dt.timedelta(0), now=t2)
    assert await _sealed_to(db, "cs-a", t2) == newer["kid"]  # both current: the newest


def _sealed_body(kid: str) -> str:
    """A stored message as the outbox holds it, its JWE header naming the recipient key."""
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", "kid": kid}
    head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{head}.a2V5.aXY.Y2lwaGVydGV4dA.dGFn"


async def test_a_message_sealed_to_a_retired_key_is_neither_pushed_nor_listed(
    db: Database,
) -> None:
    """The agency retired its key with no overlap (compromised, say): what was sealed to it is
    dead-lettered as recipient_key_retired, audited by ids, never claimed for a push nor listed
    in the inbox. What was sealed to a key still in its overlap, or to the new key, goes."""
    old, retiring, new = _enc_key(), _enc_key(), _enc_key()
    identity = await _agency(db, "cs-a", [old, retiring])
    await set_endpoint(db, "cs-a", url="http://127.0.0.1:9/mappa/deliveries", development=True)
    sig = identity.signing_key.as_dict(private=False)
    async with db.write() as session:
        ids = [
            await enqueue(
                session, recipient_agency_id="cs-a", kind="hazard_flag", body=_sealed_body(k)
            )
            for k in (old["kid"], retiring["kid"], new["kid"], old["kid"])
        ]
    to_old, to_retiring, to_new, to_old_too = ids
    t1 = dt.datetime.now(dt.UTC)
    await rotate_agency_keys(db, "cs-a", {"keys": [sig, new, retiring]}, dt.timedelta(0), now=t1)
    await rotate_agency_keys(db, "cs-a", {"keys": [sig, new]}, dt.timedelta(days=1), now=t1)
    now = t1 + dt.timedelta(seconds=1)

    async with db.write() as session:
        claimed = await claim(
            session, owner="relay-1", now=now, lease=dt.timedelta(minutes=5), slots=lambda _: 10
        )
    assert {row.id for row in claimed.rows} == {to_retiring, to_new}
    assert sorted(claimed.retired) == sorted([(to_old, "hazard_flag"), (to_old_too, "hazard_flag")])

    async with db.write() as session:  # one more, for an agency that only pulls
        to_old_pulled = await enqueue(
            session, recipient_agency_id="cs-a", kind="record", body=_sealed_body(old["kid"])
        )
    async with db.write() as session:
        page = await list_inbox(session, "cs-a", limit=2, now=now)
        assert [item.id for item in page.items] == [to_retiring, to_new]
        assert page.retired_kinds == ()  # the first two were already dead-lettered by claim
        rest = await list_inbox(session, "cs-a", limit=10, cursor=page.next_cursor, now=now)
        assert rest.items == ()
        assert rest.retired_kinds == ("record",)  # counted by the route once committed
    async with db.write() as session:
        again = await list_inbox(session, "cs-a", limit=10, now=now)
    assert [item.id for item in again.items] == [to_retiring, to_new]

    async with db.read() as session:
        stored = {r.id: r for r in await session.scalars(select(OutboxMessage))}
        audited = (
            await session.scalars(select(AuditEntry).where(AuditEntry.reason_code == KEY_RETIRED))
        ).all()
    retired = [to_old, to_old_too, to_old_pulled]
    for mid in retired:
        assert (stored[mid].status, stored[mid].last_error_code) == ("dead", KEY_RETIRED)
    assert sorted(ref for entry in audited for ref in entry.record_refs) == sorted(retired)


async def test_the_relay_counts_what_it_dead_lettered_for_a_retired_key(db: Database) -> None:
    """A message dead-lettered as recipient_key_retired counts in the dead-letter metric, as one
    that ran out of attempts does, once the claim has committed."""
    old, new = _enc_key(), _enc_key()
    identity = await _agency(db, "cs-a", [old])
    await set_endpoint(db, "cs-a", url="http://127.0.0.1:9/mappa/deliveries", development=True)
    async with db.write() as session:
        await enqueue(
            session, recipient_agency_id="cs-a", kind="marker", body=_sealed_body(old["kid"])
        )
    sig = identity.signing_key.as_dict(private=False)
    await rotate_agency_keys(db, "cs-a", {"keys": [sig, new]}, dt.timedelta(0))
    metrics = GatewayMetrics()
    relay = Relay(db, RelayConfig(), metrics=metrics)
    assert await relay.sweep() == 0
    await relay.stop()
    sample = metrics.registry.get_sample_value(
        "mappa_gateway_outbox_dead_letters_total", {"kind": "marker", "code": KEY_RETIRED}
    )
    assert sample == 1.0
