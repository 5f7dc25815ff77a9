"""Data owners are told: another agency consulting or receiving a record notifies its owner.

Each notification is an ``owner_notification`` outbox message sealed to the owner, enqueued in
the consultation's own transaction: who (agency, officer), when, basis and purpose, the record
ids, and no content. The owner reading its own record, and a refused read, notify nobody; an
owner without a usable key is not sent anything in clear: the notification is held, on record.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import httpx
import pytest
from joserfc import jwe
from joserfc.errors import JoseError
from sqlalchemy import select, update

from adapters.identity import AgencyIdentity
from gateway import agencies
from gateway.cases.held_notifications import HeldReleaser, release_held, release_with_settings
from gateway.store.models import AgencyKey, HeldNotification
from tests.gateway.cases.scenario import (
    CS,
    HOUSING,
    MAPPA,
    POLICE,
    PROBATION,
    SECRETS,
    WILTS_POLICE,
    at_level_2,
    level_2_meeting,
    minutes,
    record,
)
from tests.gateway.cases.support import MAPPA_BASIS, READ_WRITE, Agent, World, audit_entries_fail

PRISON = "barnet-prison"
KIND = "owner_notification"


async def _notifications(world: World, owner: str) -> list[dict[str, Any]]:
    return await world.pushed(owner, KIND)


def _no_content(notification: dict[str, Any]) -> None:
    text = json.dumps(notification)
    for needle in SECRETS:
        assert needle not in text, needle


async def _prison(world: World) -> Agent:
    """A Responsible Authority agency of the area that pulls its inbox."""
    return await world.register(
        PRISON,
        "prison",
        "responsible_authority",
        scopes=[*READ_WRITE, "inbox:read"],
        officer="PRISON-OM-7",
    )


async def _record_by(world: World, owner: str, nominal_id: str, **changes: Any) -> str:
    answer = await world[owner].post(f"/v1/nominals/{nominal_id}/records", record(**changes))
    record_id = answer["id"]
    assert isinstance(record_id, str)
    return record_id


async def test_reading_another_agencys_record_notifies_its_owner_once_without_content(
    world: World,
) -> None:
    """Police read probation's record: probation gets exactly one notification, references only."""
    nominal_id = await at_level_2(world)
    record_id = await _record_by(world, PROBATION, nominal_id)
    assert await _notifications(world, PROBATION) == []

    await world[POLICE].get(f"/v1/nominals/{nominal_id}/records/{record_id}")

    [notification] = await _notifications(world, PROBATION)
    assert notification == {
        "notification": "record_consulted",
        "nominal_id": nominal_id,
        "record_ids": [record_id],
        "by": {"agency_id": POLICE, "officer": "OFF-1"},
        "recipient_agency_id": POLICE,
        "at": world.clock.now.isoformat().replace("+00:00", "Z"),
        "legal_basis": MAPPA_BASIS[0],
        "purpose": MAPPA_BASIS[1],
        "request_id": notification["request_id"],
    }
    _no_content(notification)
    # The consultation's audit entry names the notification it queued, in the same commit.
    [row] = [r for r in await world.outbox(PROBATION) if r.kind == KIND]
    [entry] = [
        e
        for e in await world.audit(operation="disclosure", agency_id=POLICE)
        if e.record_refs == [record_id]
    ]
    assert entry.detail["owner_notifications"] == [
        {
            "owner": PROBATION,
            "status": "queued",
            "message_id": row.id,
            "payload_digest": entry.detail["owner_notifications"][0]["payload_digest"],
        }
    ]
    assert entry.request_id == notification["request_id"]
    assert row.nominal_ref == nominal_id
    # the id the notice signs (what a receiver dedupes on) is the one it is queued under
    signed, _ = await world[PROBATION].client.open(row.body)
    assert signed.jti == row.id


