"""s.325(4A)(c) through the API: the RA records that an agency could contribute on one nominal,
and that agency may rely on the basis for that nominal, those purposes, while it stands."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from adapters.client import ContextHeaders
from gateway.store.models import AuditEntry, ContributorDecision, IdempotentRequest
from tests.gateway.cases.scenario import (
    CS,
    HOUSING,
    POLICE,
    PROBATION,
    VICTIM_SUPPORT,
    WILTS_POLICE,
    at_level_2,
    level_2_meeting,
    referral,
)
from tests.gateway.cases.support import TODAY, World

#: Victim support relying on s.325(4A)(c) to assess the risk.
CONTRIBUTING = ContextHeaders("CJA2003-s325-4A-c", "risk-assessment", "VS-9")
REASON = "Holds the victim's safety plan; Ms Lorna Etheridge-Pike consented to sharing"


def decision(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agency_id": VICTIM_SUPPORT,
        "purposes": ["risk-assessment", "mappa-meeting"],
        "reason": REASON,
        "ends_on": (TODAY + dt.timedelta(days=60)).isoformat(),
        "review_date": (TODAY + dt.timedelta(days=30)).isoformat(),
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _another_subject() -> dict[str, Any]:
    """A second person (other identifiers): another nominal, not a link to the first."""
    return {**referral()["subject"], "pnc_id": "2001/0000001Z", "crn": "Y123456"}


async def _case_with_contributor_attending(world: World, *, another: bool = False) -> str:
    """A level 2 nominal whose meeting victim support attended (an involvement)."""
    nominal_id = await (
        at_level_2(world, subject=_another_subject()) if another else at_level_2(world)
    )
    await level_2_meeting(world, nominal_id, {PROBATION: "attended", VICTIM_SUPPORT: "attended"})
    return nominal_id


async def _record(world: World, nominal_id: str, **changes: Any) -> str:
    answer = await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/contributors", decision(**changes)
    )
    assert answer["status"] == "recorded" and answer["nominal_id"] == nominal_id
    decision_id = answer["id"]
    assert isinstance(decision_id, str)
    return decision_id


async def _read_as_contributor(world: World, nominal_id: str, **context: str) -> int:
    """The status victim support gets reading the nominal under s.325(4A)(c)."""
    headers = CONTRIBUTING
    if context:
        headers = ContextHeaders(
            context.get("basis", CONTRIBUTING.legal_basis),
            context.get("purpose", CONTRIBUTING.purpose),
            CONTRIBUTING.officer,
        )
    response = await world[VICTIM_SUPPORT].raw("GET", f"/v1/nominals/{nominal_id}", context=headers)
    return response.status_code


async def test_contributor_relies_on_the_basis_only_while_the_decision_stands(
    any_world: World,
) -> None:
    """Refused before the RA records it, allowed while it stands (the read's audit entry names
    the decision), refused again once revoked (SQLite and PostgreSQL)."""
    world = any_world
    nominal_id = await _case_with_contributor_attending(world)
    assert await _read_as_contributor(world, nominal_id) == 404

    decision_id = await _record(world, nominal_id)
    assert await _read_as_contributor(world, nominal_id) == 200
    read = (await world.audit(agency_id=VICTIM_SUPPORT, outcome="allowed"))[-1]
    assert read.legal_basis == "CJA2003-s325-4A-c"
    assert read.detail["contributor_decision"] == decision_id

    revoked = await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/contributors/{decision_id}/revocation",
        {"reason": "Safety plan closed"},
    )
    assert revoked == {"id": decision_id, "status": "revoked", "nominal_id": nominal_id}
    assert await _read_as_contributor(world, nominal_id) == 404
    refusal = (await world.audit(agency_id=VICTIM_SUPPORT, outcome="refused"))[-1]
    assert refusal.rule == "other-contributor-recorded"
    assert "revoked" in str(refusal.detail)


async def test_decision_stands_to_the_end_of_its_end_date_in_london(world: World) -> None:
    """Ending on a day means to midnight at its end, Europe/London time; then it ends."""
    nominal_id = await _case_with_contributor_attending(world)
    await _record(world, nominal_id, ends_on=TODAY.isoformat(), review_date=None)
    assert await _read_as_contributor(world, nominal_id) == 200
    # 23:59 in London on the end date (GMT in November) still stands
    world.clock.now = dt.datetime.combine(TODAY, dt.time(23, 59), dt.UTC)
    assert await _read_as_contributor(world, nominal_id) == 200
    world.clock.now = dt.datetime.combine(TODAY + dt.timedelta(days=1), dt.time(0, 0, 1), dt.UTC)
    assert await _read_as_contributor(world, nominal_id) == 404


async def test_decision_is_for_its_agency_and_nominal_only(world: World) -> None:
    """Another contributor at the same meeting, and the same contributor on another nominal,
    gain nothing from it."""
    nominal_id = await _case_with_contributor_attending(world)
    other_nominal = await _case_with_contributor_attending(world, another=True)
    helper = await world.register("barnet-circles", "other", "other_contributor")
    await world[POLICE].post(
        f"/v1/meetings/{await level_2_meeting(world, nominal_id, {helper.id: 'attended'})}"
        "/participants",
        {"participants": [{"agency_id": helper.id, "participation": "attended"}]},
    )
    await _record(world, nominal_id)
    assert await _read_as_contributor(world, nominal_id) == 200
    assert await _read_as_contributor(world, other_nominal) == 404
    response = await helper.raw(
        "GET",
        f"/v1/nominals/{nominal_id}",
        context=ContextHeaders(CONTRIBUTING.legal_basis, CONTRIBUTING.purpose, "C-1"),
    )
    assert response.status_code == 404


async def test_decision_covers_its_purposes_only(world: World) -> None:
    """A purpose the RA did not record is refused (403) with the condition's rule."""
    nominal_id = await _case_with_contributor_attending(world)
    decision_id = await _record(world, nominal_id, purposes=["risk-assessment"])
    assert await _read_as_contributor(world, nominal_id) == 200
    assert await _read_as_contributor(world, nominal_id, purpose="mappa-meeting") == 403
    refusal = (await world.audit(agency_id=VICTIM_SUPPORT, outcome="refused"))[-1]
    assert refusal.rule == "condition:nominal-recorded-other-contributor"
    assert refusal.reason_code == "basis_not_recorded_for_nominal"
    assert decision_id in str(refusal.detail)


