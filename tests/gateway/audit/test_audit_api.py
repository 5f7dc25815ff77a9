"""The IG audit API: checkpoint, verifier key, proofs, entries; IG only, refusals audited."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey
from sqlalchemy import select

from gateway.audit import (
    CheckpointVerifier,
    entry_leaf_hash,
    parse_verifier_key,
    verify_consistency,
    verify_inclusion,
)
from gateway.audit.sequencer import sequence
from gateway.audit.verify import LEAF_HASH_KEY
from gateway.flow.audit import record
from gateway.state import GatewayState
from gateway.store.models import AuditEntry, Nominal
from keys import ed25519_verify
from tests.gateway.audit.conftest import append_entries, audit_event
from tests.gateway.oauth.conftest import register
from tests.gateway.oauth.support import ISSUER, AgencyClient, Clock, Ledger

ENTRIES = ISSUER + "/v1/audit/entries"
INCLUSION = ISSUER + "/v1/audit/proof/inclusion"


@pytest.fixture
async def sequenced_log(gateway_state: GatewayState) -> list[str]:
    """Twenty entries, sequenced and signed; returns the signed notes at sizes 10 and 20."""
    assert gateway_state.audit is not None
    signer, origin = gateway_state.audit.signer, gateway_state.audit.origin
    await append_entries(gateway_state.db, 10)
    first = await sequence(gateway_state.db, signer, origin)
    await append_entries(gateway_state.db, 10, start=10)
    second = await sequence(gateway_state.db, signer, origin)
    assert first.note is not None and second.note is not None
    return [first.note, second.note]


async def _get(
    http: httpx.AsyncClient, caller: AgencyClient, url: str, **params: Any
) -> httpx.Response:
    token = await caller.token(http)
    headers = caller.resource_headers(token, url=url, method="GET")
    return await http.get(url, params=params, headers=headers)


async def _verifier(http: httpx.AsyncClient, origin: str) -> CheckpointVerifier:
    response = await http.get("/v1/audit/verifier-key")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    keys = tuple(parse_verifier_key(line) for line in response.text.split())
    return CheckpointVerifier(keys, ed25519_verify, origin)


async def test_latest_checkpoint_is_a_signed_note_that_verifies_with_the_published_key(
    http: httpx.AsyncClient, gateway_state: GatewayState, sequenced_log: list[str]
) -> None:
    """GET /v1/audit/checkpoint returns the latest note as text; the published key verifies it."""
    response = await http.get("/v1/audit/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == sequenced_log[-1]
    origin = gateway_state.settings.audit_log_origin
    assert origin == "gateway.test/mappa-audit"
    checkpoint = (await _verifier(http, origin)).verify(response.text)
    assert checkpoint.size == 20


async def test_consistency_proof_links_two_signed_checkpoints(
    http: httpx.AsyncClient, gateway_state: GatewayState, sequenced_log: list[str]
) -> None:
    """The public consistency proof from size 10 to 20 verifies between the two signed roots."""
    verifier = await _verifier(http, gateway_state.settings.audit_log_origin)
    old, new = (verifier.verify(note) for note in sequenced_log)
    response = await http.get("/v1/audit/proof/consistency", params={"first": 10, "second": 20})
    assert response.status_code == 200
    path = [base64.b64decode(node) for node in response.json()["consistency_path"]]
    assert verify_consistency(10, 20, old.root_hash, new.root_hash, path)


async def test_inclusion_proof_of_an_entry_verifies_against_the_signed_root(
    http: httpx.AsyncClient,
    gateway_state: GatewayState,
    coordinator: AgencyClient,
    sequenced_log: list[str],
) -> None:
    """An IG reader gets an entry and its inclusion proof; the entry's own hash is in the tree."""
    listing = await _get(http, coordinator, ENTRIES, nominal="N00003")
    assert listing.status_code == 200, listing.text
    entry = next(e for e in listing.json()["entries"] if e["seq"] is not None)
    response = await _get(http, coordinator, INCLUSION, entry_id=entry["entry_id"])
    assert response.status_code == 200, response.text
    proof = response.json()
    verifier = await _verifier(http, gateway_state.settings.audit_log_origin)
    checkpoint = verifier.verify(sequenced_log[-1])
    leaf = entry_leaf_hash({k: v for k, v in entry.items() if k != LEAF_HASH_KEY})
    path = [base64.b64decode(node) for node in proof["inclusion_path"]]
    assert verify_inclusion(leaf, entry["seq"], checkpoint.size, path, checkpoint.root_hash)


