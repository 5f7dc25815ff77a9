"""Text PostgreSQL cannot store: NUL (and the other C0 control characters) from a partner.

PostgreSQL's ``text`` refuses U+0000 outright, where SQLite stores it: before these tests, a NUL
in a path id or a clear column was a 500 on the production backend with no audited refusal, and
a quiet success on SQLite. So every test here runs on both (``any_world``).

- A path id that is not a gateway id (NUL, a newline after a real id, 300 characters, an
  overlong encoding, upper case) is the same opaque 404 as an id that does not exist, on every
  route that takes one; the refusal is audited, naming no nominal (only a well-formed id is
  ever recorded), and nothing is stored.
- Free text in a sealed body refuses C0 control characters at the contract (422
  ``validation_failed``, error type ``control_character``): one-line fields any of them, text of
  several lines all but tab, LF and CR. The refusal is audited; nothing is stored.
- Context headers with control characters are refused at the edge (400 ``bad_header``).
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

import gateway.contract as contract_package
from gateway.contract import (
    contributors,
    disclosures,
    hazard_flags,
    markers,
    meetings,
    nominals,
    records,
    referrals,
    sources,
)
from gateway.store.models import AuditEntry, Base, IdempotentRequest
from tests.gateway.cases.scenario import (
    CS,
    POLICE,
    PROBATION,
    VICTIM_SUPPORT,
    at_level_2,
    level_2_meeting,
    minutes,
    record,
    referral,
)
from tests.gateway.cases.support import TODAY, World

#: What a refused call may add: its audit entry, and the proof it spent.
_BOOKKEEPING = {"audit_entries", "used_jtis", "issued_tokens", "audit_checkpoints"}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def _stored(world: World) -> dict[str, int]:
    """Rows in every table but the audit log and the replay store."""
    tables = [t for name, t in Base.metadata.tables.items() if name not in _BOOKKEEPING]
    return {table.name: await world.count(table) for table in tables}


async def _rows(world: World) -> dict[str, int]:
    """Rows in every table, the audit log and the replay store included."""
    return {name: await world.count(table) for name, table in Base.metadata.tables.items()}


async def _last_entry(world: World) -> AuditEntry:
    return (await world.audit())[-1]


def _no_control_text(entry: AuditEntry) -> None:
    """No text column of the entry holds a control character (its JSON detail may)."""
    for name in ("agency_id", "officer_id", "nominal_ref", "legal_basis", "purpose", "rule"):
        value = getattr(entry, name)
        assert value is None or not re.search(r"[\x00-\x1f]", value), (name, value)


# -- path ids ---------------------------------------------------------------------------------

#: Ids as they go in the path (percent-encoded): none is a gateway id.
HOSTILE_IDS = {
    "nul": "a%00b",
    "nul_alone": "%00",
    "nul_after_an_id": "{real}%00",
    "newline_after_an_id": "{real}%0A",
    "long": "x" * 300,
    "overlong_slash": "%C0%AF",
    "upper_case": "{REAL}",
}

#: (agent, method, path, body): ``{id}`` is replaced by the hostile id, ``{nominal}`` and
#: ``{meeting}`` by real ones. Each route that takes an id from its path, reads and writes.
PATH_ROUTES: dict[str, tuple[str, str, str, dict[str, Any] | None]] = {
    "nominal": (POLICE, "GET", "/v1/nominals/{id}", None),
    "records": (POLICE, "GET", "/v1/nominals/{id}/records", None),
    "record_of_nominal": (POLICE, "GET", "/v1/nominals/{id}/records/{any}", None),
    "record": (POLICE, "GET", "/v1/nominals/{nominal}/records/{id}", None),
    "minutes": (POLICE, "GET", "/v1/meetings/{id}/minutes", None),
    "reports": (POLICE, "GET", "/v1/meetings/{id}/reports", None),
    "hazard_flag": (POLICE, "GET", "/v1/hazard-flags/{id}", None),
    "warning_markers": (POLICE, "GET", "/v1/nominals/{id}/warning-markers", None),
    "contributors": (POLICE, "GET", "/v1/nominals/{id}/contributors", None),
    "level": (POLICE, "POST", "/v1/nominals/{id}/level", {"level": 3, "reason": "Escalating"}),
    "record_write": (PROBATION, "POST", "/v1/nominals/{id}/records", record()),
    "participants": (
        POLICE,
        "POST",
        "/v1/meetings/{id}/participants",
        {"participants": [{"agency_id": CS, "participation": "attended"}]},
    ),
    "minutes_write": (POLICE, "POST", "/v1/meetings/{id}/minutes", minutes()),
    "meeting_closure": (
        POLICE,
        "POST",
        "/v1/meetings/{id}/closure",
        {"reason": "Moved out of the area"},
    ),
    "action": (
        POLICE,
        "POST",
        "/v1/meetings/{id}/actions",
        {
            "owner_agency_id": CS,
            "description": "Check ICS",
            "due_date": (TODAY + dt.timedelta(days=14)).isoformat(),
        },
    ),
    "action_status": (POLICE, "POST", "/v1/actions/{id}/status", {"status": "in_progress"}),
    "disclosure_decision": (
        POLICE,
        "POST",
        "/v1/disclosures/{id}/decision",
        {"decision": "refuse", "reason": "Not necessary"},
    ),
    "marker_revocation": (
        POLICE,
        "POST",
        "/v1/warning-markers/{id}/revocation",
        {"reason": "review_completed"},
    ),
    "contributor_revocation": (
        POLICE,
        "POST",
        "/v1/nominals/{nominal}/contributors/{id}/revocation",
        {"reason": "No longer needed"},
    ),
}


async def _call(
    world: World, agent: str, method: str, path: str, body: dict[str, Any] | None
) -> Any:
    sealed = await world[agent].client.seal(body) if body is not None else None
    return await world[agent].raw(method, path, content=sealed, key=str(uuid.uuid4()))


def _without_request_id(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k != "request_id"}


@pytest.mark.parametrize("route", list(PATH_ROUTES))
async def test_a_path_id_that_is_not_a_gateway_id_is_the_opaque_404_and_audited(
    any_world: World, route: str
) -> None:
    """NUL, a newline after a real id, an overlong or upper-case id: each answers exactly as an
    id that does not exist (a 404 that says nothing more), audited as such; nothing stored."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    agent, method, template, body = PATH_ROUTES[route]

    def path(target: str) -> str:
        return template.format(
            id=target, nominal=nominal_id, meeting=meeting_id, any=str(uuid.uuid4())
        )

    absent = await _call(world, agent, method, path(str(uuid.uuid4())), body)
    assert absent.status_code == 404, absent.text
    for name, hostile in HOSTILE_IDS.items():
        target = hostile.format(real=nominal_id, REAL=nominal_id.upper())
        before = await _stored(world)
        entries = len(await world.audit())
        response = await _call(world, agent, method, path(target), body)
        assert response.status_code == 404, (name, response.text)
        assert response.headers["content-type"] == absent.headers["content-type"]
        assert _without_request_id(response.json()) == _without_request_id(absent.json()), name
        assert await _stored(world) == before, name
        audited = await world.audit()
        assert len(audited) == entries + 1, name
        entry = audited[-1]
        assert entry.outcome == "refused" and entry.reason_code == "not_found", name
        assert entry.request_id == response.headers["x-request-id"]
        assert entry.agency_id == agent
        # a nominal is named only by a well-formed id (here, one from the path or the store)
        assert entry.nominal_ref is None or _UUID.fullmatch(entry.nominal_ref), entry.nominal_ref
        if template.startswith("/v1/nominals/{id}"):
            assert entry.nominal_ref is None, (name, entry.nominal_ref)
        _no_control_text(entry)
    # the worker is fine: a good call still answers
    assert (await world[POLICE].get(f"/v1/nominals/{nominal_id}"))["id"] == nominal_id


