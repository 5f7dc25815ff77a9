"""A queued message given up on before a push or a pull: one audit entry per message, whatever
the reason (gateway.delivery.dead_letters)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from gateway.agencies import add_agency, rotate_agency_keys
from gateway.delivery import enqueue
from gateway.delivery.endpoints import set_endpoint
from gateway.delivery.inbox import list_inbox
from gateway.delivery.lease import claim
from gateway.delivery.outbox import KEY_RETIRED
from gateway.store import Database
from gateway.store.models import AuditEntry, OutboxMessage
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


async def test_a_message_queued_longer_ago_than_the_push_window_is_dead_lettered_expired(
    db: Database,
) -> None:
    """A push is signed when queued and a partner refuses one older than PUSH_MAX_AGE as stale:
    the relay's claim and an inbox pull dead-letter such a message as expired (audited, an
    alert, counted) instead of pushing or listing it; a message just inside the window still
    goes. (They were pushed, refused, retried twelve times and dead-lettered as a partner
    error, and listed to a puller who could only refuse them.)"""
    from gateway.delivery.metrics import RelayMetrics
    from gateway.delivery.outbox import EXPIRED
    from gateway.delivery.relay import Relay
    from gateway.flow.signed_push import PUSH_MAX_AGE
    from tests.gateway.delivery.support import JWE, fast_config, partner, rows

    await partner(db, "cs-a", "http://127.0.0.1:9/mappa/deliveries")
    await partner(db, "cs-b", None)  # pulls
    now = dt.datetime.now(dt.UTC)
    too_old, just_in = now - PUSH_MAX_AGE - dt.timedelta(seconds=1), now - PUSH_MAX_AGE / 2
    async with db.write() as session:
        pushed_old = await enqueue(
            session, recipient_agency_id="cs-a", kind="level_change", body=JWE, now=too_old
        )
        pushed_new = await enqueue(
            session, recipient_agency_id="cs-a", kind="hazard_flag", body=JWE, now=just_in
        )
        pulled_old = await enqueue(
            session, recipient_agency_id="cs-b", kind="record", body=JWE, now=too_old
        )
        pulled_new = await enqueue(
            session, recipient_agency_id="cs-b", kind="minutes", body=JWE, now=just_in
        )
    with capture_logs() as logs:
        async with db.write() as session:
            claimed = await claim(
                session, owner="relay-1", now=now, lease=dt.timedelta(minutes=5), slots=lambda _: 9
            )
        async with db.write() as session:
            page = await list_inbox(session, "cs-b", limit=10, now=now)
        async with db.write() as session:  # a message left dead by failed pushes, now too old
            row = await session.get(OutboxMessage, pushed_new)
            assert row is not None
            row.status, row.last_error_code, row.created_at = "dead", "http_5xx", too_old
        async with db.write() as session:
            relisted = await list_inbox(session, "cs-a", limit=10, now=now)
    assert [r.id for r in claimed.rows] == [pushed_new]
    assert claimed.expired == ((pushed_old, "level_change"),)
    assert [item.id for item in page.items] == [pulled_new]
    assert page.expired_kinds == ("record",)
    assert relisted.items == () and relisted.expired_kinds == ("hazard_flag",)
    stored = await rows(db)
    for mid in (pushed_old, pulled_old, pushed_new):
        assert (stored[mid].status, stored[mid].last_error_code) == ("dead", EXPIRED)
    async with db.write() as session:  # listed again: nothing more, and nothing audited twice
        again = await list_inbox(session, "cs-b", limit=10, now=now)
    assert [item.id for item in again.items] == [pulled_new] and again.dead == ()

    async with db.read() as session:
        entries = (
            await session.scalars(select(AuditEntry).where(AuditEntry.reason_code == EXPIRED))
        ).all()
    by_message = {tuple(entry.record_refs): entry for entry in entries}
    assert set(by_message) == {(pushed_old,), (pulled_old,), (pushed_new,)}
    entry = by_message[(pulled_old,)]
    assert (entry.operation, entry.outcome, entry.nominal_ref) == ("disclosure", "failed", None)
    assert entry.detail["delivery"] == "pull" and entry.detail["kind"] == "record"
    assert dt.datetime.fromisoformat(entry.detail["queued_at"]) == too_old
    alerts = [e for e in logs if e["event"] == "outbox_dead_letter" and e["code"] == EXPIRED]
    assert sorted(e["message_id"] for e in alerts) == sorted([pushed_old, pulled_old, pushed_new])

    # the relay counts what its claim expired, once committed
    metrics = RelayMetrics()
    relay = Relay(db, fast_config(), metrics=metrics)
    async with db.write() as session:
        await enqueue(session, recipient_agency_id="cs-a", kind="minutes", body=JWE, now=too_old)
    assert await relay.sweep() == 0
    count = metrics.registry.get_sample_value
    assert (
        count("mappa_gateway_outbox_dead_letters_total", {"kind": "minutes", "code": EXPIRED}) == 1
    )
    await relay.stop()


async def test_messages_no_push_or_pull_takes_are_expired_by_the_relay_sweep(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message queued PUSH_MAX_AGE ago that neither a claim nor an inbox pull meets (its
    recipient pulls and stopped pulling, is suspended, or has no push endpoint and no current
    key) is dead-lettered as expired by the relay's sweep, in batches, each audited (delivery
    ``sweep``), alerted and counted once; a younger message, and an old one in a relay's hands
    (its lease live), stay as they were; a sweep within the expiry interval looks no more.
    (Such messages waited unseen for ever: docs/partners.md promised they were alerted.)"""
    from gateway.agencies import suspend_agency
    from gateway.delivery import relay as relay_module
    from gateway.delivery.metrics import RelayMetrics
    from gateway.delivery.outbox import EXPIRED
    from gateway.delivery.relay import Relay
    from gateway.flow.signed_push import PUSH_MAX_AGE
    from tests.gateway.delivery.support import JWE, fast_config, partner, rows

    await partner(db, "cs-pull", None)
    await partner(db, "cs-gone", "http://127.0.0.1:9/mappa/deliveries")
    await suspend_agency(db, "cs-gone")
    now = dt.datetime.now(dt.UTC)
    too_old, young = now - PUSH_MAX_AGE - dt.timedelta(seconds=1), now - PUSH_MAX_AGE / 2
    async with db.write() as session:
        old = [
            await enqueue(session, recipient_agency_id=agency, kind="minutes", body=JWE, now=at)
            for agency, at in [("cs-pull", too_old)] * 3 + [("cs-gone", too_old)] * 2
        ]
        kept = [
            await enqueue(
                session, recipient_agency_id="cs-pull", kind="record", body=JWE, now=young
            ),
            await enqueue(
                session, recipient_agency_id="cs-pull", kind="record", body=JWE, now=too_old
            ),
        ]
        held = await session.get(OutboxMessage, kept[1])  # another relay is pushing it now
        assert held is not None
        held.status, held.lease_owner = "leased", "relay-other"
        held.lease_expires_at = now + dt.timedelta(minutes=1)
        lapsed = await enqueue(
            session, recipient_agency_id="cs-pull", kind="hazard_flag", body=JWE, now=too_old
        )
        gone = await session.get(OutboxMessage, lapsed)  # its relay died: the lease ran out
        assert gone is not None
        gone.status, gone.lease_owner = "leased", "relay-dead"
        gone.lease_expires_at = now - dt.timedelta(minutes=1)
    old.append(lapsed)
    monkeypatch.setattr(relay_module, "EXPIRY_BATCH", 2)  # four batches, the last one short

    metrics = RelayMetrics()
    relay = Relay(db, fast_config(), metrics=metrics, clock=lambda: now)
    with capture_logs() as logs:
        assert await relay.sweep() == 0
    stored = await rows(db)
    assert {mid: (stored[mid].status, stored[mid].last_error_code) for mid in old} == {
        mid: ("dead", EXPIRED) for mid in old
    }
    assert stored[lapsed].lease_owner is None
    assert (stored[kept[0]].status, stored[kept[1]].status) == ("pending", "leased")
    assert stored[kept[1]].lease_owner == "relay-other"
    alerts = [e for e in logs if e["event"] == "outbox_dead_letter"]
    assert sorted(e["message_id"] for e in alerts) == sorted(old)
    assert all(e["code"] == EXPIRED and e["alert"] is True for e in alerts)
    async with db.read() as session:
        entries = (
            await session.scalars(select(AuditEntry).where(AuditEntry.reason_code == EXPIRED))
        ).all()
    assert sorted(entry.record_refs[0] for entry in entries) == sorted(old)
    assert {entry.detail["delivery"] for entry in entries} == {"sweep"}
    assert {(e.operation, e.outcome, e.nominal_ref) for e in entries} == {
        ("disclosure", "failed", None)
    }
    count = metrics.registry.get_sample_value
    labels = {"kind": "minutes", "code": EXPIRED}
    assert count("mappa_gateway_outbox_dead_letters_total", labels) == 5

    # within the interval a sweep does not look again: a row that has just expired waits
    async with db.write() as session:
        late = await enqueue(
            session, recipient_agency_id="cs-pull", kind="minutes", body=JWE, now=too_old
        )
    assert await relay.sweep() == 0
    assert (await rows(db))[late].status == "pending"
    # the next look takes it, and nothing already dead-lettered is audited twice
    again = Relay(db, fast_config(expiry_interval=0), metrics=metrics, clock=lambda: now)
    assert await again.sweep() == 0
    assert (await rows(db))[late].status == "dead"
    assert count("mappa_gateway_outbox_dead_letters_total", labels) == 6
    async with db.read() as session:
        total = (
            await session.scalars(select(AuditEntry).where(AuditEntry.reason_code == EXPIRED))
        ).all()
    assert len(total) == len(old) + 1
    await relay.stop()
    await again.stop()


