"""Level changes reach the agencies involved, as a bare ``level_change``, and their adapters.

The lead agency, the Responsible Authority agencies of the area and the meeting participants
(each passing need-to-know at the old or the new level) get ``{"nominal_id", "old_level",
"level", "changed_on"}`` sealed to them, in the change's transaction; the agency that made the
change does not; nothing else (reason, meeting, officer, category) goes with it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import update

from adapters.police import PoliceAdapter
from adapters.probation import ProbationAdapter
from adapters.sdk import Delivery
from adapters.standin import JsonStore
from gateway import errors
from gateway.cases.level_changes import LevelAnnouncement
from gateway.store.models import AgencyKey
from tests.gateway.cases.scenario import (
    CP_CONFERENCE,
    CS,
    HOUSING,
    JCP,
    MAPPA,
    MENTAL_HEALTH,
    POLICE,
    PROBATION,
    SECRETS,
    VICTIM_SUPPORT,
    WILTS_POLICE,
    at_level_2,
    level_2_meeting,
    referred,
)
from tests.gateway.cases.support import World

KIND = "level_change"
CHANGE_REASON = "Escalated after breach of exclusion zone near Woodhaven Primary"


def _recipients(rows: list[Any]) -> set[str]:
    return {row.recipient_agency_id for row in rows if row.kind == KIND}


async def _level_changes(world: World, recipient: str) -> list[dict[str, Any]]:
    return await world.pushed(recipient, KIND)


async def test_screening_to_level_2_tells_the_other_responsible_authority_agencies(
    world: World,
) -> None:
    """Police (lead, and the screener) set level 2: probation and the MAPPA unit of Barnet are
    told; police, Wiltshire police and the duty-to-co-operate agencies are not."""
    nominal_id = await at_level_2(world)
    assert _recipients(await world.outbox()) == {PROBATION, MAPPA}
    [message] = await _level_changes(world, PROBATION)
    assert message == {
        "nominal_id": nominal_id,
        "old_level": 1,
        "level": 2,
        "changed_on": world.clock.now.date().isoformat(),
    }


async def test_level_change_reaches_lead_authorities_and_participants_with_no_details(
    world: World,
) -> None:
    """Probation moves a level 2 case to level 3: police (lead), the MAPPA unit and every
    participant of the meeting are told, once each, with the bare change and nothing more."""
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    before = {row.id for row in await world.outbox()}

    answer = await world[PROBATION].post(
        f"/v1/nominals/{nominal_id}/level", {"level": "M3", "reason": CHANGE_REASON}
    )
    assert answer["level"] == 3

    sent = [row for row in await world.outbox() if row.id not in before]
    # Lead and RA of the area; the meeting's attendees, minutes-only and invited agencies.
    expected = {POLICE, MAPPA, CS, HOUSING, JCP, MENTAL_HEALTH}
    assert _recipients(sent) == expected
    assert len(sent) == len(expected)
    assert not {PROBATION, WILTS_POLICE, VICTIM_SUPPORT, CP_CONFERENCE} & _recipients(sent)
    for recipient in expected:
        [body] = [
            world[recipient].open(row.body) for row in sent if row.recipient_agency_id == recipient
        ]
        assert body == {
            "nominal_id": nominal_id,
            "old_level": 2,
            "level": 3,
            "changed_on": world.clock.now.date().isoformat(),
        }
        text = json.dumps(body)
        for needle in (*SECRETS, CHANGE_REASON, "OFF-1"):
            assert needle not in text
    # One disclosure entry per message, with its digest; the change's entry names them all.
    disclosures = [
        e
        for e in await world.audit(operation="disclosure", agency_id=PROBATION)
        if e.detail.get("resource") == KIND
    ]
    assert sorted(e.recipients[0] for e in disclosures) == sorted(expected)
    assert all(e.payload_digest and e.nominal_ref == nominal_id for e in disclosures)
    [change] = [
        e
        for e in await world.audit(operation="alteration", agency_id=PROBATION)
        if e.detail.get("change") == "level"
    ]
    assert sorted(change.detail["level_change_sent_to"]) == sorted(expected)


async def test_same_level_sends_nothing(world: World) -> None:
    """A 'change' to the level the nominal already has tells nobody anything."""
    nominal_id = await at_level_2(world)
    before = len(await world.outbox())
    await world[PROBATION].post(f"/v1/nominals/{nominal_id}/level", {"level": 2, "reason": "x"})
    assert len(await world.outbox()) == before


async def test_category_4_level_change_reaches_police_and_probation_only(world: World) -> None:
    """Terrorism cases: the MAPPA unit is not told, as it may not know of the nominal."""
    nominal_id = await referred(world, category="M4")
    await world[POLICE].post(f"/v1/nominals/{nominal_id}/level", {"level": 2, "reason": "x"})
    assert _recipients(await world.outbox()) == {PROBATION}


async def test_involved_agency_without_a_usable_key_is_held_and_the_change_goes_ahead(
    world: World,
) -> None:
    """The MAPPA unit's key has lapsed: nothing is sent to it (never in clear), the level still
    changes, and the change's audit entry names it as held."""
    nominal_id = await referred(world)
    async with world.state.db.write() as session:
        await session.execute(
            update(AgencyKey)
            .where(AgencyKey.agency_id == MAPPA, AgencyKey.use == "enc")
            .values(not_after=world.clock.now - dt.timedelta(seconds=1))
        )
    answer = await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/level", {"level": 2, "reason": "x"}
    )
    assert answer["level"] == 2
    assert _recipients(await world.outbox()) == {PROBATION}
    [change] = [
        e
        for e in await world.audit(operation="alteration", agency_id=POLICE)
        if e.detail.get("change") == "level"
    ]
    assert change.detail["level_change_held"] == [MAPPA]
    assert change.detail["level_change_sent_to"] == [PROBATION]


