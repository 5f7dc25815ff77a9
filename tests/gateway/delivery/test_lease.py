"""Leasing on both backends: which due rows a relay may take, and in what order."""

from __future__ import annotations

import datetime as dt

from gateway.delivery import enqueue
from gateway.delivery.lease import claim, settle
from gateway.store import Database
from tests.gateway.delivery.support import JWE, known_nominal, partner

T0 = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(hours=1)
URL = "http://127.0.0.1:9/mappa/deliveries"  # never pushed to here


async def _write(db: Database, to: str, nominal: str | None, minute: int) -> str:
    async with db.write() as session:
        return await enqueue(
            session,
            recipient_agency_id=to,
            kind="level_change",
            body=JWE,
            nominal_ref=nominal,
            now=T0 + dt.timedelta(minutes=minute),
        )


async def _claim(db: Database, now: dt.datetime, owner: str = "relay-1") -> set[str]:
    async with db.write() as session:
        taken = await claim(session, owner=owner, now=now, lease=LEASE, slots=lambda _: 10)
    return {row.id for row in taken.rows}


async def _fail(db: Database, mid: str, now: dt.datetime, *, retry_at: dt.datetime | None) -> None:
    async with db.write() as session:
        assert await settle(
            session,
            mid,
            owner="relay-1",
            now=now,
            delivered=False,
            code="http_5xx",
            next_attempt_at=retry_at,
            dead=retry_at is None,
        )


async def test_one_message_at_a_time_per_recipient_and_nominal_oldest_first(db: Database) -> None:
    """A later message about a nominal waits while an earlier one to the same recipient is
    leased or waiting for its retry; other nominals, other recipients and messages with no
    nominal go at once. (The relay pushed all of them concurrently, so a partner received a
    retried older state after a newer one.)"""
    await partner(db, "police-a", URL)
    await partner(db, "cs-a", URL)
    first = await _write(db, "police-a", "n-1", 0)
    second = await _write(db, "police-a", "n-1", 1)
    third = await _write(db, "police-a", "n-1", 2)
    other_nominal = await _write(db, "police-a", "n-2", 3)
    other_recipient = await _write(db, "cs-a", "n-1", 4)
    # police-a leads both nominals, cs-a attended n-1's meeting: each may know of them
    await known_nominal(db, "n-1", "police-a", "cs-a", held_on=T0.date())
    await known_nominal(db, "n-2", "police-a")
    loose = [await _write(db, "police-a", None, 5), await _write(db, "police-a", None, 6)]
    now = T0 + dt.timedelta(minutes=10)

    assert await _claim(db, now) == {first, other_nominal, other_recipient, *loose}
    assert await _claim(db, now, "relay-2") == set()  # the first is leased: the rest wait

    later = now + dt.timedelta(minutes=5)
    await _fail(db, first, now, retry_at=later)  # waiting for its retry: still first in line
    assert await _claim(db, now + dt.timedelta(minutes=1), "relay-2") == set()
    assert await _claim(db, later) == {first}  # the retry, still before the second

    await _fail(db, first, later, retry_at=None)  # dead: no longer holds the others back
    assert await _claim(db, later) == {second}
    async with db.write() as session:
        assert await settle(session, second, owner="relay-1", now=later, delivered=True)
    assert await _claim(db, later) == {third}


async def test_messages_written_at_the_same_instant_go_one_at_a_time(db: Database) -> None:
    """Ties on created_at are broken by id: still exactly one of them in flight."""
    await partner(db, "police-a", URL)
    await known_nominal(db, "n-1", "police-a")
    ids = {await _write(db, "police-a", "n-1", 0) for _ in range(3)}
    taken = await _claim(db, T0 + dt.timedelta(minutes=1))
    assert taken == {min(ids)}


async def test_a_claim_leases_at_most_its_limit_across_partners(db: Database) -> None:
    """The limit is spent as rows are leased: three partners with room for ten each, and a
    limit of three, get three rows in all (each partner used to be given the whole limit); the
    next claim begins with the partners the limit did not reach."""
    for agency_id in ("cs-a", "cs-b", "cs-c"):
        await partner(db, agency_id, URL)
        for minute in range(2):
            await _write(db, agency_id, None, minute)
    now = T0 + dt.timedelta(minutes=5)
    async with db.write() as session:
        taken = await claim(
            session, owner="relay-1", now=now, lease=LEASE, slots=lambda _: 10, limit=3
        )
    assert [row.endpoint.agency_id for row in taken.rows] == ["cs-a", "cs-a", "cs-b"]
    # The next claim begins after the partner served last, so cs-c is not left behind.
    async with db.write() as session:
        taken = await claim(
            session,
            owner="relay-1",
            now=now,
            lease=LEASE,
            slots=lambda _: 10,
            limit=2,
            after="cs-b",
        )
    assert [row.endpoint.agency_id for row in taken.rows] == ["cs-c", "cs-c"]