async def test_outbox_retry_leaves_dead_what_no_retry_can_deliver(db: Database) -> None:
    """outbox retry puts back a dead letter that ran out of attempts and one refused by
    need-to-know (decided again when claimed); it leaves dead, and counts, one written longer
    ago than PUSH_MAX_AGE (expired, or out of attempts that long ago: its partner would refuse
    it as stale) and one sealed to a key its recipient retired, which would only be
    dead-lettered, alerted and audited again. Its audit entry says both counts."""
    from gateway.delivery.operations import Retried, retry
    from gateway.delivery.outbox import EXPIRED
    from gateway.delivery.redecide import NOT_KNOWN
    from gateway.flow.signed_push import PUSH_MAX_AGE
    from tests.gateway.delivery.support import JWE, partner, rows

    await partner(db, "cs-a", None)
    await partner(db, "cs-b", None)
    now = dt.datetime.now(dt.UTC)
    old = now - PUSH_MAX_AGE - dt.timedelta(minutes=1)
    nearly = now - PUSH_MAX_AGE + dt.timedelta(minutes=30)  # would expire before it went
    dead = {
        "attempts": (now, "http_5xx"),
        "refused": (now, NOT_KNOWN),
        "expired": (old, EXPIRED),
        "long_ago": (old, "http_5xx"),
        "nearly": (nearly, "http_5xx"),
        "ahead": (now, EXPIRED),  # by a relay whose clock runs ahead of this one's
        "retired": (now, KEY_RETIRED),
    }
    ids: dict[str, str] = {}
    async with db.write() as session:
        for name, (at, code) in dead.items():
            ids[name] = await enqueue(
                session, recipient_agency_id="cs-a", kind="minutes", body=JWE, now=at
            )
            row = await session.get(OutboxMessage, ids[name])
            assert row is not None
            row.status, row.last_error_code, row.attempts = "dead", code, 12
        other = await enqueue(session, recipient_agency_id="cs-b", kind="minutes", body=JWE)
        row = await session.get(OutboxMessage, other)
        assert row is not None
        row.status, row.last_error_code = "dead", "http_5xx"

    assert await retry(db, agency_id="cs-a", now=now) == Retried(queued=2, left=5)
    stored = await rows(db)
    assert {name: stored[mid].status for name, mid in ids.items()} == {
        "attempts": "pending",
        "refused": "pending",
        "expired": "dead",
        "long_ago": "dead",
        "nearly": "dead",
        "ahead": "dead",
        "retired": "dead",
    }
    assert stored[ids["attempts"]].attempts == 0
    assert stored[ids["expired"]].last_error_code == EXPIRED  # as it was
    assert stored[other].status == "dead"  # another agency's: not asked for
    assert await retry(db, message_ids=[ids["expired"], other], now=now) == Retried(1, 1)
    async with db.read() as session:
        entries = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.reason_code == "outbox_retry")
            )
        ).all()
    details = sorted(
        ({k: v for k, v in e.detail.items() if k != "salt"} for e in entries),
        key=lambda d: d["count"],
    )
    assert [(d["count"], d["left"]) for d in details] == [(1, 1), (2, 5)]