async def test_police_and_probation_adapters_apply_the_level_change(
    world: World, tmp_path: Any
) -> None:
    """The sealed bodies, opened by each agency, land in their stand-in systems: the police
    nominal's level, and the nDelius registration's level code (its category kept)."""
    nominal_id = await at_level_2(world)
    await world[PROBATION].post(f"/v1/nominals/{nominal_id}/level", {"level": 3, "reason": "x"})
    [to_police] = await _level_changes(world, POLICE)
    police = PoliceAdapter(JsonStore(tmp_path / "police.json"))
    police.receive(Delivery("7d0f5c1e-0000-4000-8000-00000000000a", KIND, to_police, "gw"))
    assert police.store is not None
    assert police.store.get("nominals", nominal_id) == {"mappa_level": 3}

    await world[POLICE].post(f"/v1/nominals/{nominal_id}/level", {"level": 1, "reason": "x"})
    [to_probation] = [m for m in await _level_changes(world, PROBATION) if m["old_level"] == 3]
    assert to_probation["level"] == 1
    store = JsonStore(tmp_path / "probation.json")
    store.put("registrations", nominal_id, {"type": "MAPP", "category": "M2", "level": "M3"})
    probation = ProbationAdapter(store)
    receipt = probation.receive(
        Delivery("7d0f5c1e-0000-4000-8000-00000000000b", KIND, to_probation, "gw")
    )
    assert receipt.action == "registration_updated"
    assert store.get("registrations", nominal_id) == {
        "type": "MAPP",
        "category": "M2",
        "level": "M1",
    }


async def test_messages_sealed_for_a_level_another_change_replaced_are_not_sent() -> None:
    """Sealed before the transaction from the level read then; if the row lock finds another
    level (a concurrent change won), the change fails (409) rather than send stale news."""
    announcement = LevelAnnouncement(old_level=2, new_level=3, pushes=())
    with pytest.raises(errors.Conflict):
        await announcement.stage(None, None, "3")  # type: ignore[arg-type]
