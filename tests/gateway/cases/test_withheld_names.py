"""The audit names what it withheld by place, never by the sender's ids (THREATS.md, "Redaction":
the audit records which fields were withheld, never their values).

A source's or item's id is text the sending agency chose (up to 32 characters): one naming the
informant (``Oddington-Vance.43-Quillfeather``) would put the withheld person in every audit
entry and its export. The withheld list says ``sources[#2]`` instead, the second source as the
sender listed it, on both backends, for records, minutes, action points and onward disclosure.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.store.models import AuditEntry
from tests.gateway.cases.scenario import (
    CP_CONFERENCE,
    CS,
    HOUSING,
    JCP,
    POLICE,
    PROBATION,
    at_level_2,
    disclosure_request,
    level_2_meeting,
    minutes,
    record,
)
from tests.gateway.cases.support import TODAY, World

#: Ids the senders chose, naming the people they stand for.
SOURCE_ID = "Oddington-Vance.43-Quillfeather"
ITEM_ID = "EtheridgePike-said"
CAVEAT_ITEM_ID = "Covert-OP-Kestrel"
SENDER_IDS = (SOURCE_ID, ITEM_ID, CAVEAT_ITEM_ID, "Oddington", "Etheridge", "Kestrel")


def _renamed(body: dict[str, Any], item_group: str) -> dict[str, Any]:
    """``body`` with its neighbour source and the item citing it under the sender's ids."""
    body["sources"] = [
        {**s, "id": SOURCE_ID} if s["id"] == "s-neighbour" else s for s in body["sources"]
    ]
    body[item_group] = [
        {**item, "id": ITEM_ID, "source": SOURCE_ID}
        if item.get("source") == "s-neighbour"
        else item
        for item in body[item_group]
    ]
    return body


async def _every_audit_row(world: World) -> list[str]:
    entries = await world.audit()
    return [
        repr({c.name: getattr(e, c.name) for c in AuditEntry.__table__.columns}) for e in entries
    ]


def _no_sender_id(rows: list[str]) -> None:
    for row in rows:
        for ident in SENDER_IDS:
            assert ident not in row, f"{ident!r} in an audit entry: {row[:200]}"


async def _record_read(world: World) -> set[tuple[str, str]]:
    """Probation's record, its neighbour source under the sender's id, read by housing."""
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    created = await world[PROBATION].post(
        f"/v1/nominals/{nominal_id}/records", _renamed(record(), "content")
    )
    await world[HOUSING].get(f"/v1/nominals/{nominal_id}/records")
    await world[HOUSING].get(f"/v1/nominals/{nominal_id}/records/{created['id']}")
    prefix = f"records[{created['id']}]."
    return {
        (w["field"].removeprefix(prefix), w["rule"])
        for e in await world.audit(agency_id=HOUSING, operation="disclosure")
        for w in e.withheld
    }


async def _minutes_and_onward(world: World) -> set[tuple[str, str]]:
    """Police's minutes with the sender's ids (a discussion entry citing the neighbour, a
    conclusion only the Responsible Authority may see), an action point, read by the
    participants and sent on to the conference with the chair's approval."""
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    body = _renamed(minutes(), "discussion")
    body["conclusions"] = [
        *body["conclusions"],
        {"id": CAVEAT_ITEM_ID, "text": "Covert tactic", "caveats": ["responsible-authority-only"]},
    ]
    body["sources"] = [
        {**s, "originator_agency_id": PROBATION} if s["id"] == SOURCE_ID else s
        for s in body["sources"]
    ]
    await world[POLICE].post(
        f"/v1/meetings/{meeting_id}/actions",
        {
            "owner_agency_id": CS,
            "description": "Check ICS",
            "due_date": (TODAY + dt.timedelta(days=7)).isoformat(),
        },
    )
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", body)
    for agency_id in (CS, HOUSING, JCP):
        await world[agency_id].get(f"/v1/meetings/{meeting_id}/minutes")
    asked = await world[CS].post("/v1/disclosures", disclosure_request(meeting_id, CP_CONFERENCE))
    await world[POLICE].post(
        f"/v1/disclosures/{asked['id']}/decision",
        {"decision": "approve", "approved_parts": ["conclusions", "actions"], "reason": "s.47"},
    )
    return {(w["field"], w["rule"]) for e in await world.audit() for w in e.withheld}


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (
            _record_read,
            {("sources[#2]", "third-party-source"), ("content[#2]", "third-party-source")},
        ),
        (
            _minutes_and_onward,
            {
                ("sources[#2]", "third-party-source"),  # probation's neighbour, to housing
                ("discussion[#2]", "third-party-source"),  # the entry citing it
                ("conclusions[#3]", "caveat:responsible-authority-only"),  # to housing
                ("conclusions[#2]", "third-party-source"),  # the victim's, onward
            },
        ),
    ],
    ids=["record", "minutes-and-onward"],
)
async def test_the_audit_names_withheld_entries_by_place_never_by_sender_id(
    any_world: World, scenario: Any, expected: set[tuple[str, str]]
) -> None:
    withheld = await scenario(any_world)
    _no_sender_id(await _every_audit_row(any_world))
    assert not [name for name, _ in withheld if "[" in name and "[#" not in name]
    assert expected <= withheld