async def test_entries_filter_and_page_with_an_opaque_cursor(
    http: httpx.AsyncClient, coordinator: AgencyClient, sequenced_log: list[str]
) -> None:
    """Filters match exactly; pages of 3 walk every match once, newest first."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"agency": "agency-1", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        response = await _get(http, coordinator, ENTRIES, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert all(e["agency_id"] == "agency-1" for e in body["entries"])
        seen.extend(e["request_id"] for e in body["entries"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # the sample's five, then agency-1's own registration (made before them, with no request)
    assert seen == [*(f"req-{i}" for i in (17, 13, 9, 5, 1)), None]


@pytest.mark.parametrize(
    "value",
    [
        "' OR '1'='1",  # the classic tautology
        "N00001'; DROP TABLE audit_entries; --",  # stacked statement
        "%",  # a LIKE wildcard is not a wildcard here
        "N0000_",
    ],
)
async def test_filter_values_that_look_like_sql_match_nothing(
    http: httpx.AsyncClient, coordinator: AgencyClient, sequenced_log: list[str], value: str
) -> None:
    """SQL in a filter is a literal value: 200 with no entries, and the table is intact."""
    response = await _get(http, coordinator, ENTRIES, nominal=value)
    assert response.status_code == 200
    assert response.json() == {"entries": [], "next_cursor": None}
    again = await _get(http, coordinator, ENTRIES, limit=1)
    assert len(again.json()["entries"]) == 1


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("colour=red", "unknown parameter"),
        ("agency=a&agency=b", "repeated parameter"),
        ("from=yesterday", "not a date"),
        ("from=2026-03-01T09:00:00", "a time without its offset"),
        ("limit=0", "limit below 1"),
        ("limit=501", "limit above the maximum"),
        ("limit=ten", "limit not a number"),
        ("cursor=not-a-cursor", "a cursor this gateway never issued"),
        ("nominal=" + "N" * 201, "value too long"),
    ],
)
async def test_invalid_parameters_answer_400_problem(
    http: httpx.AsyncClient, coordinator: AgencyClient, query: str, why: str
) -> None:
    """Malformed search parameters are a 400 invalid_parameter problem, never a 500 or SQL."""
    token = await coordinator.token(http)
    headers = coordinator.resource_headers(token, url=ENTRIES, method="GET")
    response = await http.get(f"/v1/audit/entries?{query}", headers=headers)
    assert response.status_code == 400, why
    assert response.json()["code"] == "invalid_parameter"
    assert "select" not in response.text.lower()


#: What ``str.isdigit`` passes but is not ASCII 0-9: superscripts (``int`` refuses them: a 500
#: before), Arabic-Indic, fullwidth and Devanagari digits (``int`` reads them), and a mix.
NOT_ASCII_DIGITS = [
    "\u00b2",
    "\u00b9\u00b2",
    "\u0661\u0662",
    "\uff11\uff12",
    "\u0967\u0966",
    "1\u00b2",
]
#: Tree sizes of ASCII digits, too long (at most 15 are read), and more than ``int`` reads.
LONG_SIZES = ["0" * 15 + "10", "1" * 5000]


@pytest.mark.parametrize("value", NOT_ASCII_DIGITS + LONG_SIZES)
@pytest.mark.parametrize("name", ["first", "second"])
async def test_consistency_proof_size_not_in_ascii_digits_is_400_not_500(
    http: httpx.AsyncClient, ledger: Ledger, sequenced_log: list[str], name: str, value: str
) -> None:
    """The public, unauthenticated endpoint: a size in other scripts' digits, or too long, is
    400 ``invalid_parameter`` (never a 500 anyone could raise at will), and nothing is written."""
    entries = await ledger.count(AuditEntry)
    params = {"first": "10", "second": "20", name: value}
    response = await http.get("/v1/audit/proof/consistency", params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "invalid_parameter"
    assert await ledger.count(AuditEntry) == entries


@pytest.mark.parametrize("tree_size", NOT_ASCII_DIGITS + LONG_SIZES)
async def test_inclusion_tree_size_not_in_ascii_digits_is_400_and_nothing_is_read(
    http: httpx.AsyncClient,
    gateway_state: GatewayState,
    coordinator: AgencyClient,
    ledger: Ledger,
    sequenced_log: list[str],
    tree_size: str,
) -> None:
    """An IG reader's tree size in other scripts' digits, or too long: 400, no proof, no read."""
    async with gateway_state.db.read() as session:
        entry_id = await session.scalar(
            select(AuditEntry.entry_id).where(AuditEntry.seq == 3)  # in both checkpoints
        )
    response = await _get(http, coordinator, INCLUSION, entry_id=entry_id, tree_size=tree_size)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_parameter"
    assert await ledger.audit("consultation", "allowed") == []


@pytest.mark.parametrize("limit", [*NOT_ASCII_DIGITS, "0001", "1" * 5000])
async def test_entries_limit_not_in_one_to_three_ascii_digits_is_400_and_nothing_is_read(
    http: httpx.AsyncClient,
    coordinator: AgencyClient,
    ledger: Ledger,
    sequenced_log: list[str],
    limit: str,
) -> None:
    """``limit`` of other scripts' digits, or of more than three: 400, nothing searched."""
    response = await _get(http, coordinator, ENTRIES, limit=limit)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_parameter"
    assert await ledger.audit("consultation", "allowed") == []


