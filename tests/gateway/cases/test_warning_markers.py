"""The housing property warning marker: a UPRN, ``PWM``, a contact, a review date; nothing else.

Raised by the Responsible Authority for a nominal it may know, built from the policies'
``[warning_marker]`` allow-list, sealed to the housing provider and pushed through the outbox
with its audit entry. No offence detail, no third party, not even the nominal, reaches it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.housing import HousingAdapter
from adapters.sdk import Delivery
from adapters.standin import JsonStore
from tests.gateway.cases.scenario import (
    CS,
    HOUSING,
    POLICE,
    PROBATION,
    SECRETS,
    THIRD_PARTY_TEXT,
    WILTS_POLICE,
    at_level_2,
)
from tests.gateway.cases.support import World

KIND = "warning_marker"
UPRN = "200004512345"
OFFENCE = "Sexual assault of a child under 13 (s.7 SOA 2003), Crown Court 2019"


def marker(nominal_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "nominal_id": nominal_id,
        "recipient_agency_id": HOUSING,
        "uprn": UPRN,
        "marker": "PWM",
        "contact": "Barnet MAPPA unit, 020 8000 0000",
        "review_date": "2027-02-23",
    }
    body.update(changes)
    return body


async def test_warning_marker_reaches_housing_with_its_allow_list_only(world: World) -> None:
    """Exactly the marker id, UPRN, code, contact and review date: no name, address, offence,
    record text, third party or nominal id; one disclosure entry with its digest."""
    nominal_id = await at_level_2(world)
    answer = await world[POLICE].post("/v1/warning-markers", marker(nominal_id))
    assert answer["status"] == "sent"
    [pushed] = await world.pushed(HOUSING, KIND)
    assert pushed == {
        "marker_id": answer["id"],
        "uprn": UPRN,
        "marker": "PWM",
        "contact": "Barnet MAPPA unit, 020 8000 0000",
        "review_date": "2027-02-23",
    }
    text = json.dumps(pushed)
    for needle in (*SECRETS, OFFENCE, nominal_id):
        assert needle not in text, needle
    [entry] = [
        e
        for e in await world.audit(operation="disclosure", agency_id=POLICE)
        if e.detail.get("resource") == KIND
    ]
    assert entry.recipients == [HOUSING]
    assert entry.record_refs == [answer["id"]]
    assert entry.payload_digest
    assert entry.detail["builder"] == "warning-marker-allow-list"
    [row] = [r for r in await world.outbox(HOUSING) if r.kind == KIND]
    assert row.body.count(".") == 4 and UPRN not in row.body


@pytest.mark.parametrize(
    "smuggled",
    [
        {"offence": OFFENCE},  # an offence field: not on the contract
        {"notes": THIRD_PARTY_TEXT},  # third-party text in a free-text field
        {"address": "Flat 9, 41 Quillfeather Road"},  # a free-text address, not a UPRN
        {"contact": f"Call DS Hale re {OFFENCE}\n{THIRD_PARTY_TEXT}"},  # multi-line contact
        {"uprn": "Flat 9, 41 Quillfeather Road"},  # an address where the UPRN goes
        {"marker": "SEX"},  # a marker code outside the vocabulary
    ],
)
async def test_anything_beyond_the_allow_list_is_refused_and_nothing_sent(
    world: World, smuggled: dict[str, str]
) -> None:
    """422 naming the place, never the value; nothing enqueued for housing."""
    nominal_id = await at_level_2(world)
    refused = await world[POLICE].refused(
        "POST", "/v1/warning-markers", marker(nominal_id, **smuggled)
    )
    assert refused.status == 422
    problem = json.dumps(refused.problem)
    assert OFFENCE not in problem and THIRD_PARTY_TEXT not in problem
    assert await world.outbox(HOUSING) == []


async def test_only_the_responsible_authority_raises_a_marker_for_a_housing_provider(
    world: World,
) -> None:
    """Children's services may not (403); children's services is no marker recipient (422); a
    nominal another area's police may not know of is 404; nothing is sent in any case."""
    nominal_id = await at_level_2(world)
    await world[POLICE].post(
        "/v1/meetings",
        {
            "nominal_id": nominal_id,
            "meeting_type": "level_2",
            "held_on": world.clock.now.date().isoformat(),
            "chair_officer": "DI-1",
            "participants": [{"agency_id": CS, "participation": "attended"}],
            "confidentiality_statement_signed": True,
        },
    )
    assert (
        await world[CS].refused("POST", "/v1/warning-markers", marker(nominal_id))
    ).status == 403
    to_cs = marker(nominal_id, recipient_agency_id=CS)
    assert (await world[PROBATION].refused("POST", "/v1/warning-markers", to_cs)).status == 422
    outsider = await world[WILTS_POLICE].refused("POST", "/v1/warning-markers", marker(nominal_id))
    assert outsider.status == 404
    assert [r for r in await world.outbox() if r.kind == KIND] == []


async def test_housing_adapter_writes_pwm_on_the_property_and_nothing_else(
    world: World, tmp_path: Path
) -> None:
    """The sealed marker, opened by housing, becomes a PWM on the property found by its UPRN."""
    nominal_id = await at_level_2(world)
    await world[POLICE].post("/v1/warning-markers", marker(nominal_id))
    [pushed] = await world.pushed(HOUSING, KIND)
    store = JsonStore(tmp_path / "housing.json")
    store.put("properties", UPRN, {"uprn": UPRN, "address": "1 Demo Close", "markers": []})
    message_id = "7d0f5c1e-0000-4000-8000-0000000000c1"
    receipt = HousingAdapter(store).receive(Delivery(message_id, KIND, pushed, "gw"))
    assert receipt.action == "warning_marker_written"
    prop = store.get("properties", UPRN)
    assert prop is not None
    assert prop["markers"] == [
        {
            "code": "PWM",
            "contact": "Barnet MAPPA unit, 020 8000 0000",
            "review_date": "2027-02-23",
            "message_id": message_id,
        }
    ]
