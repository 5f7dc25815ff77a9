"""IG officers read the audit entries of their review scope only, on SQLite and PostgreSQL.

Two areas, Barnet (A) and Wiltshire (B), each with a police force and a nominal. A Barnet officer
reads Barnet's entries (made by its agencies, or about its nominals) in every console view and
through the audit API with the console session; of Wiltshire's own entries nothing: not an id,
not the nominal, not a request id or a reason, not a count, not through a cursor, and an entry's
page, proof or evidence answers as an entry that does not exist. A national officer reads both;
an officer with no scope reads nothing and is told so.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from gateway.audit.scoped import SCOPED_FORMAT
from gateway.audit.search import encode_cursor
from gateway.console.accounts import add_officer, officer_by_id, set_scope
from gateway.console.exports import NO_REVIEW_SCOPE, PACK_RULE
from gateway.console.scope import NO_SCOPE, ReviewScope
from gateway.console.session import SESSION_COOKIE, open_session
from gateway.domain import AgencyType, Role
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store.models import Agency, AuditEntry, Nominal
from tests.gateway.console.conftest import BASE, OFFICER, Log, settings_on

AREA_A, AREA_B = "barnet", "wiltshire"
POLICE_A, POLICE_B = "police-barnet", "police-wiltshire"
NOMINAL_A, NOMINAL_B = str(uuid.uuid4()), str(uuid.uuid4())
UNKNOWN_ID = "6f1d1a52-0b7e-4c2a-9d3e-2b8f1c0a7e55"
#: What only Wiltshire's own entries hold, besides their ids.
B_MARKS = (NOMINAL_B, "req-wilts-own", "req-wilts-refusal", "wilts_only_reason")


@pytest.fixture
def console_settings(database_url: str, console_keys: tuple[Path, Path]) -> Settings:
    return settings_on(database_url, console_keys)


@dataclass
class Areas:
    """The entries of the two areas, by what they are."""

    a_own: str  # Barnet police about the Barnet nominal
    a_refusal: str  # Barnet police refused, about the Barnet nominal
    cross: str  # Wiltshire police about the Barnet nominal: Barnet's too
    b_own: str  # Wiltshire police about the Wiltshire nominal
    b_refusal: str  # Wiltshire police refused, about the Wiltshire nominal
    no_area: str  # an administration entry: no agency, no nominal

    @property
    def of_a(self) -> list[str]:
        """Barnet's entries, newest first."""
        return [self.cross, self.a_refusal, self.a_own]

    @property
    def of_b(self) -> list[str]:
        return [self.b_refusal, self.b_own]

    def hidden_from_a(self) -> tuple[str, ...]:
        return (*self.of_b, *B_MARKS)


async def _event(state: GatewayState, **fields: object) -> str:
    event = AuditEvent.model_validate(
        {
            "operation": Operation.DISCLOSURE,
            "outcome": Outcome.ALLOWED,
            "legal_basis": "cja2003-s325",
            "purpose": "risk-management",
            "rule": "level2-attendee",
            **fields,
        }
    )
    async with state.db.write() as session:
        record(session, event)
    return event.entry_id


@pytest.fixture
async def areas(state: GatewayState, log: Log) -> Areas:
    """Barnet's and Wiltshire's agencies, nominals and entries, sequenced; then the officers:
    ig.barnet (Barnet), ig.none (no scope) beside the national ig.officer."""
    async with state.db.write() as session:
        for agency, area in ((POLICE_A, AREA_A), (POLICE_B, AREA_B)):
            session.add(
                Agency(
                    id=agency,
                    name=f"{area} police",
                    agency_type=AgencyType.POLICE,
                    role=Role.RESPONSIBLE_AUTHORITY,
                    area=area,
                )
            )
        await session.flush()
        for nominal, area, lead in ((NOMINAL_A, AREA_A, POLICE_A), (NOMINAL_B, AREA_B, POLICE_B)):
            session.add(
                Nominal(
                    id=nominal,
                    area=area,
                    category=2,
                    level=2,
                    lead_agency_id=lead,
                    details_sealed=b"sealed",
                )
            )
    refused = {"outcome": Outcome.REFUSED, "rule": "no-need-to-know"}
    made = Areas(
        a_own=await _event(state, agency_id=POLICE_A, nominal_ref=NOMINAL_A, request_id="r-a1"),
        a_refusal=await _event(
            state, agency_id=POLICE_A, nominal_ref=NOMINAL_A, request_id="r-a2", **refused
        ),
        b_own=await _event(
            state, agency_id=POLICE_B, nominal_ref=NOMINAL_B, request_id="req-wilts-own"
        ),
        b_refusal=await _event(
            state,
            agency_id=POLICE_B,
            nominal_ref=NOMINAL_B,
            request_id="req-wilts-refusal",
            reason_code="wilts_only_reason",
            **refused,
        ),
        cross=await _event(state, agency_id=POLICE_B, nominal_ref=NOMINAL_A, request_id="r-x"),
        no_area=await _event(state, operation=Operation.ADMINISTRATION, reason_code="agency_added"),
    )
    await log.sequence()
    async with state.db.write() as session:
        scope = ReviewScope(areas=(AREA_A,))
        await add_officer(session, "ig.barnet", "Barney", "a long passphrase 1", scope=scope)
        await add_officer(session, "ig.none", "Nobody Yet", "a long passphrase 2")
    return made


