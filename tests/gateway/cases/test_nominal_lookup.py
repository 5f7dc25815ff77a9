"""``POST /v1/nominals/lookup``: a nominal found by its PNC id, CRN or ViSOR reference.

The identifier travels in the sealed body, never in a URL. The nominal is found through the
blind index of the identifier and answered exactly as ``GET /v1/nominals/{id}`` answers it
(need-to-know, redaction, sealed to the caller); a nominal the caller may not know of answers
the same 404 bytes as an identifier nobody holds. Each lookup is one audit entry, a
consultation naming the kind of identifier and never its value.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from gateway.store.models import (
    AuditEntry,
    IdempotentRequest,
    InformationRecord,
    Nominal,
    OutboxMessage,
    Referral,
)
from tests.gateway.cases.scenario import (
    CRN,
    CS,
    HOUSING,
    PNC,
    POLICE,
    PROBATION,
    SECRETS,
    WILTS_POLICE,
    at_level_2,
    level_2_meeting,
    referral,
)
from tests.gateway.cases.support import World

LOOKUP = "/v1/nominals/lookup"
VISOR = "VR-0077123"
CASE_TABLES = (Nominal, Referral, InformationRecord, OutboxMessage, IdempotentRequest)
#: The identifiers a lookup names: none may reach a log line, an audit row or a URL.
IDENTIFIERS = (PNC, CRN, VISOR)


def _with_visor() -> dict[str, Any]:
    return {**referral()["subject"], "visor_ref": VISOR}


async def _counts(world: World) -> dict[str, int]:
    return {model.__tablename__: await world.count(model) for model in CASE_TABLES}


def _without_request_id(content: bytes) -> dict[str, Any]:
    body = json.loads(content)
    assert body.pop("request_id")
    return dict(body)


def _audit_text(entry: AuditEntry) -> str:
    return repr({c.name: getattr(entry, c.name) for c in AuditEntry.__table__.columns})


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("pnc", PNC),  # the PNC id the referral gave
        ("crn", CRN),  # the nDelius CRN
        ("visor", VISOR),  # the ViSOR reference
        ("pnc", PNC.lower()),  # identifiers are compared normalised (upper case)
    ],
)
async def test_lookup_answers_the_nominal_as_a_read_by_id_does(
    any_world: World, kind: str, value: str
) -> None:
    """Each identifier finds the nominal; the answer is the one GET by id gives; one
    consultation entry names the kind of identifier, with the rule and the answer's digest."""
    nominal_id = await at_level_2(any_world, subject=_with_visor())
    found = await any_world[PROBATION].post(LOOKUP, {kind: value})
    assert found == await any_world[PROBATION].get(f"/v1/nominals/{nominal_id}")
    assert found["id"] == nominal_id and found["pnc_id"] == PNC
    [entry] = await any_world.audit(operation="consultation", agency_id=PROBATION)
    assert entry.outcome == "allowed"
    assert entry.nominal_ref == nominal_id
    assert entry.recipients == [PROBATION]
    assert entry.rule == "responsible-authority-of-area"
    assert entry.legal_basis == "CJA2003-s325-4" and entry.purpose == "risk-management"
    assert entry.detail["lookup"] == kind
    assert entry.payload_digest
    for needle in IDENTIFIERS:
        assert needle not in _audit_text(entry) and needle.lower() not in _audit_text(entry)


async def test_lookup_is_redacted_for_the_caller(world: World) -> None:
    """Children's services, at the level 2 meeting, find the nominal by its PNC id and see the
    care agencies' view: no PNC id, CRN or ViSOR reference comes back to them."""
    nominal_id = await at_level_2(world, subject=_with_visor())
    await level_2_meeting(world, nominal_id)
    found = await world[CS].post(LOOKUP, {"pnc": PNC})
    assert found["id"] == nominal_id
    assert not {"pnc_id", "crn", "visor_ref"} & set(found)
    [entry] = await world.audit(operation="consultation", agency_id=CS)
    assert {w["field"] for w in entry.withheld} >= {"pnc_id", "crn", "visor_ref"}