async def test_an_inbox_pull_and_another_replicas_expiry_give_up_on_a_message_once(
    postgres_url: str,
) -> None:
    """PostgreSQL, two replicas: a pull whose transaction is open when the other replica's
    relay looks for expired messages, and a pull that comes while that look's transaction is
    open. Either way the message is dead-lettered once: one audit entry, one alert (both did
    it, each with an entry and an alert, when the pull read the rows unlocked)."""
    from gateway.delivery.lease import expire_unserved
    from gateway.delivery.outbox import EXPIRED
    from gateway.flow.signed_push import PUSH_MAX_AGE
    from tests.gateway.delivery.support import JWE, partner

    db = Database(postgres_url)
    try:
        await partner(db, "cs-pull", None)
        now = dt.datetime.now(dt.UTC)
        old = now - PUSH_MAX_AGE - dt.timedelta(minutes=5)

        async def queued() -> str:
            async with db.write() as session:
                return await enqueue(
                    session, recipient_agency_id="cs-pull", kind="minutes", body=JWE, now=old
                )

        first, second, extra = await queued(), await queued(), await queued()
        with capture_logs() as logs:
            async with db.write() as pull:  # replica 1's pull, open ...
                page = await list_inbox(pull, "cs-pull", limit=1, now=now)
                async with db.write() as sweep:  # ... while replica 2's relay looks
                    swept = await expire_unserved(sweep, now=now)
            # the pull read one row past its page (locked too): the look skipped both
            assert [d.id for d in page.dead] == [first] and [d.id for d in swept] == [extra]
            async with db.write() as sweep:  # its next look takes the row read past
                assert [d.id for d in await expire_unserved(sweep, now=now)] == [second]

            third = await queued()
            async with db.write() as sweep:  # replica 2's look, open ...
                swept = await expire_unserved(sweep, now=now)
                pulling = asyncio.create_task(_pull(db, now))  # ... when replica 1 pulls
                await asyncio.sleep(0.3)
                assert not pulling.done()  # it waits for the look to end
            late = await pulling
            assert [d.id for d in swept] == [third] and late.dead == () and late.items == ()
        async with db.read() as session:
            entries = (
                await session.scalars(select(AuditEntry).where(AuditEntry.reason_code == EXPIRED))
            ).all()
        everything = sorted([first, second, extra, third])
        assert sorted(e.record_refs[0] for e in entries) == everything
        alerts = [e["message_id"] for e in logs if e["event"] == "outbox_dead_letter"]
        assert sorted(alerts) == everything
    finally:
        await db.dispose()


