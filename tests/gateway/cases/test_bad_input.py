"""THREATS.md, "Bad input": every bad body is a 4xx problem and stores nothing."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import update

from gateway.store.models import (
    Action,
    AuditEntry,
    ContributorDecision,
    HazardFlag,
    IdempotentRequest,
    InformationRecord,
    Meeting,
    Nominal,
    OutboxMessage,
    Referral,
    WarningMarker,
)
from tests.gateway.cases.scenario import (
    CHILD_REF,
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

CASE_TABLES = (Nominal, Referral, InformationRecord, Meeting, OutboxMessage, IdempotentRequest)


async def _counts(world: World) -> dict[str, int]:
    return {model.__tablename__: await world.count(model) for model in CASE_TABLES}


def _subject(**changes: Any) -> dict[str, Any]:
    return {**referral()["subject"], **changes}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (referral(category=5), "category"),  # there is no category 5
        (referral(category="M5"), "category"),  # nor an nDelius M5
        (referral(category=True), "category"),  # a boolean is not a category
        (referral(kind="high_risk_information_sharing"), ""),  # a non-offender has no category
        (referral(kind="mappa", category=None), ""),  # a MAPPA referral names its category
        (referral(subject=_subject(date_of_birth="1979-02-30")), "date_of_birth"),  # no such day
        (referral(subject=_subject(date_of_birth="17/04/1979")), "date_of_birth"),  # not ISO
        (referral(subject=_subject(date_of_birth=293155200)), "date_of_birth"),  # a number
        (referral(subject=_subject(date_of_birth="2999-01-01")), ""),  # not yet born
        (referral(unexpected="x"), "unexpected"),  # unknown field
        (referral(subject=_subject(nickname="x")), "nickname"),  # unknown nested field
        (referral(risks=[]), "risks"),  # the risk matrix is not empty
        (referral(risks=[{"group": "children", "level": "extreme"}]), "level"),  # unknown level
        (referral(agencies_involved=["no-such-agency"]), "agencies_involved"),  # unknown agency
        # another area's agency: naming it would open the case to it (its involvement)
        (referral(agencies_involved=[WILTS_POLICE]), "agencies_involved"),
        (referral(lead_agency_id="barnet-housing"), "lead_agency_id"),  # housing cannot lead
        (referral(reasons=""), "reasons"),  # empty
    ],
)
async def test_invalid_referral_is_422_and_stores_nothing(
    any_world: World, body: dict[str, Any], where: str
) -> None:
    """Wrong values, types, dates and fields answer 422 naming the place; no row is added."""
    world = any_world
    before = await _counts(world)
    refused = await world[POLICE].refused("POST", "/v1/referrals", body)
    assert refused.status == 422, refused.problem
    assert refused.code == "validation_failed"
    if where:
        assert any(where in ".".join(e["loc"]) for e in refused.problem["errors"]), refused.problem
    assert await _counts(world) == before
    entry = (await world.audit(agency_id=POLICE, outcome="refused"))[-1]
    assert entry.reason_code == "validation_failed"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("level", {"level": 0, "reason": "x"}),  # level 0 does not exist
        ("level", {"level": 4, "reason": "x"}),  # nor level 4
        ("level", {"level": "M0", "reason": "x"}),
        ("level", {"level": 2}),  # a change gives its reason
        ("category", {"category": 5, "reason": "x"}),
        ("screening", {"outcome": "level_4", "reasons": "x"}),
    ],
)
async def test_invalid_nominal_change_is_422_and_changes_nothing(
    any_world: World, path: str, body: dict[str, Any]
) -> None:
    world = any_world
    nominal_id = await at_level_2(world)
    before = await world[POLICE].get(f"/v1/nominals/{nominal_id}")
    refused = await world[POLICE].refused("POST", f"/v1/nominals/{nominal_id}/{path}", body)
    assert refused.status == 422
    assert await world[POLICE].get(f"/v1/nominals/{nominal_id}") == before


#: Dates at and beyond the calendar's ends, and far from any plausible case date.
HOSTILE_DATES = ["9999-12-31", "0001-01-01", "2200-01-01", "1800-01-01"]
DATED_TABLES = (*CASE_TABLES, Action, ContributorDecision, HazardFlag, WarningMarker)
SOON = (TODAY + dt.timedelta(days=30)).isoformat()


def _dated(field: str, nominal_id: str, meeting_id: str, day: str) -> tuple[str, dict[str, Any]]:
    """The write that carries ``field`` (one of each date of the contract), set to ``day``."""
    meeting: dict[str, Any] = {
        "nominal_id": nominal_id,
        "meeting_type": "level_2",
        "held_on": TODAY.isoformat(),
        "chair_officer": "DI-1",
        "participants": [{"agency_id": CS, "participation": "attended"}],
        "confidentiality_statement_signed": True,
    }
    action = {"owner_agency_id": CS, "description": "Check ICS", "due_date": SOON}
    decision = {
        "agency_id": VICTIM_SUPPORT,
        "purposes": ["risk-assessment"],
        "reason": "Holds the safety plan",
        "ends_on": SOON,
    }
    flag = {
        "nominal_id": nominal_id,
        "recipient_agency_id": CS,
        "child_or_family_ref": CHILD_REF,
        "relationship": "father",
        "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
    }
    marker = {
        "nominal_id": nominal_id,
        "recipient_agency_id": HOUSING,
        "uprn": "200004512345",
        "marker": "PWM",
        "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
        "review_date": SOON,
    }
    writes: dict[str, tuple[str, dict[str, Any]]] = {
        "held_on": ("/v1/meetings", meeting),
        "meeting.review_date": ("/v1/meetings", meeting),
        "due_date": (f"/v1/meetings/{meeting_id}/actions", action),
        "action.review_date": (f"/v1/meetings/{meeting_id}/actions", action),
        "ends_on": (f"/v1/nominals/{nominal_id}/contributors", decision),
        "decision.review_date": (f"/v1/nominals/{nominal_id}/contributors", decision),
        "flag.review_date": ("/v1/hazard-flags", flag),
        "marker.review_date": ("/v1/warning-markers", marker),
        "date_of_birth": ("/v1/referrals", referral()),
    }
    path, body = writes[field]
    name = field.rpartition(".")[2]
    if name == "date_of_birth":
        return path, {**body, "subject": _subject(date_of_birth=day)}
    return path, {**body, name: day}


@pytest.mark.parametrize("day", HOSTILE_DATES)
@pytest.mark.parametrize(
    "field",
    [
        "held_on",
        "meeting.review_date",
        "due_date",
        "action.review_date",
        "ends_on",
        "decision.review_date",
        "flag.review_date",
        "marker.review_date",
        "date_of_birth",
    ],
)
async def test_a_date_outside_its_window_is_422_and_stores_nothing(
    any_world: World, field: str, day: str
) -> None:
    """A date at the calendar's ends (or far from any case) never reaches the store, where it
    would break every later need-to-know decision: 422 ``date_out_of_range`` naming the field."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    path, body = _dated(field, nominal_id, meeting_id, day)
    before = {model.__tablename__: await world.count(model) for model in DATED_TABLES}
    refused = await world[POLICE].refused("POST", path, body)
    assert refused.status == 422, refused.problem
    assert refused.code == "validation_failed"
    name = field.rpartition(".")[2]
    loc = ["subject", name] if name == "date_of_birth" else [name]
    assert refused.problem["errors"] == [{"loc": loc, "type": "date_out_of_range"}], refused.problem
    assert {model.__tablename__: await world.count(model) for model in DATED_TABLES} == before