async def test_owner_reading_its_own_record_notifies_nobody(world: World) -> None:
    """Probation reading (one or a page of) its own records creates no notification."""
    nominal_id = await at_level_2(world)
    record_id = await _record_by(world, PROBATION, nominal_id)
    await world[PROBATION].get(f"/v1/nominals/{nominal_id}/records/{record_id}")
    await world[PROBATION].get(f"/v1/nominals/{nominal_id}/records")
    assert [r for r in await world.outbox() if r.kind == KIND] == []


async def test_refused_read_notifies_nobody(world: World) -> None:
    """Another area's police and an uninvolved housing agency get 404; the owner hears nothing."""
    nominal_id = await at_level_2(world)
    record_id = await _record_by(world, PROBATION, nominal_id)
    for outsider in (WILTS_POLICE, HOUSING):
        refused = await world[outsider].refused(
            "GET", f"/v1/nominals/{nominal_id}/records/{record_id}"
        )
        assert refused.status == 404
        refused = await world[outsider].refused("GET", f"/v1/nominals/{nominal_id}/records")
        assert refused.status == 404
    assert await _notifications(world, PROBATION) == []


async def test_a_page_of_records_notifies_each_owner_once_naming_its_records(world: World) -> None:
    """Police list the records: probation (two records) and prison (one) each get one
    notification naming exactly their own records; police's own record notifies nobody."""
    await _prison(world)
    nominal_id = await at_level_2(world)
    first = await _record_by(world, PROBATION, nominal_id)
    second = await _record_by(world, PROBATION, nominal_id, kind="risk_assessment")
    prisons = await _record_by(world, PRISON, nominal_id)
    await _record_by(world, POLICE, nominal_id)

    page = await world[POLICE].get(f"/v1/nominals/{nominal_id}/records")
    assert len(page["records"]) == 4

    [to_probation] = await _notifications(world, PROBATION)
    assert sorted(to_probation["record_ids"]) == sorted([first, second])
    [to_prison] = await _notifications(world, PRISON)
    assert to_prison["record_ids"] == [prisons]
    assert await _notifications(world, POLICE) == []
    for notification in (to_probation, to_prison):
        _no_content(notification)
    [entry] = [
        e
        for e in await world.audit(operation="disclosure", agency_id=POLICE)
        if "owner_notifications" in e.detail
    ]
    assert {n["owner"] for n in entry.detail["owner_notifications"]} == {PROBATION, PRISON}


async def test_owner_notification_arrives_through_the_inbox(world: World) -> None:
    """The owner pulls GET /v1/inbox, opens the notification with its key, and acknowledges."""
    prison = await _prison(world)
    nominal_id = await at_level_2(world)
    record_id = await _record_by(world, PRISON, nominal_id)
    await world[POLICE].get(f"/v1/nominals/{nominal_id}/records/{record_id}")

    pulled = await prison.client.call("GET", "/v1/inbox", prison.context)
    assert isinstance(pulled, httpx.Response)
    messages = pulled.json()["messages"]
    notices = [m for m in messages if m["kind"] == KIND]
    assert len(notices) == 1
    signed, _ = await prison.client.open(notices[0]["body"])  # the gateway's signature checked
    assert signed.body["record_ids"] == [record_id]
    assert signed.body["by"] == {"agency_id": POLICE, "officer": "OFF-1"}
    _no_content(signed.body)
    acked = await prison.client.call("POST", f"/v1/inbox/{notices[0]['id']}/ack", prison.context)
    assert isinstance(acked, httpx.Response)
    assert acked.json() == {"id": notices[0]["id"], "status": "delivered"}
    assert [r.status for r in await world.outbox(PRISON) if r.kind == KIND] == ["delivered"]


