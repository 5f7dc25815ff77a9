"""Only the originator releases its third-party source (THREATS.md, "Redaction").

The minutes' author may mark ``released`` a source it brought; one it attributes to another
agency (``originator_agency_id``) is that agency's to release, and such a "release" does not
count: the source reaches its originator alone, on both backends. (A record's or written
report's sources are its owner's: the contract refuses an ``originator_agency_id`` there.)
"""

from __future__ import annotations

from typing import Any

from tests.gateway.cases.scenario import (
    CS,
    HOUSING,
    JCP,
    POLICE,
    PROBATION,
    THIRD_PARTY_SOURCE,
    THIRD_PARTY_TEXT,
    at_level_2,
    level_2_meeting,
    minutes,
)
from tests.gateway.cases.support import World


def _released_by(body: dict[str, Any], originator: str) -> dict[str, Any]:
    """``body`` with its neighbour source released and attributed to ``originator``."""
    body["sources"] = [
        {**s, "originator_agency_id": originator, "released": True}
        if s["id"] == "s-neighbour"
        else s
        for s in body["sources"]
    ]
    return body


async def test_minutes_releasing_another_agencys_source_reach_only_its_originator(
    any_world: World,
) -> None:
    """Police's minutes mark released the neighbour source they say probation brought: no
    participant but probation is pushed or reads the source or the discussion citing it."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    await world[POLICE].post(
        f"/v1/meetings/{meeting_id}/minutes", _released_by(minutes(), PROBATION)
    )
    for agency_id in (CS, HOUSING, JCP):
        [pushed] = await world.pushed(agency_id, "minutes")
        read = await world[agency_id].get(f"/v1/meetings/{meeting_id}/minutes")
        for seen in (repr(pushed), repr(read)):
            assert THIRD_PARTY_SOURCE not in seen, agency_id
            assert THIRD_PARTY_TEXT not in seen, agency_id
    [pushed] = await world.pushed(PROBATION, "minutes")
    assert THIRD_PARTY_SOURCE in repr(pushed)
    read = await world[PROBATION].get(f"/v1/meetings/{meeting_id}/minutes")
    assert THIRD_PARTY_TEXT in repr(read)