@pytest.mark.parametrize("length", [65, 200])
async def test_a_chair_officer_longer_than_an_officer_id_is_422_and_stores_nothing(
    any_world: World, length: int
) -> None:
    """A meeting's chair_officer is kept in clear, in a column as wide as every officer id (64,
    as MAPPA-Officer). A longer one passed the contract (one line of up to 200): SQLite, which
    ignores a column's width, stored it whole, and PostgreSQL refused it, a 500 with nothing
    audited. It is 422 naming the field on both backends, audited; 64 characters are kept."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting = {
        "nominal_id": nominal_id,
        "meeting_type": "level_2",
        "held_on": TODAY.isoformat(),
        "chair_officer": "D" * length,
        "participants": [{"agency_id": CS, "participation": "attended"}],
        "confidentiality_statement_signed": True,
    }
    before = await _counts(world)
    refused = await world[POLICE].refused("POST", "/v1/meetings", meeting)
    assert refused.status == 422, refused.problem
    assert refused.code == "validation_failed"
    assert refused.problem["errors"] == [{"loc": ["chair_officer"], "type": "string_too_long"}]
    assert await _counts(world) == before
    entry = (await world.audit(agency_id=POLICE, outcome="refused"))[-1]
    assert entry.reason_code == "validation_failed"
    created = await world[POLICE].post("/v1/meetings", {**meeting, "chair_officer": "D" * 64})
    async with world.state.db.read() as session:
        stored = await session.get(Meeting, created["id"])
        assert stored is not None and stored.chair_officer == "D" * 64


async def test_a_meeting_already_stored_at_the_end_of_the_calendar_breaks_no_decision(
    any_world: World,
) -> None:
    """A meeting held on 31 December 9999 with no review date (stored before the bounds, or by
    any other path) is simply not over: reads and level changes answer, none is a 500."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id, {CS: "attended"})
    async with world.state.db.write() as session:
        await session.execute(
            update(Meeting)
            .where(Meeting.id == meeting_id)
            .values(held_on=dt.date.max, review_date=None)
        )
    assert (await world[CS].get(f"/v1/nominals/{nominal_id}"))["id"] == nominal_id
    changed = await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/level", {"level": 3, "reason": "x"}
    )
    assert changed["level"] == 3
    # the level changed since the meeting: its involvement has ended (a refusal, not a crash)
    assert (await world[CS].refused("GET", f"/v1/nominals/{nominal_id}")).status == 404


