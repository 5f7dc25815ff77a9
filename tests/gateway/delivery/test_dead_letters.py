"""A queued message given up on before a push or a pull: one audit entry per message, whatever
the reason (gateway.delivery.dead_letters)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from structlog.testing import capture_logs

from gateway.agencies import add_agency, rotate_agency_keys
from gateway.delivery import enqueue
from gateway.delivery.endpoints import set_endpoint
from gateway.delivery.inbox import list_inbox
from gateway.delivery.lease import claim
from gateway.delivery.outbox import KEY_RETIRED
from gateway.store import Database
from gateway.store.models import AuditEntry
from tests.gateway.delivery.support import encryption_key, sealed_to

T0 = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)


async def test_each_message_sealed_to_a_retired_key_has_its_own_entry(db: Database) -> None:
    """Three messages sealed to a key retired with no overlap, two met by the relay's claim and
    one by an inbox pull: each is dead-lettered with an entry of its own (a failed disclosure
    to the recipient naming the message, its kind, the key and how it was to go, no nominal),
    where one entry used to stand for all a sweep or a page met, the key not tied to any."""
    old, new = encryption_key(), encryption_key()
    sig = encryption_key() | {"use": "sig", "alg": "ES256"}
    await add_agency(
        db,
        agency_id="cs-a",
        name="cs-a",
        agency_type="childrens_services",
        role="duty_to_cooperate",
        area="barnet",
        scopes=["inbox:read"],
        jwks={"keys": [sig, old]},
        now=T0,
    )
    await set_endpoint(db, "cs-a", url="http://127.0.0.1:9/mappa/deliveries", development=True)
    async with db.write() as session:
        pushed = await enqueue(
            session, recipient_agency_id="cs-a", kind="hazard_flag", body=sealed_to(old["kid"])
        )
        marker = await enqueue(
            session,
            recipient_agency_id="cs-a",
            kind="warning_marker",
            body=sealed_to(old["kid"]),
        )
    await rotate_agency_keys(db, "cs-a", {"keys": [sig, new]}, dt.timedelta(0))
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    with capture_logs() as logs:
        async with db.write() as session:
            claimed = await claim(
                session, owner="relay-1", now=now, lease=dt.timedelta(minutes=5), slots=lambda _: 9
            )
        async with db.write() as session:
            pulled = await enqueue(
                session, recipient_agency_id="cs-a", kind="record", body=sealed_to(old["kid"])
            )
        async with db.write() as session:
            page = await list_inbox(session, "cs-a", limit=10, now=now)
    assert claimed.rows == ()
    assert sorted(claimed.retired) == sorted([(pushed, "hazard_flag"), (marker, "warning_marker")])
    assert page.items == () and page.retired_kinds == ("record",)

    async with db.read() as session:
        entries = (
            await session.scalars(select(AuditEntry).where(AuditEntry.reason_code == KEY_RETIRED))
        ).all()
    by_message = {tuple(entry.record_refs): entry for entry in entries}
    assert set(by_message) == {(pushed,), (marker,), (pulled,)}
    for mid, kind, delivery in (
        (pushed, "hazard_flag", "push"),
        (marker, "warning_marker", "push"),
        (pulled, "record", "pull"),
    ):
        entry = by_message[(mid,)]
        assert (entry.operation, entry.outcome) == ("disclosure", "failed")
        assert entry.agency_id == "cs-a" and entry.recipients == ["cs-a"]
        assert entry.nominal_ref is None and entry.rule is None
        detail = {k: v for k, v in entry.detail.items() if k != "salt"}
        assert detail == {
            "resource": "outbox",
            "kind": kind,
            "message_id": mid,
            "delivery": delivery,
            "sealed_to": old["kid"],
        }
    alerts = [e for e in logs if e["event"] == "outbox_dead_letter"]
    assert sorted(e["message_id"] for e in alerts) == sorted([pushed, marker, pulled])
    assert all(e["code"] == KEY_RETIRED and e["alert"] is True for e in alerts)