@pytest.fixture
async def open_as(
    console_app: FastAPI, state: GatewayState
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """A console client for each officer id asked for, signed in (a session of its own)."""
    clients: dict[str, httpx.AsyncClient] = {}
    transport = httpx.ASGITransport(app=console_app)
    try:
        for officer_id in (OFFICER, "ig.barnet", "ig.none"):
            async with state.db.read() as session:
                officer = await officer_by_id(session, officer_id)
            assert officer is not None
            token, _ = await open_session(state.db, officer, now=state.clock(), max_seconds=600)
            client = httpx.AsyncClient(
                transport=transport,
                base_url=BASE,
                headers={"Cookie": f"{SESSION_COOKIE}={token}"},
            )
            clients[officer_id] = client
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


def _without_request_id(response: httpx.Response) -> tuple[int, object]:
    body = response.json()
    body.pop("request_id", None)
    return response.status_code, body


def _shown(html: str) -> list[str]:
    """The entry ids a results page links to, in order."""
    return re.findall(r'href="/console/entries/([0-9a-f-]{36})"', html)


async def test_an_area_officer_searches_only_the_entries_of_their_area(
    areas: Areas, open_as: dict[str, httpx.AsyncClient]
) -> None:
    """Search, refusals, the htmx fragment and the API with the console session: Barnet's
    entries (its police's, and Wiltshire police's about its nominal), and of Wiltshire's own
    not one id, nominal, request id or reason; the count is Barnet's."""
    barnet = open_as["ig.barnet"]
    page = await barnet.get("/console/entries", params={"limit": "500"})
    assert page.status_code == 200
    assert [e for e in _shown(page.text) if e in (*areas.of_a, *areas.of_b)] == areas.of_a
    assert _shown(page.text) == areas.of_a  # nothing of no area either
    assert "3 entries shown." in page.text and "Scope: barnet" in page.text
    refusals = await barnet.get("/console/refusals")
    assert _shown(refusals.text) == [areas.a_refusal]
    fragment = await barnet.get("/console/entries", headers={"HX-Request": "true"})
    api = await barnet.get("/v1/audit/entries", params={"limit": "500"})
    assert [e["entry_id"] for e in api.json()["entries"]] == areas.of_a
    by_b_police = await barnet.get("/console/entries", params={"agency": POLICE_B})
    assert _shown(by_b_police.text) == [areas.cross]
    for body in (page.text, refusals.text, fragment.text, api.text, by_b_police.text):
        for hidden in areas.hidden_from_a():
            assert hidden not in body


async def test_a_search_by_another_area_s_nominal_reads_as_an_unknown_nominal(
    areas: Areas, open_as: dict[str, httpx.AsyncClient]
) -> None:
    """The results for Wiltshire's nominal are byte for byte those for an id that does not
    exist, in the console and in the API."""
    barnet = open_as["ig.barnet"]
    fragments = [
        await barnet.get(
            "/console/entries", params={"nominal": ref}, headers={"HX-Request": "true"}
        )
        for ref in (NOMINAL_B, UNKNOWN_ID)
    ]
    assert fragments[0].content == fragments[1].content
    assert "0 entries shown." in fragments[0].text
    answers = [
        await barnet.get("/v1/audit/entries", params={"nominal": ref})
        for ref in (NOMINAL_B, UNKNOWN_ID)
    ]
    assert answers[0].content == answers[1].content == b'{"entries":[],"next_cursor":null}'


@pytest.mark.parametrize(
    "path",
    [
        "/console/entries/{id}",
        "/v1/audit/proof/inclusion?entry_id={id}",
        "/v1/audit/origin/{id}",
    ],
)
async def test_another_area_s_entry_answers_as_an_entry_that_does_not_exist(
    areas: Areas, open_as: dict[str, httpx.AsyncClient], path: str
) -> None:
    """Its page, inclusion proof and evidence of origin: the status and problem of an unknown
    id, naming nothing of it; Barnet's own entry opens (its proof, its page)."""
    barnet = open_as["ig.barnet"]
    hidden = [await barnet.get(path.format(id=entry)) for entry in areas.of_b]
    unknown = await barnet.get(path.format(id=UNKNOWN_ID))
    assert unknown.status_code == 404
    for response in hidden:
        assert _without_request_id(response) == _without_request_id(unknown)
        for secret in areas.hidden_from_a():
            assert secret not in response.text
    if "origin" not in path:  # no write of these entries kept a signed JWS
        own = await barnet.get(path.format(id=areas.cross))
        assert own.status_code == 200 and areas.cross in own.text


async def test_an_area_officer_s_csv_holds_their_area_s_entries_only(
    areas: Areas, open_as: dict[str, httpx.AsyncClient], state: GatewayState
) -> None:
    """The CSV export is read through the same scope: Barnet's three rows, nothing of
    Wiltshire's; the export records the scope it covered."""
    response = await open_as["ig.barnet"].get("/console/export.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["entry_id"] for row in rows] == areas.of_a
    for hidden in areas.hidden_from_a():
        assert hidden not in response.text
    (export,) = await _console(state, "export_csv", "ig.barnet")
    assert export.detail["scope"] == {"areas": [AREA_A]}


async def test_the_verifiable_pack_is_of_the_officer_s_review_scope(
    areas: Areas, open_as: dict[str, httpx.AsyncClient], state: GatewayState
) -> None:
    """An area officer's pack (linked from its entries page) is the scoped pack of Barnet's
    entries with their proofs, nothing of Wiltshire's; an officer with no scope gets 403 (no
    entry in it, no link), audited with the rule and reason the audit API's refusal of the pack
    carries; the national officer gets the whole log."""
    barnet = open_as["ig.barnet"]
    scoped = await barnet.get("/console/export.jsonl")
    assert scoped.status_code == 200
    header, *lines, end = [json.loads(line) for line in scoped.text.splitlines()]
    assert end == {"end": {"entries": len(lines)}}
    assert header["format"] == SCOPED_FORMAT and header["areas"] == [AREA_A]
    assert sorted(line["entry"]["entry_id"] for line in lines) == sorted(areas.of_a)
    seqs = [line["entry"]["seq"] for line in lines]
    assert seqs == sorted(seqs)  # in log order (of_a is newest first, as a search)
    for hidden in areas.hidden_from_a():
        assert hidden not in scoped.text
    (export,) = await _console(state, "export_pack", "ig.barnet")
    assert export.outcome == "allowed" and export.detail["scope"] == {"areas": [AREA_A]}
    assert export.detail["format"] == SCOPED_FORMAT
    held = await barnet.get("/console/export.jsonl", params={"since": "1"})  # the form's query
    assert json.loads(held.text.splitlines()[0])["consistency"]["from_size"] == 1
    page = (await barnet.get("/console/entries")).text
    assert "/console/export.jsonl" in page and 'id="pack-since"' in page  # held to a checkpoint

    nobody = open_as["ig.none"]
    refused = await nobody.get("/console/export.jsonl")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    for entry in (*areas.of_a, *areas.of_b):
        assert entry not in refused.text
    (refusal,) = await _console(state, "export_pack", "ig.none")
    assert (refusal.outcome, refusal.rule, refusal.reason_code) == (
        "refused",
        PACK_RULE,
        NO_REVIEW_SCOPE,
    )
    assert "/console/export.jsonl" not in (await nobody.get("/console/entries")).text
    assert 'id="pack-since"' not in (await open_as[OFFICER].get("/console/entries")).text
    national = await open_as[OFFICER].get("/console/export.jsonl")
    assert national.status_code == 200
    for entry in (*areas.of_a, *areas.of_b):
        assert entry in national.text


async def test_paging_never_reaches_another_area_s_entries(
    areas: Areas, open_as: dict[str, httpx.AsyncClient], state: GatewayState
) -> None:
    """A page of one at a time walks Barnet's entries and ends; a cursor made by hand from
    just above a Wiltshire entry's row still finds Barnet's entries only."""
    barnet = open_as["ig.barnet"]
    seen: list[str] = []
    cursor = ""
    while True:
        page = (
            await barnet.get("/v1/audit/entries", params={"limit": "1", "cursor": cursor})
        ).json()
        seen += [e["entry_id"] for e in page["entries"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == areas.of_a
    async with state.db.read() as session:
        row_id = await session.scalar(
            select(AuditEntry.id).where(AuditEntry.entry_id == areas.b_refusal)
        )
    assert row_id is not None
    crafted = await barnet.get(
        "/console/entries", params={"cursor": encode_cursor(row_id + 1), "limit": "500"}
    )
    assert crafted.status_code == 200
    assert _shown(crafted.text) == [areas.a_refusal, areas.a_own]
    for hidden in areas.hidden_from_a():
        assert hidden not in crafted.text


async def test_a_national_officer_reads_both_areas_and_entries_of_no_area(
    areas: Areas, open_as: dict[str, httpx.AsyncClient]
) -> None:
    """Every entry: in the search, the API, the CSV and on its own page."""
    national = open_as[OFFICER]
    page = await national.get("/console/entries", params={"limit": "500"})
    shown = _shown(page.text)
    for entry in (*areas.of_a, *areas.of_b, areas.no_area):
        assert entry in shown
        assert (await national.get(f"/console/entries/{entry}")).status_code == 200
    assert "Scope: national (every area)" in page.text and NOMINAL_B in page.text
    exported = await national.get("/console/export.csv")
    assert all(entry in exported.text for entry in (*areas.of_a, *areas.of_b))
    api = await national.get("/v1/audit/entries", params={"nominal": NOMINAL_B})
    assert [e["entry_id"] for e in api.json()["entries"]] == areas.of_b


async def test_an_officer_without_a_scope_reads_nothing_and_is_told(
    areas: Areas, open_as: dict[str, httpx.AsyncClient]
) -> None:
    """No entry in any view, every entry's page a 404, and the page says why and what the
    operator runs."""
    nobody = open_as["ig.none"]
    page = await nobody.get("/console/entries")
    assert page.status_code == 200
    assert 'id="no-scope"' in page.text and "mappa-gateway ig set-scope" in page.text
    assert _shown(page.text) == [] and "0 entries shown." in page.text
    assert (await nobody.get(f"/console/entries/{areas.a_own}")).status_code == 404
    api = await nobody.get("/v1/audit/entries")
    assert api.json() == {"entries": [], "next_cursor": None}
    exported = await nobody.get("/console/export.csv")
    assert len(list(csv.DictReader(io.StringIO(exported.text)))) == 0


async def test_a_scope_set_while_signed_in_holds_from_the_next_page(
    areas: Areas, open_as: dict[str, httpx.AsyncClient], state: GatewayState
) -> None:
    """The scope is read with the session: moved to Wiltshire, the same session reads
    Wiltshire's entries (and Wiltshire police's about the Barnet nominal), no longer Barnet
    police's; set to none, nothing. Each change is an administration entry."""
    barnet = open_as["ig.barnet"]
    async with state.db.write() as session:
        await set_scope(session, "ig.barnet", ReviewScope(areas=(AREA_B,)))
    moved = await barnet.get("/console/entries", params={"limit": "500"})
    assert _shown(moved.text) == [areas.cross, areas.b_refusal, areas.b_own]
    async with state.db.write() as session:
        await set_scope(session, "ig.barnet", NO_SCOPE)
    assert _shown((await barnet.get("/console/entries")).text) == []
    async with state.db.read() as session:
        changes = list(
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.reason_code == "ig_officer_scope_set")
                .order_by(AuditEntry.id)
            )
        )
    assert [(c.officer_id, c.detail["previous_scope"], c.detail["scope"]) for c in changes] == [
        ("ig.barnet", {"areas": [AREA_A]}, {"areas": [AREA_B]}),
        ("ig.barnet", {"areas": [AREA_B]}, {"areas": []}),
    ]


async def test_the_integrity_page_names_no_entry(
    areas: Areas, open_as: dict[str, httpx.AsyncClient]
) -> None:
    """It verifies the whole log for an area officer too, naming no entry id, nominal or
    agency of any area: places and counts only (the tree size is public)."""
    response = await open_as["ig.barnet"].get("/console/integrity")
    assert response.status_code == 200 and "verified" in response.text
    for named in (*areas.of_a, *areas.of_b, areas.no_area, NOMINAL_A, NOMINAL_B, POLICE_B):
        assert named not in response.text


async def test_an_area_officer_s_search_records_the_scope_it_covered(
    areas: Areas, open_as: dict[str, httpx.AsyncClient], state: GatewayState
) -> None:
    await open_as["ig.barnet"].get("/console/entries", params={"outcome": "refused"})
    (search,) = await _console(state, "search", "ig.barnet")
    assert search.detail["scope"] == {"areas": [AREA_A]}
    assert search.detail["filters"] == {"outcome": "refused"}


async def _console(state: GatewayState, action: str, officer_id: str) -> list[AuditEntry]:
    async with state.db.read() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.operation == "console", AuditEntry.officer_id == officer_id)
            .order_by(AuditEntry.id)
        )
        return [row for row in rows if row.detail.get("action") == action]