async def test_owner_without_usable_key_is_held_not_sent_and_the_read_goes_ahead(
    world: World,
) -> None:
    """Prison's encryption key has expired: police still read its record, nothing is enqueued
    for prison (never in clear), and the audit holds the notification as held, findable."""
    await _prison(world)
    nominal_id = await at_level_2(world)
    record_id = await _record_by(world, PRISON, nominal_id)
    async with world.state.db.write() as session:
        await session.execute(
            update(AgencyKey)
            .where(AgencyKey.agency_id == PRISON, AgencyKey.use == "enc")
            .values(not_after=world.clock.now - dt.timedelta(seconds=1))
        )

    answer = await world[POLICE].get(f"/v1/nominals/{nominal_id}/records/{record_id}")
    assert answer["id"] == record_id
    assert await _notifications(world, PRISON) == []
    [entry] = [
        e
        for e in await world.audit(operation="disclosure", agency_id=POLICE)
        if e.record_refs == [record_id] and e.outcome == "allowed"
    ]
    assert entry.detail["owner_notifications"] == [
        {"owner": PRISON, "status": "held", "reason": "recipient_key_unavailable"}
    ]
    [held] = await world.audit(reason_code="owner_notification_held")
    assert held.outcome == "failed"
    assert held.recipients == [PRISON]
    assert held.record_refs == [record_id]
    assert held.request_id == entry.request_id
    assert held.agency_id == POLICE


async def test_onward_disclosure_approved_by_the_coordinator_notifies_the_minutes_author(
    world: World,
) -> None:
    """Police chaired and wrote the minutes; the MAPPA unit approves their onward disclosure to
    children's services: police are told who received what, once; the chair deciding itself
    would notify nobody."""
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    written = await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    cp = "barnet-cp-conference"
    asked = await world[CS].post(
        "/v1/disclosures",
        {
            "meeting_id": meeting_id,
            "recipient_agency_id": cp,
            "purpose": "child-protection",
            "parts": ["conclusions"],
            "recipient_description": "Initial child protection conference",
            "reasons": "s.47 enquiry on the household",
        },
    )
    await world[MAPPA].post(
        f"/v1/disclosures/{asked['id']}/decision",
        {"decision": "approve", "approved_parts": ["conclusions"], "reason": "s.47"},
    )
    [notification] = await _notifications(world, POLICE)
    assert notification["notification"] == "record_disclosed_onward"
    assert notification["record_ids"] == [written["id"]]
    assert notification["by"]["agency_id"] == MAPPA
    assert notification["recipient_agency_id"] == cp
    assert notification["purpose"] == "child-protection"
    _no_content(notification)


async def test_outbox_holds_each_notification_sealed(world: World) -> None:
    """What the outbox holds for the owner is a compact JWE: no record id or officer in clear."""
    nominal_id = await at_level_2(world)
    record_id = await _record_by(world, PROBATION, nominal_id)
    await world[POLICE].get(f"/v1/nominals/{nominal_id}/records/{record_id}")
    [row] = [r for r in await world.outbox(PROBATION) if r.kind == KIND]
    assert row.body.count(".") == 4
    assert record_id not in row.body and "OFF-1" not in row.body


async def test_no_notification_without_the_reads_audit_entry(world: World) -> None:
    """If the read's audit entry cannot be written, the read is 503 and no notification is
    queued: the notification commits with the consultation's entry or not at all."""
    nominal_id = await at_level_2(world)
    record_id = await _record_by(world, PROBATION, nominal_id)
    await world[POLICE].client.token()

    with audit_entries_fail(world):
        response = await world[POLICE].raw("GET", f"/v1/nominals/{nominal_id}/records/{record_id}")
    assert response.status_code == 503
    assert response.json()["code"] == "audit_unavailable"
    assert await _notifications(world, PROBATION) == []


# -- held notifications go out once the owner has a key ---------------------------------------


async def _held_for_prison(world: World) -> tuple[str, str]:
    """Prison owns a record and its encryption key has expired; police read the record: the
    notification is held. Returns (nominal id, record id)."""
    await _prison(world)
    nominal_id = await at_level_2(world)
    record_id = await _record_by(world, PRISON, nominal_id)
    async with world.state.db.write() as session:
        await session.execute(
            update(AgencyKey)
            .where(AgencyKey.agency_id == PRISON, AgencyKey.use == "enc")
            .values(not_after=world.clock.now - dt.timedelta(seconds=1))
        )
    await world[POLICE].get(f"/v1/nominals/{nominal_id}/records/{record_id}")
    return nominal_id, record_id


