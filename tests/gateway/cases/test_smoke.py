"""Smoke."""

from __future__ import annotations

from tests.gateway.cases.scenario import POLICE, at_level_2
from tests.gateway.cases.support import World


async def test_police_refer_and_read(world: World) -> None:
    """x"""
    nominal_id = await at_level_2(world)
    body = await world[POLICE].get(f"/v1/nominals/{nominal_id}")
    assert body["level"] == 2
