"""s.327A (the child sex offender disclosure scheme) through the HTTP API: the Responsible
Authority reads a category 1 nominal and its records under it; any other category, the level 1
list and any write are refused (403, audited with the rule), the parts decidable without the
nominal before any case data is read; an agency that may not know the nominal gets the 404 it
would get anyway, never the category's 403."""

from __future__ import annotations

import pytest

from adapters.client import ContextHeaders
from gateway.routes.cases import ROUTES
from gateway.store.models import HazardFlag, InformationRecord, NominalChange, OutboxMessage
from policies import default_policy_set
from tests.gateway.cases.scenario import (
    CS,
    PNC,
    POLICE,
    PROBATION,
    WILTS_POLICE,
    at_level_1,
    at_level_2,
    record,
)
from tests.gateway.cases.support import World
from tests.gateway.cases.test_lawful_basis_hostile import (  # the fixture, for the spy
    CASE_TABLES,
    Statements,
    statements,  # noqa: F401
)

S327A = ("CJA2003-s327A", "public-disclosure")
CATEGORY_RULE = "nominal-category-allowed-for-basis"
OPERATION_RULE = "operation-allowed-for-basis"


def _context(world: World, agency: str) -> ContextHeaders:
    return world[agency].with_context(*S327A)


def test_every_operation_the_register_names_is_a_route() -> None:
    """A typo in the register's operations would refuse a read for ever: each is a route."""
    names = {route.name for route in ROUTES}
    for basis in default_policy_set().legal_bases.bases.values():
        assert basis.operations is None or basis.operations <= names, basis.code


@pytest.mark.parametrize("agency", [POLICE, PROBATION])
async def test_category_1_is_read_under_s327a_by_the_ra(world: World, agency: str) -> None:
    """The nominal, its records and a lookup by PNC id; each audited under s.327A."""
    nominal_id = await at_level_2(world, category="M1")
    await world[PROBATION].post(f"/v1/nominals/{nominal_id}/records", record())
    context = _context(world, agency)
    seen = await world[agency].get(f"/v1/nominals/{nominal_id}", context=context)
    assert seen["category"] == 1
    listed = await world[agency].get(f"/v1/nominals/{nominal_id}/records", context=context)
    [one] = listed["records"]
    await world[agency].get(f"/v1/nominals/{nominal_id}/records/{one['id']}", context=context)
    found = await world[agency].post("/v1/nominals/lookup", {"pnc": PNC}, context=context)
    assert found["id"] == nominal_id
    entries = await world.audit(agency_id=agency, legal_basis=S327A[0])
    assert len(entries) == 4
    assert {e.outcome for e in entries} == {"allowed"}


@pytest.mark.parametrize(
    ("category", "path"),
    [
        ("M2", ""),  # violent or other sexual offender: the nominal
        ("M3", "/records"),  # other dangerous offender: its records
        ("M4", ""),  # terrorism: police of the area may know it, not under s.327A
    ],
)
async def test_other_categories_are_refused_once_known(
    world: World, category: str, path: str
) -> None:
    """403, audited with the category rule and the nominal, after need-to-know let police know
    the nominal; no answer sealed to them."""
    nominal_id = await at_level_2(world, category=category)
    refused = await world[POLICE].refused(
        "GET", f"/v1/nominals/{nominal_id}{path}", context=_context(world, POLICE)
    )
    assert refused.status == 403 and refused.code == "lawful_basis_refused"
    [entry] = await world.audit(agency_id=POLICE, legal_basis=S327A[0])
    assert entry.outcome == "refused"
    assert entry.rule == CATEGORY_RULE
    assert entry.reason_code == "category_not_allowed"
    assert entry.nominal_ref == nominal_id
    assert entry.policy_version == default_policy_set().policy_version


async def test_level_1_list_is_refused_before_any_case_data_is_read(
    any_world: World,
    statements: Statements,  # noqa: F811
) -> None:
    """The level 1 list concerns no single nominal: 403 before the list is read."""
    world = any_world
    await at_level_1(world, category="M1")
    statements.seen.clear()
    refused = await world[POLICE].refused(
        "GET", "/v1/level-1-list", context=_context(world, POLICE)
    )
    assert refused.status == 403
    assert statements.touching("audit_entries"), statements.seen
    for table in CASE_TABLES:
        assert not statements.touching(table), table
    [entry] = await world.audit(agency_id=POLICE, legal_basis=S327A[0])
    assert entry.rule == OPERATION_RULE and entry.reason_code == "operation_not_allowed"


async def test_a_write_on_category_1_is_refused_and_nothing_stored(world: World) -> None:
    """A record, a category change and a hazard flag under s.327A: 403 each, audited with the
    operation rule, nothing stored, nothing pushed."""
    nominal_id = await at_level_2(world, category="M1")
    context = _context(world, POLICE)
    before = {m.__tablename__: await world.count(m) for m in (InformationRecord, HazardFlag)}
    events, outbox = await world.count(NominalChange), await world.count(OutboxMessage)
    flag = {
        "nominal_id": nominal_id,
        "recipient_agency_id": CS,
        "child_or_family_ref": "ICS-55821",
        "relationship": "father",
        "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
    }
    writes = [
        (f"/v1/nominals/{nominal_id}/records", record()),
        (f"/v1/nominals/{nominal_id}/category", {"category": "M4", "reason": "terrorism"}),
        ("/v1/hazard-flags", flag),
    ]
    for path, body in writes:
        refused = await world[POLICE].refused("POST", path, body, context=context)
        assert refused.status == 403, path
    entries = await world.audit(agency_id=POLICE, legal_basis=S327A[0])
    assert [(e.outcome, e.rule) for e in entries] == [("refused", OPERATION_RULE)] * 3
    assert {m.__tablename__: await world.count(m) for m in (InformationRecord, HazardFlag)} == (
        before
    )
    assert await world.count(NominalChange) == events
    assert await world.count(OutboxMessage) == outbox
    assert (await world[POLICE].get(f"/v1/nominals/{nominal_id}"))["category"] == 1


@pytest.mark.parametrize("category", ["M1", "M2", "M4"])
async def test_an_agency_that_may_not_know_the_nominal_gets_404_not_403(
    world: World, category: str
) -> None:
    """Police of another area, an RA agency that may rely on s.327A, ask about a Barnet nominal:
    the same 404 as for any nominal they may not know, audited with need-to-know's rule; the
    category rule is never reached."""
    nominal_id = await at_level_2(world, category=category)
    refused = await world[WILTS_POLICE].refused(
        "GET", f"/v1/nominals/{nominal_id}", context=_context(world, WILTS_POLICE)
    )
    assert refused.status == 404 and refused.code == "not_found"
    [entry] = await world.audit(agency_id=WILTS_POLICE, legal_basis=S327A[0])
    assert entry.outcome == "refused"
    assert entry.rule != CATEGORY_RULE
    assert entry.reason_code == "no_need_to_know"