async def _release(world: World, **options: Any) -> int:
    state = world.state
    assert state.sealer is not None and state.case_sealer is not None
    return await release_held(
        state.db,
        sealer=state.sealer,
        case_sealer=state.case_sealer,
        now=world.clock.now,
        **options,
    )


async def _rotate_prison(world: World) -> AgencyIdentity:
    """Prison registers a new key pair (``agencies rotate-keys``)."""
    renewed = AgencyIdentity.generate(PRISON)
    await agencies.rotate_agency_keys(
        world.state.db, PRISON, renewed.public_jwks(), dt.timedelta(0), now=world.clock.now
    )
    return renewed


async def test_held_notification_is_kept_sealed_and_sent_nowhere(world: World) -> None:
    """Held: one row, its body sealed (no record id or officer in it), nothing in the outbox;
    looking again while the owner still has no key sends nothing."""
    _, record_id = await _held_for_prison(world)
    async with world.state.db.read() as session:
        [row] = (await session.scalars(select(HeldNotification))).all()
    assert row.owner_agency_id == PRISON and row.released_at is None
    assert row.reason == "recipient_key_unavailable"
    assert record_id.encode() not in row.body_sealed and b"OFF-1" not in row.body_sealed
    [held_entry] = await world.audit(reason_code="owner_notification_held")
    assert held_entry.detail["message_id"] == row.id
    assert await _release(world) == 0
    assert await _notifications(world, PRISON) == []


async def test_held_notification_goes_out_sealed_to_the_new_key_exactly_once(world: World) -> None:
    """Prison rotates in a new key: the held notification is sealed to it (the expired key
    cannot open it), enqueued under the held id, audited as released with the consultation's
    request id; a second release, or a third, sends nothing more."""
    nominal_id, record_id = await _held_for_prison(world)
    renewed = await _rotate_prison(world)
    assert await _release(world, agency_id=PRISON) == 1
    assert await _release(world) == 0
    assert await _release(world, agency_id=PRISON) == 0

    [row] = [r for r in await world.outbox(PRISON) if r.kind == KIND]
    async with world.state.db.read() as session:
        [held] = (await session.scalars(select(HeldNotification))).all()
    assert row.id == held.id and held.released_at == world.clock.now
    assert row.nominal_ref == nominal_id
    with pytest.raises(JoseError):
        jwe.decrypt_compact(row.body, world[PRISON].identity.encryption_key)
    world[PRISON].identity = renewed
    [notification] = await _notifications(world, PRISON)
    assert notification["record_ids"] == [record_id]
    assert notification["by"] == {"agency_id": POLICE, "officer": "OFF-1"}
    assert notification["notification"] == "record_consulted"
    _no_content(notification)
    [consulted] = [
        e
        for e in await world.audit(operation="disclosure", agency_id=POLICE)
        if e.record_refs == [record_id] and e.outcome == "allowed" and e.reason_code is None
    ]
    [released] = await world.audit(reason_code="owner_notification_released")
    assert released.outcome == "allowed"
    assert released.recipients == [PRISON]
    assert released.record_refs == [record_id]
    assert released.request_id == consulted.request_id == notification["request_id"]
    assert released.detail["message_id"] == row.id
    assert released.payload_digest


async def test_the_agencies_command_path_sends_what_was_held(world: World) -> None:
    """What ``agencies rotate-keys`` runs after registering the key, with the gateway's keys
    opened from the settings, sends the held notification."""
    await _held_for_prison(world)
    await _rotate_prison(world)
    sent = await release_with_settings(world.state.settings, world.state.db, PRISON)
    assert sent == 1
    assert len([r for r in await world.outbox(PRISON) if r.kind == KIND]) == 1