async def test_an_origin_evidence_id_that_is_no_entry_id_is_404_and_audited(
    any_world: World,
) -> None:
    """The IG route that takes an audit entry's id: NUL and the rest answer as an entry with no
    evidence, each refusal audited (its JSON detail keeps the id, escaped)."""
    world = any_world
    ig = await world.register(
        "barnet-mappa-ig",
        "mappa_coordination",
        "responsible_authority",
        scopes=["case:read", "audit:read"],
        officer="IG-7",
    )
    absent = await ig.raw("GET", f"/v1/audit/origin/{uuid.uuid4()}")
    assert absent.status_code == 404
    for name, hostile in HOSTILE_IDS.items():
        target = hostile.format(real=str(uuid.uuid4()), REAL=str(uuid.uuid4()).upper())
        response = await ig.raw("GET", f"/v1/audit/origin/{target}")
        assert response.status_code == 404, (name, response.text)
        assert _without_request_id(response.json()) == _without_request_id(absent.json())
        entry = await _last_entry(world)
        assert entry.outcome == "refused" and entry.rule == "origin-evidence-exists", name
        assert entry.request_id == response.headers["x-request-id"]
        _no_control_text(entry)


# -- free text in sealed bodies ---------------------------------------------------------------

#: Control characters refused in every free-text field (one line or several).
REFUSED_EVERYWHERE = ["a\x00b", "\x00", "a\x07b", "a\x1b[31mb", "a\x0bb", "a\x0cb", "a\x1fb"]
#: Refused in a one-line field, accepted in text of several lines.
LINE_BREAKS = ["a\nb", "a\r\nb", "a\tb"]