async def test_plain_json_case_data_is_415(any_world: World) -> None:
    """Case data in clear is refused as an unsupported media type; nothing stored."""
    world = any_world
    before = await _counts(world)
    response = await world[POLICE].raw(
        "POST", "/v1/referrals", content=json.dumps(referral()), content_type="application/json"
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert await _counts(world) == before


@pytest.mark.parametrize(
    "content",
    [
        "not a jwe",  # not compact JOSE at all
        "a.b.c.d.e",  # five parts of nothing
        "eyJhbGciOiJub25lIn0..AAAA.AAAA.AAAA",  # alg none
        "\u00e9\u00e9",  # not ASCII
    ],
)
async def test_malformed_sealed_body_is_one_opaque_400(any_world: World, content: str) -> None:
    world = any_world
    before = await _counts(world)
    response = await world[POLICE].raw("POST", "/v1/referrals", content=content.encode())
    assert response.status_code == 400
    assert response.json()["code"] == "unreadable_body"
    assert "detail" not in response.json()
    assert await _counts(world) == before


async def test_sealed_body_that_is_not_json_or_hostile_json_is_refused(any_world: World) -> None:
    """Inside a valid seal: deep nesting, NaN or a non-object body: 4xx, nothing stored."""
    world = any_world
    before = await _counts(world)
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    for body in ({"a": deep}, {"x": 1}):
        refused = await world[POLICE].refused("POST", "/v1/referrals", body)
        assert 400 <= refused.status < 500
    assert await _counts(world) == before


@pytest.mark.parametrize("key", [None, "", "has space", "x" * 129, "semi;colon"])
async def test_write_without_a_well_formed_idempotency_key_is_400(
    any_world: World, key: str | None
) -> None:
    world = any_world
    sealed = await world[POLICE].client.seal(referral())
    before = await _counts(world)
    headers = {} if key is None else {"Idempotency-Key": key}
    response = await world[POLICE].raw(
        "POST", "/v1/referrals", content=sealed, key=None, headers=headers
    )
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_missing"
    assert await _counts(world) == before


def _cursor(moment: str, row_id: str = "00000000-0000-4000-8000-000000000000") -> str:
    """A forged cursor: base64url of [moment, row id], as the gateway makes them."""
    raw = json.dumps([moment, row_id]).encode()
    return "?cursor=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "query",
    [
        "?limit=0",
        "?limit=101",
        "?limit=ten",
        "?cursor=%%%",
        "?cursor=eyJ4IjoxfQ",
        "?sort=name",
        # a time that is in the calendar, but whose UTC is not (was a 500 on every backend)
        pytest.param(_cursor("0001-01-01T00:00:00+01:00"), id="cursor-before-year-1-in-utc"),
        pytest.param(_cursor("9999-12-31T23:59:59-01:00"), id="cursor-after-9999-in-utc"),
        # an id PostgreSQL cannot hold (was a 500 there on the inbox), or not an id at all
        pytest.param(_cursor("2026-11-23T09:00:00+00:00", "a\u0000b"), id="cursor-id-with-nul"),
        pytest.param(
            _cursor("2026-11-23T09:00:00+00:00", "00000000-0000-4000-8000-000000000000\n"),
            id="cursor-id-with-a-trailing-newline",
        ),
        pytest.param(_cursor("2026-11-23T09:00:00+00:00", "x" * 36), id="cursor-id-not-an-id"),
    ],
)
async def test_bad_paging_parameters_are_400(any_world: World, query: str) -> None:
    """Unknown parameters, limits out of range and forged cursors: 400 invalid_parameter, on
    the records, the level 1 list and the inbox (one cursor for all three)."""
    world = any_world
    nominal_id = await at_level_2(world)
    for path in (f"/v1/nominals/{nominal_id}/records", "/v1/level-1-list"):
        headers = await world[POLICE].headers("GET", path)
        response = await world.http.get(path + query, headers=headers)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["code"] == "invalid_parameter"
    if "limit=" in query or "sort=" in query:
        return  # the inbox's own limit parameter is FastAPI's (422); its cursor is the same
    puller = await world.register(
        "barnet-puller", "housing", "duty_to_cooperate", scopes=["inbox:read"]
    )
    headers = await puller.headers("GET", "/v1/inbox")
    before = await world.count(AuditEntry)
    response = await world.http.get("/v1/inbox" + query, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_parameter"
    assert await world.count(AuditEntry) == before  # refused before any disclosure was recorded


async def test_a_record_citing_an_unlisted_source_is_422(any_world: World) -> None:
    """Every cited source is listed, so redaction can never miss one."""
    world = any_world
    nominal_id = await at_level_2(world)
    refused = await world[PROBATION].refused(
        "POST",
        f"/v1/nominals/{nominal_id}/records",
        {
            "kind": "case_note",
            "summary": "s",
            "content": [{"id": "c1", "text": "t", "source": "x"}],
        },
    )
    assert refused.status == 422
    # A neighbour is a third party, whatever the sender says.
    refused = await world[PROBATION].refused(
        "POST",
        f"/v1/nominals/{nominal_id}/records",
        {
            "kind": "case_note",
            "summary": "s",
            "sources": [{"id": "n", "kind": "neighbour", "description": "d", "third_party": False}],
        },
    )
    assert refused.status == 422
    assert await world.count(InformationRecord) == 0


async def test_worker_survives_bad_input(any_world: World) -> None:
    """After all that, a good request still works."""
    world = any_world
    await world[HOUSING].refused("POST", "/v1/referrals", {"kind": "mappa"})
    assert (await world[POLICE].post("/v1/referrals", referral()))["status"] == "received"
    assert await world.count(AuditEntry) > 0