async def test_ra_relies_on_the_basis_only_for_a_nominal_with_a_standing_decision(
    world: World,
) -> None:
    """The RA may state s.325(4A)(c) for a nominal on which some decision stands, not before."""
    nominal_id = await at_level_2(world)
    police = world[POLICE]
    context = ContextHeaders(CONTRIBUTING.legal_basis, "risk-assessment", "DI-1")
    response = await police.raw("GET", f"/v1/nominals/{nominal_id}", context=context)
    assert response.status_code == 403
    await _record(world, nominal_id)
    response = await police.raw("GET", f"/v1/nominals/{nominal_id}", context=context)
    assert response.status_code == 200


async def test_recording_is_audited_without_its_reason_and_the_reason_is_sealed(
    world: World,
) -> None:
    """The entry names the contributor, purposes and dates; the reason is only in the sealed
    column, and opens only for its row."""
    nominal_id = await at_level_2(world)
    decision_id = await _record(world, nominal_id)
    [entry] = [
        e
        for e in await world.audit(agency_id=POLICE, operation="collection")
        if decision_id in (e.record_refs or [])
    ]
    assert (entry.operation, entry.outcome) == ("collection", "allowed")
    assert entry.nominal_ref == nominal_id
    assert entry.detail["contributor"] == VICTIM_SUPPORT
    assert entry.detail["purposes"] == ["mappa-meeting", "risk-assessment"]
    assert entry.detail["ends_on"] == (TODAY + dt.timedelta(days=60)).isoformat()
    for row in await world.audit():
        assert "Etheridge-Pike" not in str(row.detail)
    async with world.state.db.read() as session:
        row = await session.get(ContributorDecision, decision_id)
    assert row is not None and b"Etheridge-Pike" not in bytes(row.reason_sealed)
    sealer = world.state.case_sealer
    assert sealer is not None
    opened = sealer.unseal("contributor_decisions", decision_id, "reason_sealed", row.reason_sealed)
    assert opened == {"reason": REASON}
    assert row.recorded_by_agency_id == POLICE and row.officer == world[POLICE].context.officer


async def _decisions(world: World) -> int:
    return await world.count(ContributorDecision)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (decision(agency_id="no-such-agency"), "agency_id"),  # not registered
        (decision(agency_id=HOUSING), "agency_id"),  # a DTC agency has its own bases
        (decision(agency_id="Bad Agency"), "agency_id"),  # not an agency id at all
        (decision(purposes=["public-disclosure"]), "purposes"),  # not a 4A(c) purpose
        (decision(purposes=["curiosity"]), "purposes"),  # in no vocabulary
        (decision(purposes=[]), "purposes"),  # none
        (decision(purposes=["risk-assessment", "risk-assessment"]), ""),  # twice
        (
            decision(ends_on=(TODAY - dt.timedelta(days=1)).isoformat(), review_date=None),
            "ends_on",
        ),  # past
        (decision(ends_on="2027-02-30"), "ends_on"),  # no such day
        (decision(ends_on=20270101), "ends_on"),  # a number, not a date
        (decision(review_date=(TODAY + dt.timedelta(days=90)).isoformat()), ""),  # after end
        (decision(reason=""), "reason"),  # empty
        (decision(unexpected="x"), "unexpected"),  # unknown field
    ],
)
async def test_bad_decision_is_422_and_stores_nothing(
    world: World, body: dict[str, Any], field: str
) -> None:
    """Each bad body answers 422 naming the place (where it can), and nothing is stored."""
    nominal_id = await at_level_2(world)
    refused = await world[POLICE].refused("POST", f"/v1/nominals/{nominal_id}/contributors", body)
    assert refused.status == 422, refused.problem
    assert field in str(refused.problem)
    assert await _decisions(world) == 0


