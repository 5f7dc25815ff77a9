"""Only the originator releases its third-party source (THREATS.md, "Redaction").

The minutes' author may mark ``released`` a source it brought; one it attributes to another
agency (``originator_agency_id``) is that agency's to release, and such a "release" does not
count: the source reaches its originator alone, on both backends. (A record's or written
report's sources are its owner's: the contract refuses an ``originator_agency_id`` there.)
"""

from __future__ import annotations

from typing import Any

from gateway.store.models import Minutes
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


async def test_minutes_releasing_another_agencys_source_are_refused(any_world: World) -> None:
    """Police's minutes mark released the neighbour source they say probation brought: 422
    naming the source's place, with nothing stored and nothing pushed to any participant.
    (Minutes stored before this check are held by the redaction, which does not count such a
    release: tests/policies/test_redaction.py.)"""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    body = _released_by(minutes(), PROBATION)
    position = [s["id"] for s in body["sources"]].index("s-neighbour")
    refused = await world[POLICE].refused("POST", f"/v1/meetings/{meeting_id}/minutes", body)
    assert refused.status == 422
    assert refused.problem["errors"] == [
        {"loc": ["sources", position, "released"], "type": "not_the_originator"}
    ]
    assert await world.count(Minutes) == 0
    for agency_id in (CS, HOUSING, JCP, PROBATION):
        assert await world.pushed(agency_id, "minutes") == [], agency_id
    assert THIRD_PARTY_TEXT not in repr(refused.problem)


async def test_minutes_releasing_a_source_their_author_brought_are_taken(
    any_world: World,
) -> None:
    """The author may release a source it brought itself (no originator, or itself named)."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    body = _released_by(minutes(), POLICE)
    assert (await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", body))["id"]
    [pushed] = await world.pushed(HOUSING, "minutes")
    assert THIRD_PARTY_SOURCE in repr(pushed)