async def test_lookup_prefers_the_active_registration(world: World) -> None:
    """A subject deregistered and referred again has two nominals with one PNC id: the active
    one is found."""
    old = await at_level_2(world)
    await world[POLICE].post(f"/v1/nominals/{old}/deregistration", {"reason": "Order expired"})
    new = await at_level_2(world)
    assert new != old
    assert (await world[POLICE].post(LOOKUP, {"pnc": PNC}))["id"] == new


@pytest.mark.parametrize(
    "asker",
    [
        WILTS_POLICE,  # the Responsible Authority of another area
        HOUSING,  # a duty-to-co-operate agency with no involvement
    ],
)
async def test_lookup_without_need_to_know_is_the_404_of_an_unknown_identifier(
    any_world: World, asker: str
) -> None:
    """The same 404 bytes (bar the request id) and headers for a nominal the asker may not know
    of and an identifier nobody holds; nothing stored; the audit says which, without the
    identifier."""
    await at_level_2(any_world)
    before = await _counts(any_world)
    agent = any_world[asker]
    answers = []
    for body in ({"pnc": PNC}, {"pnc": "2001/0000001Z"}, {"crn": CRN}, {"visor": "VR-0000000"}):
        response = await agent.raw("POST", LOOKUP, content=await agent.client.seal(body))
        assert response.status_code == 404, body
        answers.append(response)
    bodies = [_without_request_id(r.content) for r in answers]
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0] == {
        "type": "https://mappa-gateway.invalid/problems/not_found",
        "title": "No such resource",
        "status": 404,
        "code": "not_found",
    }
    strip = re.compile(rb'"request_id":"[^"]*"')
    assert len({strip.sub(b"", r.content) for r in answers}) == 1
    skip = {"x-request-id", "content-length", "date"}
    headers = [{k: v for k, v in r.headers.items() if k not in skip} for r in answers]
    assert all(h == headers[0] for h in headers)
    assert await _counts(any_world) == before
    refusals = await any_world.audit(agency_id=asker, outcome="refused")
    assert len(refusals) == 4
    assert [e.operation for e in refusals] == ["consultation"] * 4
    assert refusals[1].rule == refusals[3].rule == "resource-exists"
    assert refusals[0].rule != "resource-exists" and refusals[0].nominal_ref is not None
    assert refusals[1].nominal_ref is None
    assert refusals[1].detail["why"] == "no such nominal with this pnc"
    for entry in refusals:
        for needle in IDENTIFIERS:
            assert needle not in _audit_text(entry)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"pnc": PNC, "crn": CRN}, ""),  # two identifiers: which one?
        ({"pnc": PNC, "crn": CRN, "visor": VISOR}, ""),  # three
        ({}, ""),  # none
        ({"pnc": None}, ""),  # none, spelled out
        ({"pnc": ""}, "pnc"),  # empty
        ({"pnc": "   "}, "pnc"),  # blank
        ({"pnc": "11/04 56123K"}, "pnc"),  # a space inside
        ({"pnc": "' OR 1=1 --"}, "pnc"),  # SQL
        ({"pnc": "../../etc/passwd%00"}, "pnc"),  # a path and a NUL escape
        ({"pnc": "X" * 41}, "pnc"),  # too long
        ({"pnc": 11045612}, "pnc"),  # a number, not text
        ({"pnc": [PNC]}, "pnc"),  # a list
        ({"name": "Ravenscroft"}, "name"),  # an unknown field: no search by name
        ({"nominal_id": "x", "pnc": PNC}, "nominal_id"),  # an unknown field beside one
    ],
)
async def test_bad_lookup_body_is_422_naming_the_place_and_stores_nothing(
    any_world: World, body: dict[str, Any], where: str
) -> None:
    """A lookup names exactly one well-formed identifier; anything else is 422, audited as a
    refused consultation, with no value echoed back or into the audit."""
    await at_level_2(any_world)
    before = await _counts(any_world)
    refused = await any_world[POLICE].refused("POST", LOOKUP, body)
    assert refused.status == 422, refused.problem
    assert refused.code == "validation_failed"
    if where:
        assert any(where in ".".join(e["loc"]) for e in refused.problem["errors"])
    assert PNC not in json.dumps(refused.problem) and "Ravenscroft" not in json.dumps(
        refused.problem
    )
    assert await _counts(any_world) == before
    [entry] = await any_world.audit(agency_id=POLICE, operation="consultation")
    assert (entry.outcome, entry.reason_code) == ("refused", "validation_failed")
    assert entry.nominal_ref is None
    assert PNC not in _audit_text(entry) and "Ravenscroft" not in _audit_text(entry)