@pytest.mark.parametrize(
    ("who", "context", "status", "code"),
    [
        # a DTC agency that attended, so may see the case, is not the RA
        (HOUSING, None, 403, "forbidden"),
        # children's services' referral tie ended at screening: it may not know of the case
        (CS, None, 404, "not_found"),
        # the RA of another area may not know of it
        (WILTS_POLICE, None, 404, "not_found"),
        # the contributor may not state s.325(4): not its basis
        (VICTIM_SUPPORT, None, 403, "lawful_basis_refused"),
        # nor record its own decision under s.325(4A)(c): with none yet, the case is unknown
        (VICTIM_SUPPORT, CONTRIBUTING, 404, "not_found"),
    ],
)
async def test_only_the_responsible_authority_of_the_case_records(
    world: World, who: str, context: ContextHeaders | None, status: int, code: str
) -> None:
    """Anyone else gets 403 or the opaque 404, audited with its rule; nothing is stored."""
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id, {HOUSING: "attended", VICTIM_SUPPORT: "attended"})
    refused = await world[who].refused(
        "POST", f"/v1/nominals/{nominal_id}/contributors", decision(), context=context
    )
    assert (refused.status, refused.code) == (status, code)
    assert await _decisions(world) == 0
    entry = (await world.audit(agency_id=who, outcome="refused"))[-1]
    assert entry.rule


async def test_plain_json_decision_is_415(world: World) -> None:
    nominal_id = await at_level_2(world)
    response = await world[POLICE].raw(
        "POST",
        f"/v1/nominals/{nominal_id}/contributors",
        content=b'{"agency_id": "barnet-victim-support"}',
        content_type="application/json",
    )
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    assert await _decisions(world) == 0


async def test_unknown_or_malformed_nominal_is_404(world: World) -> None:
    for nominal_id in ("00000000-0000-4000-8000-000000000000", "not-an-id", "..%2F"):
        refused = await world[POLICE].refused(
            "POST", f"/v1/nominals/{nominal_id}/contributors", decision()
        )
        assert refused.status == 404
    assert await _decisions(world) == 0


async def test_a_second_standing_decision_is_409(world: World) -> None:
    nominal_id = await at_level_2(world)
    await _record(world, nominal_id)
    refused = await world[POLICE].refused(
        "POST", f"/v1/nominals/{nominal_id}/contributors", decision()
    )
    assert (refused.status, refused.code) == (409, "conflict")
    assert await _decisions(world) == 1


async def test_revocation_hostile(world: World) -> None:
    """Revoking: only the RA (403), only a decision of this nominal (404), only once (409)."""
    nominal_id = await at_level_2(world)
    other_nominal = await at_level_2(world, subject=_another_subject())
    decision_id = await _record(world, nominal_id)
    path = f"/v1/nominals/{nominal_id}/contributors/{decision_id}/revocation"
    await level_2_meeting(world, nominal_id, {HOUSING: "attended"})
    refused = await world[HOUSING].refused("POST", path, {"reason": "x"})
    assert refused.status == 403
    refused = await world[POLICE].refused(
        "POST",
        f"/v1/nominals/{other_nominal}/contributors/{decision_id}/revocation",
        {"reason": "x"},
    )
    assert refused.status == 404
    refused = await world[POLICE].refused(
        "POST", f"/v1/nominals/{nominal_id}/contributors/not-a-decision/revocation", {"reason": "x"}
    )
    assert refused.status == 404
    refused = await world[POLICE].refused("POST", path, {"reason": ""})
    assert refused.status == 422
    async with world.state.db.read() as session:
        row = await session.get(ContributorDecision, decision_id)
    assert row is not None and row.revoked_at is None
    await world[PROBATION].post(path, {"reason": "Safety plan closed"})
    refused = await world[POLICE].refused("POST", path, {"reason": "again"})
    assert (refused.status, refused.code) == (409, "conflict")
    async with world.state.db.read() as session:
        row = await session.get(ContributorDecision, decision_id)
        keys = (await session.scalars(select(IdempotentRequest.agency_id))).all()
    assert row is not None and row.revoked_by_agency_id == PROBATION
    assert row.ends_at == world.clock.now
    assert PROBATION in keys
    [entry] = [e for e in await world.audit(agency_id=PROBATION) if e.operation == "alteration"]
    assert entry.detail["contributor"] == VICTIM_SUPPORT
    assert isinstance(entry, AuditEntry)
