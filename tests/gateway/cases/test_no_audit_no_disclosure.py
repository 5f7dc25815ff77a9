"""No audit, no disclosure: if the audit entry cannot be written, the caller gets 503
audit_unavailable and nothing (no nominal, no stored record, no outbox row)."""

from __future__ import annotations

from gateway.store.models import InformationRecord, OutboxMessage
from tests.gateway.cases.scenario import FAMILY_NAME, POLICE, PROBATION, at_level_2, record
from tests.gateway.cases.support import World, audit_entries_fail


async def test_read_is_not_released_without_its_audit_entry(world: World) -> None:
    nominal_id = await at_level_2(world)
    await world[POLICE].client.token()  # a token first: the token endpoint audits too

    with audit_entries_fail(world):
        response = await world[POLICE].raw("GET", f"/v1/nominals/{nominal_id}")
    assert response.status_code == 503
    assert response.json()["code"] == "audit_unavailable"
    assert FAMILY_NAME not in response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_write_stores_and_sends_nothing_without_its_audit_entry(world: World) -> None:
    nominal_id = await at_level_2(world)
    queued = await world.count(OutboxMessage)  # the level change told the RA agencies
    sealed = await world[PROBATION].client.seal(record())
    await world[PROBATION].client.token()

    with audit_entries_fail(world):
        response = await world[PROBATION].raw(
            "POST", f"/v1/nominals/{nominal_id}/records", content=sealed
        )
    assert response.status_code == 503
    assert response.json()["code"] == "audit_unavailable"
    assert await world.count(InformationRecord) == 0
    assert await world.count(OutboxMessage) == queued