def _writes(nominal_id: str, meeting_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """A valid body for each write with free text, by a name, and its path."""
    soon = (TODAY + dt.timedelta(days=30)).isoformat()
    return {
        "referral": (
            "/v1/referrals",
            referral(subject={**referral()["subject"], "aliases": ["D"]}),
        ),
        "meeting": (
            "/v1/meetings",
            {
                "nominal_id": nominal_id,
                "meeting_type": "level_2",
                "held_on": TODAY.isoformat(),
                "chair_officer": "DI-1",
                "participants": [{"agency_id": CS, "participation": "attended"}],
                "confidentiality_statement_signed": True,
            },
        ),
        "level": (f"/v1/nominals/{nominal_id}/level", {"level": 3, "reason": "Escalating"}),
        "category": (
            f"/v1/nominals/{nominal_id}/category",
            {"category": 3, "reason": "Reassessed"},
        ),
        "screening": (
            f"/v1/nominals/{nominal_id}/screening",
            {"outcome": "level_3", "reasons": "Escalating"},
        ),
        "deregistration": (
            f"/v1/nominals/{nominal_id}/deregistration",
            {"reason": "Registration period ended"},
        ),
        "record": (
            f"/v1/nominals/{nominal_id}/records",
            record(offence="Harassment", sentence="12 months", address="1 Road", tenancy="Council"),
        ),
        "minutes": (f"/v1/meetings/{meeting_id}/minutes", minutes()),
        "closure": (f"/v1/meetings/{meeting_id}/closure", {"reason": "Moved out of the area"}),
        "action": (
            f"/v1/meetings/{meeting_id}/actions",
            {"owner_agency_id": CS, "description": "Check ICS", "due_date": soon},
        ),
        "action_status": (
            f"/v1/actions/{uuid.uuid4()}/status",
            {"status": "in_progress", "note": "Started"},
        ),
        "disclosure": (
            "/v1/disclosures",
            {
                "meeting_id": meeting_id,
                "recipient_agency_id": CS,
                "purpose": "child-protection",
                "parts": ["conclusions"],
                "recipient_description": "Child protection conference chair",
                "reasons": "Section 47 enquiry",
            },
        ),
        "decision": (
            f"/v1/disclosures/{uuid.uuid4()}/decision",
            {"decision": "refuse", "reason": "Not necessary"},
        ),
        "contributor": (
            f"/v1/nominals/{nominal_id}/contributors",
            {
                "agency_id": VICTIM_SUPPORT,
                "purposes": ["risk-assessment"],
                "reason": "Holds the safety plan",
                "ends_on": soon,
            },
        ),
        "contributor_revocation": (
            f"/v1/nominals/{nominal_id}/contributors/{uuid.uuid4()}/revocation",
            {"reason": "No longer needed"},
        ),
    }


#: Each free-text field of each write: (write, path into the body, whether it is one line).
#: (A path item that is an int indexes a list.)
TEXT_FIELDS: list[tuple[str, tuple[str | int, ...], bool]] = [
    ("referral", ("subject", "family_name"), True),
    ("referral", ("subject", "given_names"), True),
    ("referral", ("subject", "aliases", 0), True),
    ("referral", ("subject", "address"), False),
    ("referral", ("reasons",), False),
    ("referral", ("referrer_name",), True),
    ("referral", ("referrer_contact",), True),
    ("meeting", ("chair_officer",), True),
    ("level", ("reason",), False),
    ("category", ("reason",), False),
    ("screening", ("reasons",), False),
    ("deregistration", ("reason",), False),
    ("record", ("summary",), False),
    ("record", ("offence",), False),
    ("record", ("sentence",), False),
    ("record", ("address",), False),
    ("record", ("tenancy",), False),
    ("record", ("content", 0, "text"), False),
    ("record", ("sources", 0, "description"), False),
    ("minutes", ("discussion", 0, "text"), False),
    ("minutes", ("conclusions", 0, "text"), False),
    ("minutes", ("sources", 0, "description"), False),
    ("minutes", ("risk_management_plan",), False),
    ("closure", ("reason",), False),
    ("action", ("description",), False),
    ("action_status", ("note",), False),
    ("disclosure", ("recipient_description",), False),
    ("disclosure", ("reasons",), False),
    ("decision", ("reason",), False),
    ("contributor", ("reason",), False),
    ("contributor_revocation", ("reason",), False),
]
# A hazard flag's and a warning marker's contact and reference are not free text (a role with a
# number or an address; a reference): tests/gateway/cases/test_flag_values_hostile.py refuses
# control characters in them with the rest of its hostile table.
WRITES = sorted({write for write, _, _ in TEXT_FIELDS})


def _with(body: Any, where: tuple[str | int, ...], value: str) -> Any:
    """A copy of ``body`` with ``value`` at ``where``."""
    if not where:
        return value
    head, rest = where[0], where[1:]
    if isinstance(body, list):
        assert isinstance(head, int)
        return [_with(item, rest, value) if i == head else item for i, item in enumerate(body)]
    return {**body, str(head): _with(body[str(head)], rest, value)}


def _error_types(problem: dict[str, Any], where: tuple[str | int, ...]) -> set[str]:
    loc = [str(part) for part in where]
    return {error["type"] for error in problem.get("errors", []) if error["loc"] == loc}


@pytest.mark.parametrize("write", WRITES)
async def test_control_characters_in_free_text_are_422_audited_and_store_nothing(
    any_world: World, write: str
) -> None:
    """NUL and the other C0 controls in any free-text field of the write: 422 naming the field
    (``control_character``, or ``value_error`` from a field's own check), and per
    refused request exactly one audit entry added, its refusal with the same error; the only
    other row added in any table is the request's spent DPoP proof, on either backend."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    path, body = _writes(nominal_id, meeting_id)[write]
    await world[POLICE].client.token()  # its issue is audited: before the first count
    for _, where, one_line in (f for f in TEXT_FIELDS if f[0] == write):
        for value in REFUSED_EVERYWHERE + (LINE_BREAKS if one_line else []):
            before = await _rows(world)
            seen = {entry.id for entry in await world.audit()}
            refused = await world[POLICE].refused("POST", path, _with(body, where, value))
            assert refused.status == 422, (where, repr(value), refused.problem)
            assert refused.code == "validation_failed"
            types = _error_types(refused.problem, where)
            assert types & {"control_character", "value_error"}, (where, refused.problem)
            assert value not in str(refused.problem)  # the input is never echoed
            added = [entry for entry in await world.audit() if entry.id not in seen]
            assert len(added) == 1, (where, repr(value), [e.reason_code for e in added])
            [entry] = added
            assert entry.request_id == refused.problem["request_id"]
            assert entry.outcome == "refused" and entry.reason_code == "validation_failed"
            assert entry.agency_id == POLICE
            assert {"loc": [str(p) for p in where], "type": types.pop()} in entry.detail["errors"]
            _no_control_text(entry)
            grown = {"audit_entries": 1, "used_jtis": 1}
            after = await _rows(world)
            assert after == {name: n + grown.get(name, 0) for name, n in before.items()}, (
                where,
                repr(value),
                {name: after[name] - n for name, n in before.items() if after[name] != n},
            )


async def test_text_of_several_lines_keeps_its_tabs_and_line_breaks(any_world: World) -> None:
    """Tab, LF and CR LF are text in a summary, a reason or an address: stored and read back
    unchanged on both backends (only a one-line field refuses them)."""
    world = any_world
    nominal_id = await at_level_2(world)
    text = "First line\r\nSecond line\n\tindented"
    written = await world[PROBATION].post(
        f"/v1/nominals/{nominal_id}/records", record(summary=text, address="1 Road\nLondon")
    )
    read = await world[PROBATION].get(f"/v1/nominals/{nominal_id}/records/{written['id']}")
    assert read["summary"] == text
    assert read["address"] == "1 Road\nLondon"
    changed = await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/level", {"level": 3, "reason": "One\nTwo\tthree"}
    )
    assert changed["level"] == 3


async def test_a_nul_where_the_probe_found_a_500_is_now_422(any_world: World) -> None:
    """The review's probe: a meeting whose chair_officer holds a NUL was a 500 on PostgreSQL
    (and stored on SQLite). Now 422 on both, no meeting stored, the refusal audited."""
    world = any_world
    nominal_id = await at_level_2(world)
    path, body = _writes(nominal_id, "")["meeting"]
    before = await _stored(world)
    refused = await world[POLICE].refused("POST", path, {**body, "chair_officer": "DI\x00X"})
    assert refused.status == 422
    assert refused.problem["errors"] == [{"loc": ["chair_officer"], "type": "control_character"}]
    assert await _stored(world) == before
    assert await world.count(IdempotentRequest) == before["idempotency_keys"]
    assert (await _last_entry(world)).reason_code == "validation_failed"


# -- context headers --------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["MAPPA-Officer", "MAPPA-Legal-Basis", "MAPPA-Purpose"])
@pytest.mark.parametrize("value", ["OFF\x00-1", "OFF-1\n", "OFF\x1b-1"])
async def test_context_header_with_control_characters_is_400_at_the_edge(
    any_world: World, header: str, value: str
) -> None:
    """A context header (it becomes an audit column) with a NUL, a trailing newline or an
    escape never reaches a route: 400 ``bad_header``, nothing stored."""
    world = any_world
    nominal_id = await at_level_2(world)
    before = await _stored(world)
    response = await world[POLICE].raw("GET", f"/v1/nominals/{nominal_id}", headers={header: value})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "bad_header"
    assert await _stored(world) == before
    for entry in await world.audit():
        _no_control_text(entry)


# -- every inbound model, field by field (no database) ------------------------------------------

_MODULES = (
    contributors,
    disclosures,
    hazard_flags,
    markers,
    meetings,
    nominals,
    records,
    referrals,
    sources,
)


def _inbound_models() -> list[type[BaseModel]]:
    """Every model a partner sends (strict: whitespace stripped, unknown fields refused)."""
    found: dict[str, type[BaseModel]] = {}
    for module in (*_MODULES, contract_package):
        for name, value in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(value, BaseModel)
                and value.model_config.get("str_strip_whitespace")
                and value.model_config.get("extra") == "forbid"
            ):
                found[name] = value
    return [found[name] for name in sorted(found)]


def _free_text(schema: dict[str, Any]) -> bool:
    """A string schema with no pattern, enumeration or format: text a person types."""
    options = schema.get("anyOf", [schema])
    for option in options:
        item = option.get("items", option) if option.get("type") == "array" else option
        if item.get("type") == "string" and not {"pattern", "enum", "format", "const"} & set(item):
            return True
    return False


FREE_TEXT = [
    (model, name, schema.get("type") == "array")
    for model in _inbound_models()
    for name, schema in model.model_json_schema()["properties"].items()
    if _free_text(schema)
]


def test_the_contract_has_the_free_text_fields_this_file_sends() -> None:
    """Every free-text field found in the inbound models is one the HTTP test above sends
    (a new field joins it, or this fails)."""
    sent = {where[-1] if isinstance(where[-1], str) else where[-2] for _, where, _ in TEXT_FIELDS}
    found = {name for _, name, _ in FREE_TEXT}
    assert found, "no free-text field found: the schema walk is broken"
    assert found - {"relationship"} <= sent, found - sent  # relationship: a vocabulary


@pytest.mark.parametrize(
    ("model", "name", "many"),
    FREE_TEXT,
    ids=[f"{model.__name__}.{name}" for model, name, _ in FREE_TEXT],
)
@pytest.mark.parametrize("value", ["a\x00b", "\x00", "a\x1bb", "a\x08b", "\ud800"])
def test_every_free_text_field_of_the_contract_refuses_control_characters(
    model: type[BaseModel], name: str, many: bool, value: str
) -> None:
    """Checked at the field, whatever the rest of the body: NUL, an escape, a backspace and a
    lone surrogate (no store can encode one) are each an error of that field."""
    errors: list[Any] = []
    try:
        model.model_validate({name: [value] if many else value})
    except Exception as exc:  # pydantic.ValidationError
        errors = exc.errors()  # type: ignore[attr-defined]
    mine = [e for e in errors if e["loc"][0] == name and e["type"] != "missing"]
    assert mine, (model.__name__, name, errors)
    assert {e["type"] for e in mine} <= {"control_character", "value_error", "string_unicode"}