async def test_a_running_gateway_sends_held_notifications_on_its_own(world: World) -> None:
    """The periodic releaser of ``serve`` picks up the newly registered key by itself."""
    await _held_for_prison(world)
    state = world.state
    assert state.sealer is not None and state.case_sealer is not None
    releaser = HeldReleaser(state.db, state.sealer, state.case_sealer, clock=world.clock)
    assert await releaser.once() == 0
    await _rotate_prison(world)
    assert await releaser.once() == 1
    assert await releaser.once() == 0


async def test_racing_releases_send_each_held_notification_once(any_world: World) -> None:
    """Two gateways release at the same moment: one outbox message, one audit entry (SQLite
    and PostgreSQL)."""
    world = any_world
    await _held_for_prison(world)
    await _rotate_prison(world)
    counts = await asyncio.gather(_release(world), _release(world), _release(world))
    assert sum(counts) == 1
    assert len([r for r in await world.outbox(PRISON) if r.kind == KIND]) == 1
    assert len(await world.audit(reason_code="owner_notification_released")) == 1


# -- an owner need-to-know no longer lets know of its record is not told -----------------------


async def test_owner_that_may_no_longer_see_its_record_is_not_told_of_reads(
    any_world: World,
) -> None:
    """Housing supplied a record while it attended the meeting; once the nominal is category 4
    (police and probation of the area only) housing may not see the nominal or its own record,
    so police reading the record, or a page of records, sends housing nothing: the read's audit
    entry says ``not_sent`` with the rule; nothing is held either."""
    world = any_world
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    record_id = await _record_by(world, HOUSING, nominal_id, kind="tenancy")
    await world[POLICE].get(f"/v1/nominals/{nominal_id}/records/{record_id}")
    assert len(await _notifications(world, HOUSING)) == 1  # told while it may see its record

    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/category", {"category": 4, "reason": "terrorism risk"}
    )
    own = await world[HOUSING].refused("GET", f"/v1/nominals/{nominal_id}/records/{record_id}")
    assert own.status == 404
    await world[POLICE].get(f"/v1/nominals/{nominal_id}/records/{record_id}")
    page = await world[POLICE].get(f"/v1/nominals/{nominal_id}/records")
    assert record_id in [r["id"] for r in page["records"]]

    assert len(await _notifications(world, HOUSING)) == 1
    reads = [
        e
        for e in await world.audit(operation="disclosure", agency_id=POLICE, outcome="allowed")
        if "owner_notifications" in e.detail
    ]
    assert [e.detail["owner_notifications"] for e in reads[1:]] == [
        [{"owner": HOUSING, "status": "not_sent", "rule": "category-4-named-agencies"}]
    ] * 2
    assert await world.count(HeldNotification) == 0
    assert not await world.audit(reason_code="owner_notification_held")


async def test_held_notification_is_not_sent_once_the_owner_may_no_longer_see_its_record(
    any_world: World,
) -> None:
    """Prison's notification was held (no usable key); the nominal then became category 4,
    which prison may not see: when prison registers a key the notification is settled unsent,
    audited (refused, ``owner_notification_not_sent``) with the rule, and nothing is queued."""
    world = any_world
    nominal_id, record_id = await _held_for_prison(world)
    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/category", {"category": 4, "reason": "terrorism risk"}
    )
    await _rotate_prison(world)
    assert await _release(world, agency_id=PRISON) == 0
    assert await _release(world) == 0
    assert [r for r in await world.outbox(PRISON) if r.kind == KIND] == []
    [refused] = await world.audit(reason_code="owner_notification_not_sent")
    assert refused.outcome == "refused"
    assert refused.rule == "category-4-named-agencies"
    assert refused.recipients == [PRISON]
    assert refused.record_refs == [record_id]
    assert refused.detail["delivery"] == "none"
    async with world.state.db.read() as session:
        [held] = (await session.scalars(select(HeldNotification))).all()
    assert held.released_at is not None  # settled: it will not be sent later either
    assert not await world.audit(reason_code="owner_notification_released")
