"""A warning marker's revocation is decided for the housing provider, as the marker was.

Housing is sent a revocation under the rule that lets it know of the nominal (its meeting), and
that rule is the one the audit entry names, never the caller's. When need-to-know no longer lets
housing know of the nominal (category 4, deregistered), the revocation still goes, because a
stale PWM on a property wrongly warns staff: bare (the marker id, UPRN and code housing already
holds, nothing about the person, no reason, no date), under the reviewed rule
``warning-marker-revocation`` of ``recipients.toml``, the entry naming the rule that refused
housing too. With that rule off, nothing is sent and the marker is revoked all the same.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

import policies
from gateway.store.models import WarningMarker
from tests.gateway.cases.scenario import CS, HOUSING, POLICE, at_level_2, level_2_meeting
from tests.gateway.cases.support import World
from tests.gateway.cases.test_warning_markers import UPRN, marker

REVOCATION = "warning_marker_revocation"
CONTACT = "Barnet MAPPA unit, 020 8000 0000"
BARE = {"marker", "marker_id", "revoked", "uprn"}


async def _marked(world: World) -> tuple[str, str]:
    """A level 2 nominal whose meeting housing attended, and a marker raised for housing."""
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id, {HOUSING: "attended", CS: "attended"})
    answer = await world[POLICE].post("/v1/warning-markers", marker(nominal_id))
    return nominal_id, str(answer["id"])


async def _revocation_entry(world: World) -> Any:
    [entry] = [
        e
        for e in await world.audit(operation="alteration", agency_id=POLICE)
        if (e.detail or {}).get("kind") == REVOCATION
    ]
    return entry


# Each row: what ends housing's part in the case, and the rule that then refuses housing.
ENDED = [
    # category 4: only police and probation of the area may know of the nominal
    ({"category": {"category": "M4", "reason": "Terrorism risk"}}, "category-4-named-agencies"),
    # deregistration ends housing's meeting involvement: no rule grants
    ({"deregistration": {"reason": "Registration period ended"}}, policies.DEFAULT_DENY),
]


@pytest.mark.parametrize(("change", "refusing"), ENDED)
async def test_revocation_to_housing_that_may_no_longer_know_is_bare(
    world: World, change: dict[str, dict[str, str]], refusing: str
) -> None:
    nominal_id, marker_id = await _marked(world)
    [(path, body)] = change.items()
    await world[POLICE].post(f"/v1/nominals/{nominal_id}/{path}", body)
    refused = await world[HOUSING].refused("GET", f"/v1/nominals/{nominal_id}")
    assert refused.status == 404  # housing may no longer know of the nominal
    await world[POLICE].post(
        f"/v1/warning-markers/{marker_id}/revocation", {"reason": "deregistered"}
    )
    [pushed] = await world.pushed(HOUSING, REVOCATION)
    assert pushed == {"marker_id": marker_id, "uprn": UPRN, "marker": "PWM", "revoked": True}
    assert nominal_id not in json.dumps(pushed) and "deregistered" not in json.dumps(pushed)
    entry = await _revocation_entry(world)
    assert entry.outcome == "allowed" and entry.recipients == [HOUSING]
    assert entry.rule == "warning-marker-revocation"
    assert entry.detail["recipient_refused_by"] == refusing
    # the caller's own rule (police lead the case; after deregistration, the area's RA)
    assert entry.detail["caller_rule"] in {"lead-agency", "responsible-authority-of-area"}
    assert entry.payload_digest and entry.detail["delivery"] == "outbox"
    assert UPRN not in json.dumps(entry.detail) and CONTACT not in json.dumps(entry.detail)


async def test_revocation_to_housing_that_may_know_names_its_rule(world: World) -> None:
    """The same bare body, audited under the rule that lets housing know: its meeting."""
    _, marker_id = await _marked(world)
    await world[POLICE].post(
        f"/v1/warning-markers/{marker_id}/revocation", {"reason": "left_property"}
    )
    [pushed] = await world.pushed(HOUSING, REVOCATION)
    assert set(pushed) == BARE
    entry = await _revocation_entry(world)
    assert entry.rule == "involved-meeting" and "recipient_refused_by" not in entry.detail


async def test_with_the_rule_off_nothing_is_sent_and_the_marker_is_revoked(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """revocation_to_any_recipient = false: housing, which may no longer know, is sent nothing;
    the marker is revoked, and the entry says so with the rule that refused housing."""
    nominal_id, marker_id = await _marked(world)
    packaged = policies.default_policy_set()
    off = dataclasses.replace(
        packaged,
        recipients=dataclasses.replace(
            packaged.recipients,
            warning_marker=dataclasses.replace(
                packaged.recipients.warning_marker, revocation_to_any_recipient=False
            ),
        ),
    )
    monkeypatch.setattr(policies, "default_policy_set", lambda: off)
    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/category", {"category": "M4", "reason": "Terrorism risk"}
    )
    answer = await world[POLICE].post(
        f"/v1/warning-markers/{marker_id}/revocation", {"reason": "deregistered"}
    )
    assert answer["status"] == "revoked"
    assert await world.pushed(HOUSING, REVOCATION) == []
    entry = await _revocation_entry(world)
    assert entry.recipients == [] and entry.payload_digest is None
    assert entry.detail["delivery"] == "none"
    assert entry.detail["recipient_refused_by"] == "category-4-named-agencies"
    async with world.state.db.read() as session:
        row = await session.get(WarningMarker, marker_id)
    assert row is not None and row.status == "revoked"
