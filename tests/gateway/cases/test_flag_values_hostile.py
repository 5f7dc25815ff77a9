"""THREATS.md "Redaction": a hazard flag to children's services carries only its allow-list, and
so does a warning marker to housing. Through the HTTP API: a reference that is not a reference,
or a contact that is not a role with a number or an address, is refused with 422
``validation_failed`` naming the field and never echoing the value; nothing is stored, nothing
pushed. Good values are accepted and reach the recipient as sent."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from fastapi import FastAPI

from gateway.contract.envelope import JOSE_MEDIA_TYPE
from gateway.routes import cases
from gateway.store.models import HazardFlag, WarningMarker
from policies.flag_values import CHILD_OR_FAMILY_REF, EMAIL, TELEPHONE, ContactRole
from tests.gateway.cases.scenario import CS, HOUSING, POLICE, at_level_2, level_2_meeting
from tests.gateway.cases.support import TODAY, World
from tests.policies.test_flag_values import (
    GOOD_CONTACTS,
    GOOD_REFERENCES,
    HOSTILE_CONTACTS,
    HOSTILE_REFERENCES,
    PHONE,
)

REVIEW = (TODAY + dt.timedelta(days=90)).isoformat()


def _flag(nominal_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "nominal_id": nominal_id,
        "recipient_agency_id": CS,
        "child_or_family_ref": "ICS-FAM-55821",
        "relationship": "father",
        "contact": PHONE,
        **changes,
    }


def _marker(nominal_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "nominal_id": nominal_id,
        "recipient_agency_id": HOUSING,
        "uprn": "200004512345",
        "contact": PHONE,
        "review_date": REVIEW,
        **changes,
    }


WRITES = {
    "hazard_flag": ("/v1/hazard-flags", _flag, HazardFlag, CS),
    "warning_marker": ("/v1/warning-markers", _marker, WarningMarker, HOUSING),
}
#: (write, field, hostile values): each refused on its own request.
TABLES = [
    ("hazard_flag", "contact", HOSTILE_CONTACTS),
    ("hazard_flag", "child_or_family_ref", HOSTILE_REFERENCES),
    ("warning_marker", "contact", HOSTILE_CONTACTS),
]


async def _case(world: World) -> str:
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)  # children's services and housing attend
    return nominal_id


@pytest.mark.parametrize(
    ("write", "field", "values"), TABLES, ids=[f"{w}-{f}" for w, f, _ in TABLES]
)
async def test_hostile_values_are_422_naming_the_field_and_nothing_is_stored_or_pushed(
    world: World, write: str, field: str, values: list[Any]
) -> None:
    nominal_id = await _case(world)
    path, body, model, recipient = WRITES[write]
    outbox = len(await world.outbox(recipient))
    for value in values:
        refused = await world[POLICE].refused("POST", path, body(nominal_id, **{field: value}))
        assert refused.status == 422, (field, value, refused.problem)
        assert refused.code == "validation_failed"
        errors = refused.problem["errors"]
        assert errors and {e["loc"][0] for e in errors} == {field}, (value, errors)
        shown = json.dumps(refused.problem)
        for text in value.values() if isinstance(value, dict) else [value]:
            if isinstance(text, str) and len(text) > 3:
                assert text not in shown and json.dumps(text)[1:-1] not in shown, text
    assert await world.count(model) == 0
    assert len(await world.outbox(recipient)) == outbox


async def test_the_reviews_flag_is_refused_and_reaches_no_one(world: World) -> None:
    """The review's probe: offence and third-party details in the reference and the contact."""
    nominal_id = await _case(world)
    refused = await world[POLICE].refused(
        "POST",
        "/v1/hazard-flags",
        _flag(
            nominal_id,
            child_or_family_ref="ICS-55821.RAPE-CONVICTION-2019.INFORMANT-MRS-ODDINGTON-VANCE",
            contact="DC Hale: convicted 2019 rape of stepdaughter; neighbour Mrs Oddington-Vance "
            "(no.43) reports sightings",
        ),
    )
    assert refused.status == 422
    assert {e["loc"][0] for e in refused.problem["errors"]} == {"child_or_family_ref", "contact"}
    assert "Oddington" not in json.dumps(refused.problem)
    assert await world.pushed(CS, "hazard_flag") == []
    assert await world.count(HazardFlag) == 0


async def test_good_values_are_accepted_and_pushed_as_sent(world: World) -> None:
    """Each good reference and contact makes a flag; children's services receive exactly the
    contact sent (no empty email or telephone added) and the reference sent."""
    nominal_id = await _case(world)
    sent = [(ref, PHONE) for ref in GOOD_REFERENCES] + [
        ("ICS-FAM-55821", contact) for contact in GOOD_CONTACTS
    ]
    for ref, contact in sent:
        await world[POLICE].post(
            "/v1/hazard-flags", _flag(nominal_id, child_or_family_ref=ref, contact=contact)
        )
    pushed = [p["hazard_flag"] for p in await world.pushed(CS, "hazard_flag")]
    assert _sorted((p["child_or_family_ref"], p["contact"]) for p in pushed) == _sorted(sent)
    for contact in GOOD_CONTACTS:
        await world[POLICE].post("/v1/warning-markers", _marker(nominal_id, contact=contact))
    markers = [p["contact"] for p in await world.pushed(HOUSING, "warning_marker")]
    assert _sorted(markers) == _sorted(GOOD_CONTACTS)


def _sorted(items: Any) -> list[str]:
    """The outbox orders messages of one instant by id: compare as sets of JSON."""
    return sorted(json.dumps(item, sort_keys=True) for item in items)


def test_the_sealed_schema_shows_the_shapes() -> None:
    """x-mappa-sealed-schema: the reference's pattern, the contact an object of a role from the
    vocabulary with a telephone and an email of their patterns, and nothing else."""
    app = FastAPI()
    app.include_router(cases.router)
    document = app.openapi()

    def sealed(path: str) -> dict[str, Any]:
        body = document["paths"][path]["post"]["requestBody"]["content"][JOSE_MEDIA_TYPE]
        schema: dict[str, Any] = body["x-mappa-sealed-schema"]
        return schema

    flag, marker = sealed("/v1/hazard-flags"), sealed("/v1/warning-markers")
    assert flag["properties"]["child_or_family_ref"]["pattern"] == CHILD_OR_FAMILY_REF
    for schema in (flag, marker):
        contact = schema["$defs"]["Contact"]
        assert schema["properties"]["contact"] == {"$ref": "#/$defs/Contact"}
        assert contact["additionalProperties"] is False
        assert set(contact["properties"]) == {"role", "telephone", "email"}
        assert contact["required"] == ["role"]
        role = schema["$defs"]["ContactRole"]
        assert role["enum"] == [r.value for r in ContactRole]
        telephone = contact["properties"]["telephone"]["anyOf"][0]
        email = contact["properties"]["email"]["anyOf"][0]
        assert telephone["pattern"] == TELEPHONE and email["pattern"] == EMAIL