async def test_lookup_in_clear_or_unsealed_is_refused(world: World) -> None:
    """Plain JSON is 415 and a body that is not a sealed JWE is one opaque 400: the identifier
    in clear is never searched for."""
    await at_level_2(world)
    before = await _counts(world)
    plain = await world[POLICE].raw(
        "POST", LOOKUP, content=json.dumps({"pnc": PNC}), content_type="application/json"
    )
    assert plain.status_code == 415 and plain.json()["code"] == "unsupported_media_type"
    garbage = await world[POLICE].raw("POST", LOOKUP, content=b"a.b.c.d.e")
    assert garbage.status_code == 400 and garbage.json()["code"] == "unreadable_body"
    # Sealed by police but sent as housing: signed by another agency.
    forged = await world[HOUSING].raw(
        "POST", LOOKUP, content=await world[POLICE].client.seal({"pnc": PNC})
    )
    assert forged.status_code == 400 and forged.json()["code"] == "unreadable_body"
    assert await world.audit(operation="consultation", outcome="allowed") == []
    assert await _counts(world) == before


async def test_lookup_needs_a_lawful_basis_and_the_read_scope(world: World) -> None:
    """A basis not on the register, or a token without case:read: 403 before any nominal is
    searched for; each refusal audited as a consultation, with no nominal named."""
    await at_level_2(world)
    unknown = world[POLICE].with_context("NO-SUCH-BASIS", "risk-management")
    refused = await world[POLICE].refused("POST", LOOKUP, {"pnc": PNC}, context=unknown)
    assert (refused.status, refused.code) == (403, "lawful_basis_refused")
    writer = await world.register(
        "barnet-police-writer", "police", "responsible_authority", scopes=["case:write"]
    )
    scope = await writer.refused("POST", LOOKUP, {"pnc": PNC})
    assert scope.status == 403
    entries = await world.audit(operation="consultation")
    assert [(e.agency_id, e.outcome) for e in entries] == [
        (POLICE, "refused"),
        ("barnet-police-writer", "refused"),
    ]
    assert entries[0].legal_basis == "NO-SUCH-BASIS" and entries[0].rule
    assert all(e.nominal_ref is None for e in entries)


async def test_lookup_needs_no_idempotency_key_and_repeats_as_a_read(world: World) -> None:
    """A lookup is a read: without an Idempotency-Key it answers; asked twice, it answers twice
    and is audited twice; no idempotency row is kept."""
    nominal_id = await at_level_2(world)
    police = world[POLICE]
    for _ in range(2):
        response = await police.raw(
            "POST", LOOKUP, content=await police.client.seal({"crn": CRN}), key=None
        )
        assert response.status_code == 200, response.text
        opened, _ = await police.client.open(response.text)
        assert opened.body["id"] == nominal_id
    assert len(await world.audit(operation="consultation", outcome="allowed")) == 2
    before = await world.count(IdempotentRequest)
    await police.post(LOOKUP, {"crn": CRN}, key="lookup-key-1")
    assert await world.count(IdempotentRequest) == before


async def test_no_identifier_reaches_the_logs_or_the_audit(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lookups that find, that are refused and that find nothing: no PNC id, CRN or ViSOR
    reference in the operational logs or any audit row (the URL never carries one)."""
    await at_level_2(world, subject=_with_visor())
    capsys.readouterr()
    await world[POLICE].post(LOOKUP, {"pnc": PNC})
    await world[PROBATION].post(LOOKUP, {"visor": VISOR})
    await world[HOUSING].refused("POST", LOOKUP, {"crn": CRN})
    await world[WILTS_POLICE].refused("POST", LOOKUP, {"pnc": PNC})
    await world[POLICE].refused("POST", LOOKUP, {"pnc": PNC, "crn": CRN})
    captured = capsys.readouterr()
    logs = captured.out + captured.err
    assert f'"route": "{LOOKUP}"' in logs  # the requests were logged, by route
    for needle in (*IDENTIFIERS, *SECRETS):
        assert needle not in logs, needle
    for entry in await world.audit():
        for needle in IDENTIFIERS:
            assert needle not in _audit_text(entry), (entry.id, needle)