@pytest.mark.parametrize("url", [ENTRIES, INCLUSION])
async def test_agency_that_is_not_ig_gets_403_and_the_attempt_is_audited(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, url: str
) -> None:
    """A police system calling an IG endpoint: 403 forbidden, refusal audited with the rule."""
    response = await _get(http, police, url, entry_id="x")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    refused = await ledger.audit("consultation", "refused")
    assert len(refused) == 1
    assert refused[0].agency_id == police.client_id
    assert refused[0].rule == "ig-endpoints-only"
    assert refused[0].officer_id == "PC-4521"
    assert refused[0].request_id == response.headers["x-request-id"]


async def test_audit_read_scope_without_the_coordination_type_is_not_enough(
    http: httpx.AsyncClient, gateway_state: GatewayState, clock: Clock, ledger: Ledger
) -> None:
    """An agency holding audit:read but of another type is refused too."""
    client = AgencyClient("housing-with-scope", ECKey.generate_key("P-256"), clock)
    await register(
        gateway_state.db,
        client,
        agency_type="housing",
        role="duty_to_cooperate",
        scopes=["audit:read"],
    )
    response = await _get(http, client, ENTRIES)
    assert response.status_code == 403
    assert len(await ledger.audit("consultation", "refused")) == 1


async def test_unauthenticated_call_to_entries_answers_401(http: httpx.AsyncClient) -> None:
    """Without a console session or a token the entries endpoint is a 401 DPoP challenge."""
    response = await http.get("/v1/audit/entries")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("DPoP")


async def test_ig_read_is_itself_audited(
    http: httpx.AsyncClient, coordinator: AgencyClient, ledger: Ledger
) -> None:
    """A search by the co-ordination unit leaves a consultation entry with its filters."""
    response = await _get(http, coordinator, ENTRIES, operation="disclosure")
    assert response.status_code == 200
    allowed = await ledger.audit("consultation", "allowed")
    assert len(allowed) == 1
    assert allowed[0].agency_id == coordinator.client_id
    assert allowed[0].detail["filters"] == {"operation": "disclosure"}


async def test_proof_sizes_beyond_the_latest_checkpoint_are_refused(
    http: httpx.AsyncClient, sequenced_log: list[str]
) -> None:
    """Nothing signed covers a larger tree: 400, not a proof over unsigned entries."""
    response = await http.get("/v1/audit/proof/consistency", params={"first": 1, "second": 21})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameter"