async def _pull(db: Database, now: dt.datetime) -> object:
    async with db.write() as session:
        return await list_inbox(session, "cs-pull", limit=10, now=now)


async def test_the_relays_look_for_expired_messages_is_bounded_and_never_stops_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog is worked through a few batches a look, the next look at the next sweep (not
    in one go, while no claim is made); a look that fails (a bug, a bad row) is logged and
    counted, and the sweep goes on."""
    from gateway.delivery import relay as relay_module
    from gateway.delivery.metrics import RelayMetrics
    from gateway.delivery.relay import Relay
    from gateway.flow.signed_push import PUSH_MAX_AGE
    from tests.gateway.delivery.support import JWE, fast_config, partner, rows

    await partner(db, "cs-pull", None)
    now = dt.datetime.now(dt.UTC)
    async with db.write() as session:
        for _ in range(7):
            await enqueue(
                session,
                recipient_agency_id="cs-pull",
                kind="minutes",
                body=JWE,
                now=now - PUSH_MAX_AGE - dt.timedelta(minutes=1),
            )
    monkeypatch.setattr(relay_module, "EXPIRY_BATCH", 2)
    monkeypatch.setattr(relay_module, "EXPIRY_BATCHES", 2)
    relay = Relay(db, fast_config(), metrics=RelayMetrics(), clock=lambda: now)

    async def dead() -> int:
        return sum(row.status == "dead" for row in (await rows(db)).values())

    await relay.sweep()
    assert await dead() == 4  # two batches of two
    await relay.sweep()  # rows were left: looked again at once, though the interval is 60 s
    assert await dead() == 7

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bad row")

    monkeypatch.setattr(relay_module, "anything_unserved", broken)
    failing = Relay(db, fast_config(), metrics=RelayMetrics(), clock=lambda: now)
    with capture_logs() as logs:
        assert await failing.sweep() == 0  # no exception: the sweep goes on
    [alert] = [e for e in logs if e["event"] == "relay_expiry_failed"]
    assert alert["alert"] is True and alert["error"] == "RuntimeError"
    assert failing.metrics is not None
    count = failing.metrics.registry.get_sample_value
    assert count("mappa_gateway_outbox_sweep_failures_total", {"error": "RuntimeError"}) == 1
    await relay.stop()
    await failing.stop()


async def test_a_recipient_whose_rows_cannot_be_judged_does_not_stop_the_look(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Choosing the code of one recipient's expired rows fails (a bug, a row no rule foresaw),
    after it had dead-lettered one of them: its rows end ``expired`` all the same, once each
    (what the failed attempt wrote is rolled back), the failure is alerted, and the other
    recipient's rows are judged as usual. (The look failed whole, at every sweep, and rows
    older than the bad one were never dead-lettered.)"""
    from gateway.delivery import redecide
    from gateway.delivery.dead_letters import dead_letter
    from gateway.delivery.lease import expire_unserved
    from gateway.delivery.outbox import EXPIRED
    from gateway.flow.signed_push import PUSH_MAX_AGE
    from tests.gateway.delivery.support import JWE, partner, rows

    await partner(db, "cs-pull", None)
    await partner(db, "housing-pull", None, agency_type="housing")
    now = dt.datetime.now(dt.UTC)
    old = now - PUSH_MAX_AGE - dt.timedelta(minutes=1)
    async with db.write() as session:
        for recipient in ("cs-pull", "cs-pull", "housing-pull"):
            await enqueue(session, recipient_agency_id=recipient, kind="minutes", body=JWE, now=old)
    judge = redecide.judge

    async def broken(session: AsyncSession, agency_id: str, queued: Any, **kwargs: Any) -> Any:
        if agency_id != "cs-pull":
            return await judge(session, agency_id, queued, **kwargs)
        dead_letter(session, queued[0], redecide.NOT_KNOWN, now=now, delivery="sweep")
        raise KeyError("a kind no rule foresaw")

    monkeypatch.setattr(redecide, "judge", broken)
    with capture_logs() as logs:
        async with db.write() as session:
            swept = await expire_unserved(session, now=now)
    assert len(swept) == 3 and {d.code for d in swept} == {EXPIRED}
    assert {row.status for row in (await rows(db)).values()} == {"dead"}
    [alert] = [e for e in logs if e["event"] == "outbox_expiry_judge_failed"]
    assert alert["alert"] is True and alert["error"] == "KeyError"
    assert (alert["recipient"], alert["rows"]) == ("cs-pull", 2)
    async with db.read() as session:
        entries = (
            await session.scalars(select(AuditEntry).where(AuditEntry.operation == "disclosure"))
        ).all()
    assert sorted(e.reason_code or "" for e in entries) == [EXPIRED] * 3  # one each


