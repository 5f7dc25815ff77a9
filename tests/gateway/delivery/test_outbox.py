"""The outbox interface: rows join the caller's transaction and nothing else."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from gateway.delivery import enqueue
from gateway.domain import AgencyType, Role
from gateway.store import Database
from gateway.store.models import Agency, OutboxMessage

JWE = "eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9.a2V5.aXY.Y2lwaGVy.dGFn"
NOW = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)


async def _agency(db: Database, agency_id: str = "cs-a") -> None:
    async with db.write() as session:
        session.add(
            Agency(
                id=agency_id,
                name="Children's Services",
                agency_type=AgencyType.CHILDRENS_SERVICES,
                role=Role.DUTY_TO_COOPERATE,
                area="area-1",
                scopes=[],
            )
        )


async def test_enqueue_commits_with_the_callers_transaction(db: Database) -> None:
    """A committed transaction leaves one pending row with the given id, kind and time."""
    await _agency(db)
    mid = str(uuid.uuid4())
    async with db.write() as session:
        got = await enqueue(
            session,
            recipient_agency_id="cs-a",
            kind="hazard_flag",
            body=JWE,
            nominal_ref="n-1",
            message_id=mid,
            now=NOW,
        )
    assert got == mid
    async with db.read() as session:
        row = (await session.execute(select(OutboxMessage))).scalar_one()
    assert (row.status, row.attempts, row.kind, row.body) == ("pending", 0, "hazard_flag", JWE)
    assert row.next_attempt_at == NOW and row.created_at == NOW


async def test_enqueue_rolls_back_with_the_callers_transaction(db: Database) -> None:
    """If the act (or its audit entry) fails, no message is left to deliver."""
    await _agency(db)
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            await enqueue(session, recipient_agency_id="cs-a", kind="minutes", body=JWE)
            raise RuntimeError("audit write failed")
    async with db.read() as session:
        assert (await session.execute(select(OutboxMessage))).first() is None


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("hazard_flag", '{"child": "plain json"}'),  # case data in clear is never queued
        ("hazard_flag", "a.b.c"),  # a JWS or anything but a five-part compact JWE
        ("Hazard Flag", JWE),  # kinds are codes
    ],
)
async def test_enqueue_refuses_what_is_not_a_sealed_message(
    db: Database, kind: str, body: str
) -> None:
    """Only a compact JWE with a code for a kind is accepted."""
    async with db.write() as session:
        with pytest.raises(ValueError):
            await enqueue(session, recipient_agency_id="cs-a", kind=kind, body=body)


def test_every_kind_the_case_api_sends_is_a_listed_kind() -> None:
    """Partners route on the kind: KINDS names every kind a case module enqueues."""
    from gateway.cases import contributors, erasure, level_changes, markers, notifications
    from gateway.delivery.outbox import KINDS

    sent = {
        contributors.NOTICE_KIND,
        erasure.KIND,
        level_changes.KIND,
        markers.KIND,
        markers.REVOCATION_KIND,
        notifications.KIND,
        "hazard_flag",
        "minutes",
        "onward_disclosure",
        "record",
    }
    assert sent <= KINDS