async def test_text_with_control_characters_and_markup_round_trips_literally(
    http: httpx.AsyncClient, gateway_state: GatewayState, coordinator: AgencyClient
) -> None:
    """An officer id holding markup and control characters is stored and returned unchanged
    (searching by it is a 400: no search value holds a control character)."""
    hostile = "<script>alert(1)</script>\x07\x1b[31m\u202e"
    async with gateway_state.db.write() as session:
        record(session, audit_event(0, officer_id=hostile))
    refused = await _get(http, coordinator, ENTRIES, officer=hostile)
    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid_parameter"
    response = await _get(http, coordinator, ENTRIES, nominal="N00000")
    assert response.status_code == 200
    (entry,) = response.json()["entries"]
    assert entry["officer_id"] == hostile
    async with gateway_state.db.read() as session:
        stored = await session.scalar(
            select(AuditEntry.officer_id).where(AuditEntry.entry_id == entry["entry_id"])
        )
    assert stored == hostile


@pytest.fixture
async def wilts(gateway_state: GatewayState, clock: Clock) -> AgencyClient:
    """Wiltshire's MAPPA co-ordination unit, with audit:read."""
    client = AgencyClient("mappa-coord-wilts", ECKey.generate_key("P-256"), clock)
    return await register(
        gateway_state.db,
        client,
        agency_type="mappa_coordination",
        role="responsible_authority",
        scopes=["audit:read"],
        area="wiltshire",
    )


async def test_an_area_s_unit_sees_only_its_own_area_s_entries(
    http: httpx.AsyncClient,
    gateway_state: GatewayState,
    coordinator: AgencyClient,
    sequenced_log: list[str],
    wilts: AgencyClient,
) -> None:
    """Avon's unit sees the entries of Avon's agencies; Wiltshire's sees none of them, its
    search says which area it covered, and an Avon entry's inclusion proof is its 404 (before,
    any area's unit read every area's log: nominal references, agencies, officers)."""
    avon_page = (await _get(http, coordinator, ENTRIES, agency="agency-1")).json()["entries"]
    assert len(avon_page) == 6  # the sample's five and agency-1's registration
    wilts_page = (await _get(http, wilts, ENTRIES, agency="agency-1")).json()["entries"]
    assert wilts_page == []
    everything = (await _get(http, wilts, ENTRIES, limit="500")).json()["entries"]
    assert {e["agency_id"] for e in everything} <= {"mappa-coord-wilts"}
    searches = [e for e in everything if (e["detail"] or {}).get("action") == "search"]
    assert searches and all(e["detail"]["area"] == "wiltshire" for e in searches)
    entry = next(e for e in avon_page if e["seq"] is not None)
    assert (await _get(http, coordinator, INCLUSION, entry_id=entry["entry_id"])).status_code == 200
    refused = await _get(http, wilts, INCLUSION, entry_id=entry["entry_id"])
    assert (refused.status_code, refused.json()["code"]) == (404, "not_found")


async def test_an_entry_about_an_area_s_nominal_is_seen_by_the_unit_that_may_know_of_it(
    http: httpx.AsyncClient,
    gateway_state: GatewayState,
    coordinator: AgencyClient,
    sequenced_log: list[str],
    wilts: AgencyClient,
) -> None:
    """An Avon agency's entry about a Wiltshire nominal is seen by Wiltshire's unit, which may
    know of its area's nominal; not by Avon's, which may not know of another area's nominal: its
    search by that id answers as one by an id that does not exist (before, both units saw it,
    and Avon's learnt a Wiltshire nominal's id and business from its own agencies' entries)."""
    async with gateway_state.db.write() as session:
        nominal = Nominal(
            area="wiltshire",
            category=1,
            level=2,
            lead_agency_id="agency-2",
            details_sealed=b"\x00",
        )
        session.add(nominal)
        await session.flush()
        record(session, audit_event(900, agency_id="agency-2", nominal_ref=nominal.id))
    about = (await _get(http, wilts, ENTRIES, nominal=nominal.id)).json()["entries"]
    assert [e["request_id"] for e in about] == ["req-900"]
    by_avon = await _get(http, coordinator, ENTRIES, nominal=nominal.id)
    unknown = await _get(http, coordinator, ENTRIES, nominal="6f1d1a52-0000-4000-8000-000000000000")
    assert by_avon.json() == unknown.json() == {"entries": [], "next_cursor": None}
    everything = (await _get(http, coordinator, ENTRIES, limit="500")).json()["entries"]
    assert "req-900" not in {e["request_id"] for e in everything}