async def test_an_inbox_pull_and_an_erasure_lock_queued_messages_in_one_order(
    postgres_url: str,
) -> None:
    """PostgreSQL: the erasure removes the messages about its nominal having locked them in the
    order an inbox pull locks its page (created_at, id), not in the table's order, which an
    update of an older row changes: a pull holding the oldest and waiting for another, and the
    erasure, no longer deadlock (one of them failed with 503): both finish."""
    from sqlalchemy import text

    from gateway.cases.erasure import remove_queued
    from tests.gateway.delivery.support import JWE, partner

    db = Database(postgres_url)
    try:
        await partner(db, "cs-pull", None)
        now = dt.datetime.now(dt.UTC)

        async def queued(nominal: str, minutes: int) -> str:
            async with db.write() as session:
                mid = await enqueue(
                    session,
                    recipient_agency_id="cs-pull",
                    kind="record",
                    body=JWE,
                    now=now - dt.timedelta(minutes=minutes),
                )
                row = await session.get(OutboxMessage, mid)
                assert row is not None
                row.nominal_ref = nominal
                return mid

        # written in this order, so that the table's order is newest first for nominal N
        newest = await queued("N", 1)
        oldest = await queued("N", 30)
        other = await queued("M", 20)
        async with db.write() as holder:  # a settle of the middle row, in progress
            await holder.execute(
                select(OutboxMessage.id).where(OutboxMessage.id == other).with_for_update()
            )
            pulling = asyncio.create_task(_pull(db, now))  # holds the oldest, waits for it
            await asyncio.sleep(0.3)

            async def erase() -> list[dict[str, str]]:
                async with db.write() as session:
                    await session.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
                    return await remove_queued(session, "N", [])

            erasing = asyncio.create_task(erase())  # waits for the oldest, holding nothing
            await asyncio.sleep(0.3)
        page, removed = await asyncio.gather(pulling, erasing)  # neither fails
        assert sorted(r["id"] for r in removed) == sorted([newest, oldest])
        # (the pull met the three first; about nominals that do not exist, it refused them)
        assert sorted(d.id for d in page.dead) == sorted([newest, oldest, other])  # type: ignore[attr-defined]
        async with db.read() as session:
            left = (await session.scalars(select(OutboxMessage.id))).all()
        assert sorted(left) == [other]
    finally:
        await db.dispose()
