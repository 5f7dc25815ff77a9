"""What a MAPPA co-ordination unit reads of the audit log is decided by need-to-know.

The case API answers a nominal the unit may not know of with the 404 of an id that does not
exist; its audit reads must not tell the two apart either: not its own refusal's entry (nominal
id, rule, reasons, leaf hash), not a search by that nominal, not the entries of the agencies
that work the case, not a page's cursor, not an inclusion proof. The console's IG officer still
reads every entry whole. On both backends.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import pytest

from gateway.audit import search
from gateway.audit.canonical import entry_leaf_hash
from gateway.audit.sequencer import sequence
from gateway.console.accounts import add_officer
from gateway.console.scope import NATIONAL
from gateway.console.session import SESSION_COOKIE, open_session
from gateway.flow.audit import SALT_KEY, AuditEvent, Operation, Outcome, record
from tests.gateway.cases.scenario import (
    PNC,
    POLICE,
    PROBATION,
    at_level_1,
    at_level_2,
    level_2_meeting,
    referral,
)
from tests.gateway.cases.scenario import record as record_body
from tests.gateway.cases.support import Agent, World

ENTRIES = "/v1/audit/entries"
INCLUSION = "/v1/audit/proof/inclusion"
CONSISTENCY = "/v1/audit/proof/consistency"
LOOKUP = "/v1/nominals/lookup"
UNKNOWN_PNC = "2001/0000001Z"
UNKNOWN_ID = "6f1d1a52-0b7e-4c2a-9d3e-2b8f1c0a7e55"
#: What differs between any two entries, whatever they record.
PER_ENTRY = ("entry_id", "seq", "occurred_at", "request_id", "payload_digest")
NOTHING = b'{"entries":[],"next_cursor":null}'


async def _unit(world: World, agency_id: str, area: str = "barnet") -> Agent:
    return await world.register(
        agency_id,
        "mappa_coordination",
        "responsible_authority",
        area=area,
        scopes=["case:read", "audit:read"],
    )


async def _read(world: World, agent: Agent, path: str, **params: str) -> httpx.Response:
    headers = await agent.headers("GET", path)
    return await world.http.get(path, params=params, headers=headers)


async def _console(world: World) -> dict[str, str]:
    """A national IG officer's console session (its cookie)."""
    async with world.state.db.write() as session:
        officer = await add_officer(
            session, "ig.officer", "IG Officer", "a long passphrase 1", scope=NATIONAL
        )
    token, _ = await open_session(world.state.db, officer, now=world.clock.now, max_seconds=600)
    return {"Cookie": f"{SESSION_COOKIE}={token}"}


async def _sequenced(world: World) -> None:
    audit = world.state.audit
    assert audit is not None
    await sequence(world.state.db, audit.signer, audit.origin)


def _alike(entry: dict[str, Any], *asked: str) -> dict[str, Any]:
    """The entry without what differs between any two entries, and with the id the caller
    itself asked for (in the route) written as ``{id}``."""
    same = {k: v for k, v in entry.items() if k not in PER_ENTRY}
    assert SALT_KEY not in same["detail"]  # an agency never reads a refusal's salt
    route = same["detail"].get("route", "")
    for ident in asked:
        route = route.replace(ident, "{id}")
    same["detail"] = {**same["detail"], "route": route}
    return same


async def _looked_up(world: World) -> tuple[str, Agent]:
    """Wiltshire's unit, having looked up a Barnet nominal's PNC and an unknown PNC (both 404),
    the log sequenced; and the Barnet nominal's id."""
    nominal_id = await at_level_2(world)
    unit = await _unit(world, "wiltshire-mappa-ig", area="wiltshire")
    for pnc in (PNC, UNKNOWN_PNC):
        answer = await unit.raw("POST", LOOKUP, content=await unit.client.seal({"pnc": pnc}))
        assert answer.status_code == 404
    await _sequenced(world)
    return nominal_id, unit


def _problem(response: httpx.Response) -> tuple[int, dict[str, Any]]:
    body = {k: v for k, v in response.json().items() if k not in ("instance", "request_id")}
    return response.status_code, body


async def test_another_area_s_unit_reads_a_hidden_nominal_s_lookup_as_an_unknown_one(
    any_world: World,
) -> None:
    """Wiltshire's unit looks up a Barnet nominal's PNC and a PNC no one has: its audit read
    of the two refusals, its search by the nominal's id and by an unknown id, and its inclusion
    proofs of the two are the same; the console reads the refusal whole (before, the unit's own
    entry named the Barnet nominal, the lead agency and the area)."""
    world = any_world
    nominal_id, unit = await _looked_up(world)

    read = await _read(world, unit, ENTRIES, agency=unit.id, outcome="refused")
    assert read.status_code == 200
    unknown, hidden = read.json()["entries"]  # newest first
    assert _alike(hidden) == _alike(unknown)
    assert (hidden["nominal_ref"], hidden["rule"], hidden["reason_code"]) == (
        None,
        "resource-exists",
        "not_found",
    )
    assert hidden["detail"] == {"code": "not_found", "route": LOOKUP}
    assert hidden["leaf_hash"] is None and hidden["seq"] is not None
    for word in (nominal_id, "barnet", "no_need_to_know", "default-deny"):
        assert word not in read.text

    by_id = await _read(world, unit, ENTRIES, nominal=nominal_id)
    by_unknown = await _read(world, unit, ENTRIES, nominal=UNKNOWN_ID)
    assert by_id.content == by_unknown.content == NOTHING
    proofs = [
        await _read(world, unit, INCLUSION, entry_id=entry["entry_id"])
        for entry in (hidden, unknown)
    ]
    assert _problem(proofs[0]) == _problem(proofs[1])
    assert proofs[0].status_code == 404

    cookie = await _console(world)
    whole = await world.http.get(
        ENTRIES, params={"agency": unit.id, "outcome": "refused"}, headers=cookie
    )
    stored = {e["entry_id"]: e for e in whole.json()["entries"]}[hidden["entry_id"]]
    assert (stored["nominal_ref"], stored["reason_code"]) == (nominal_id, "no_need_to_know")
    assert "barnet" in json.dumps(stored["detail"]) and stored["leaf_hash"] is not None
    proof = await world.http.get(INCLUSION, params={"entry_id": stored["entry_id"]}, headers=cookie)
    assert proof.status_code == 200


async def test_the_area_s_own_unit_sees_nothing_of_a_category_4_nominal(any_world: World) -> None:
    """Barnet's unit is not named for category 4: the case API answers the nominal's id as an
    unknown id, and so does the audit API (its refusals, a search by the id, the lead agency's
    entries, pages and cursors, inclusion proofs), while it still sees the entries of a
    category 2 nominal of its area whole; the console sees both (before, a search by the id
    listed the lead's entries: the level change, the agencies involved, the recipients)."""
    world = any_world
    hidden_id = await at_level_2(world, category="M4")
    subject = {k: v for k, v in referral()["subject"].items() if k not in ("pnc_id", "crn")}
    seen_id = await at_level_2(world, subject={**subject, "family_name": "Okafor-Lindqvist"})
    assert seen_id != hidden_id
    unit = await _unit(world, "barnet-mappa-ig")
    for ident in (hidden_id, UNKNOWN_ID):
        assert (await unit.raw("GET", f"/v1/nominals/{ident}")).status_code == 404
    await _sequenced(world)

    refusals = (await _read(world, unit, ENTRIES, agency=unit.id, outcome="refused")).json()
    unknown, hidden = refusals["entries"]
    assert _alike(hidden, hidden_id) == _alike(unknown, UNKNOWN_ID)
    assert hidden["nominal_ref"] is None and hidden["leaf_hash"] is None
    assert "category" not in json.dumps(hidden)

    by_id = await _read(world, unit, ENTRIES, nominal=hidden_id)
    assert by_id.content == (await _read(world, unit, ENTRIES, nominal=UNKNOWN_ID)).content
    assert by_id.content == NOTHING
    searches = [e for e in await world.audit(agency_id=unit.id) if "filters" in e.detail]
    assert [
        e.detail["returned"] for e in searches if e.detail["filters"] == {"nominal": hidden_id}
    ] == [0]
    # the lead's entries about a nominal are about one of the two: only the category 2 one's show
    lead = (await _read(world, unit, ENTRIES, agency=POLICE, limit="500")).json()["entries"]
    assert {e["nominal_ref"] for e in lead} == {seen_id, None}
    everything = await _read(world, unit, ENTRIES, limit="500")
    assert "category-4" not in everything.text  # the id is only where the unit itself gave it
    assert all(
        hidden_id not in json.dumps(e)
        for e in everything.json()["entries"]
        if e["agency_id"] != unit.id
    )
    # page by page, one entry at a time: the same entries, and no cursor after the last shown
    paged: list[dict[str, Any]] = []
    params = {"limit": "1"}
    while True:
        page = (await _read(world, unit, ENTRIES, **params)).json()
        paged.extend(page["entries"])
        if page["next_cursor"] is None:
            break
        assert page["entries"]
        params["cursor"] = page["next_cursor"]
    # the first is the search that read everything, newer than what it read
    assert paged[0]["detail"]["action"] == "search" and paged[0]["agency_id"] == unit.id
    assert [e["entry_id"] for e in paged[1:]] == [
        e["entry_id"] for e in everything.json()["entries"]
    ]
    # the category 2 nominal's entries, whole, and provable; the category 4 one's, not
    cookie = await _console(world)
    whole = await world.http.get(ENTRIES, params={"nominal": seen_id}, headers=cookie)
    about_seen = (await _read(world, unit, ENTRIES, nominal=seen_id)).json()["entries"]
    assert about_seen == whole.json()["entries"] and len(about_seen) >= 3
    proved = next(e for e in about_seen if e["seq"] is not None)
    assert (await _read(world, unit, INCLUSION, entry_id=proved["entry_id"])).status_code == 200
    console_hidden = await world.http.get(ENTRIES, params={"nominal": hidden_id}, headers=cookie)
    stored = console_hidden.json()["entries"]
    assert {e["agency_id"] for e in stored} >= {POLICE, unit.id}
    assert any(e["rule"] == "category-4-named-agencies" for e in stored)
    lead_entry = next(e for e in stored if e["agency_id"] == POLICE and e["seq"] is not None)
    refused = await _read(world, unit, INCLUSION, entry_id=lead_entry["entry_id"])
    missing = await _read(world, unit, INCLUSION, entry_id=UNKNOWN_ID)
    assert _problem(refused) == _problem(missing) and refused.status_code == 404


async def test_a_level_1_list_page_is_seen_without_the_nominals_the_unit_may_not_know(
    any_world: World,
) -> None:
    """The police's page of the level 1 list names a category 4 nominal and a category 2 one in
    one entry (no nominal_ref): Barnet's unit, not named for category 4, sees that entry with
    the category 2 nominal's id alone, no leaf hash, and no inclusion proof (the 404 of an
    unknown entry), while the console sees it whole. (The unit read the category 4 nominal's
    id there: that it exists and is on the list.)"""
    world = any_world
    subject = {k: v for k, v in referral()["subject"].items() if k not in ("pnc_id", "crn")}
    hidden_id = await at_level_1(world, category="M4")
    seen_id = await at_level_1(world, subject={**subject, "family_name": "Okafor-Lindqvist"})
    page = await world[POLICE].get("/v1/level-1-list")
    assert {entry["id"] for entry in page["entries"]} == {hidden_id, seen_id}
    unit = await _unit(world, "barnet-mappa-ig")
    await _sequenced(world)

    entries = (await _read(world, unit, ENTRIES, agency=POLICE, limit="500")).json()["entries"]
    [listed] = [e for e in entries if e["rule"] == "level-1-monthly-list"]
    assert listed["record_refs"] == [seen_id] and listed["leaf_hash"] is None
    assert hidden_id not in json.dumps(entries)
    refused = await _read(world, unit, INCLUSION, entry_id=listed["entry_id"])
    missing = await _read(world, unit, INCLUSION, entry_id=UNKNOWN_ID)
    assert _problem(refused) == _problem(missing) and refused.status_code == 404

    cookie = await _console(world)
    whole = await world.http.get(ENTRIES, params={"agency": POLICE}, headers=cookie)
    [stored] = [e for e in whole.json()["entries"] if e["entry_id"] == listed["entry_id"]]
    assert sorted(stored["record_refs"]) == sorted([hidden_id, seen_id])
    assert stored["leaf_hash"] is not None
    assert SALT_KEY in stored["detail"] and SALT_KEY not in listed["detail"]
    stored["detail"].pop(SALT_KEY)
    assert {k: v for k, v in listed.items() if k not in ("record_refs", "leaf_hash")} == {
        k: v for k, v in stored.items() if k not in ("record_refs", "leaf_hash")
    }


async def test_entries_naming_a_record_a_caveat_withholds_from_the_unit_are_seen_without_it(
    any_world: World,
) -> None:
    """Probation's originator-only record of a nominal Barnet's unit may know: the unit sees
    probation's entries about it (the write, probation's own read) without the record's id,
    with no leaf hash and no inclusion proof; probation's record with no caveat it sees whole,
    id and proof; the console sees both ids. (The unit read the hidden record's id: that it
    exists, which the case API answers as an unknown id.)"""
    world = any_world
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    records = f"/v1/nominals/{nominal_id}/records"
    hidden = (await world[PROBATION].post(records, record_body(caveats=["originator-only"])))["id"]
    shared = (await world[PROBATION].post(records, record_body()))["id"]
    await world[PROBATION].get(f"{records}/{hidden}")
    await world[PROBATION].get(records)  # a list: the rule and the withheld fields of each, by id
    police = await world[POLICE].raw("GET", f"{records}/{hidden}")  # the lead's refusal names it
    assert police.status_code == 404
    unit = await _unit(world, "barnet-mappa-ig")
    assert (await unit.raw("GET", f"{records}/{hidden}")).status_code == 404
    await _sequenced(world)

    seen = (await _read(world, unit, ENTRIES, agency=PROBATION, limit="500")).json()["entries"]
    assert hidden not in json.dumps(seen)
    everything = (await _read(world, unit, ENTRIES, limit="500")).json()["entries"]
    others = [e for e in everything if e["agency_id"] != unit.id]  # its own asked for the id
    assert hidden not in json.dumps(others)  # nor in the police's refusal, left out
    cookie = await _console(world)
    police_refusals = await world.http.get(
        ENTRIES, params={"agency": POLICE, "outcome": "refused"}, headers=cookie
    )
    assert hidden in police_refusals.text  # the console sees it
    whole = await world.http.get(ENTRIES, params={"agency": PROBATION}, headers=cookie)
    stored = {e["entry_id"]: e for e in whole.json()["entries"]}
    naming = [e for e in seen if hidden in stored[e["entry_id"]]["record_refs"]]
    assert len(naming) >= 3  # the write, probation's read and its list
    [listed] = [e for e in naming if "rules" in e["detail"]]
    assert list(listed["detail"]["rules"]) == [shared] and listed["record_refs"] == [shared]
    for entry in naming:
        assert entry["leaf_hash"] is None and stored[entry["entry_id"]]["leaf_hash"] is not None
        assert SALT_KEY in stored[entry["entry_id"]]["detail"]  # to test a guessed id with
        assert SALT_KEY not in entry["detail"]
        refused = await _read(world, unit, INCLUSION, entry_id=entry["entry_id"])
        missing = await _read(world, unit, INCLUSION, entry_id=UNKNOWN_ID)
        assert _problem(refused) == _problem(missing) and refused.status_code == 404
    sharing = [e for e in seen if shared in e["record_refs"] and e not in naming]
    assert sharing  # its write, and its push to the lead
    for entry in sharing:
        assert entry == stored[entry["entry_id"]] and entry["leaf_hash"] is not None
        proved = await _read(world, unit, INCLUSION, entry_id=entry["entry_id"])
        assert proved.status_code == 200


async def test_evidence_of_origin_of_a_hidden_nominal_s_entry_is_an_unknown_entry_s(
    any_world: World,
) -> None:
    """Barnet's unit asks for the evidence of origin of the police's referral of a category 4
    nominal, and of an entry that does not exist: the same 404, and its audit read of the two
    refusals the same; the referral of a category 2 nominal it gets (before, it was given the
    category 4 referral's checks: who wrote it, when, its digest)."""
    world = any_world
    hidden_id = await at_level_2(world, category="M4")
    subject = {k: v for k, v in referral()["subject"].items() if k not in ("pnc_id", "crn")}
    seen_id = await at_level_2(world, subject={**subject, "family_name": "Okafor-Lindqvist"})
    unit = await _unit(world, "barnet-mappa-ig")
    [hidden_write] = await world.audit(nominal_ref=hidden_id, operation="collection")
    [seen_write] = await world.audit(nominal_ref=seen_id, operation="collection")

    assert (await unit.raw("GET", f"/v1/audit/origin/{seen_write.entry_id}")).status_code == 200
    refused = await unit.raw("GET", f"/v1/audit/origin/{hidden_write.entry_id}")
    missing = await unit.raw("GET", f"/v1/audit/origin/{UNKNOWN_ID}")
    assert _problem(refused) == _problem(missing) and refused.status_code == 404

    refusals = (await _read(world, unit, ENTRIES, agency=unit.id, outcome="refused")).json()
    unknown, hidden = refusals["entries"]
    assert _alike(hidden, hidden_write.entry_id) == _alike(unknown, UNKNOWN_ID)
    assert hidden["nominal_ref"] is None and hidden["rule"] == "resource-exists"
    [stored] = await world.audit(agency_id=unit.id, nominal_ref=hidden_id)
    assert stored.rule == "origin-evidence-need-to-know"


async def _public_leaves(world: World, seq: int) -> set[str]:
    """The leaf hashes anyone (no login) reads around leaf ``seq``: the consistency proof from
    the tree of ``seq`` leaves to the tree of one more holds leaf ``seq`` itself."""
    proof = await world.http.get(CONSISTENCY, params={"first": seq, "second": seq + 1})
    assert proof.status_code == 200
    return set(proof.json()["consistency_path"])


def _rebuilt(entry: dict[str, Any]) -> str:
    """The leaf hash of an entry as read (what a caller can compute of it)."""
    fields = {k: v for k, v in entry.items() if k != "leaf_hash"}
    return base64.b64encode(entry_leaf_hash(fields)).decode()


async def test_a_reshaped_refusal_s_leaf_is_not_among_the_public_proofs(any_world: World) -> None:
    """Wiltshire's unit reads its refusals of a Barnet nominal's PNC and of an unknown PNC
    reshaped, without a leaf hash; but every leaf is in a public proof. Rebuilt from what it
    reads and hashed, neither is found there, so it cannot tell which of the two was stored as
    it reads (before, the unknown PNC's was found and the hidden nominal's was not: the
    nominal existed). The console reads each whole, salt included, and it verifies."""
    world = any_world
    _, unit = await _looked_up(world)

    read = await _read(world, unit, ENTRIES, agency=unit.id, outcome="refused")
    refusals = read.json()["entries"]
    assert len(refusals) == 2 and SALT_KEY not in read.text
    cookie = await _console(world)
    whole = await world.http.get(ENTRIES, params={"agency": unit.id}, headers=cookie)
    stored = {e["entry_id"]: e for e in whole.json()["entries"]}
    # the guess: the refusal of a PNC no one has, as the gateway's own code writes it (its
    # detail's fixed text, known to anyone who reads the code), all but the salt
    [unknown] = [
        stored[e["entry_id"]] for e in refusals if stored[e["entry_id"]]["nominal_ref"] is None
    ]
    guessed = {k: v for k, v in unknown["detail"].items() if k != SALT_KEY}
    for entry in refusals:
        assert entry["seq"] >= 1 and entry["leaf_hash"] is None
        leaves = await _public_leaves(world, entry["seq"])
        assert _rebuilt({**entry, "detail": guessed}) not in leaves
        whole_entry = stored[entry["entry_id"]]
        assert re.fullmatch(r"[0-9a-f]{32}", whole_entry["detail"][SALT_KEY])
        leaf = base64.b64encode(bytes.fromhex(whole_entry["leaf_hash"])).decode()
        assert _rebuilt(whole_entry) == leaf and leaf in leaves


async def test_the_unit_s_own_404s_about_a_nominal_it_knows_read_as_an_unknown_id_s(
    any_world: World,
) -> None:
    """Barnet's unit may know a category 2 nominal; its own refusals about it that answered 404
    (a record a caveat withholds: to it, the record does not exist; a disclosure it may not
    read, the meeting and request named and why) read, in its audit view, as the refusal of
    an unknown id, with no inclusion proof (before, they were read whole: the caveat, the ids,
    the reason the 404 hid). The console reads them whole."""
    world = any_world
    nominal_id = await at_level_2(world)
    unit = await _unit(world, "barnet-mappa-ig")
    assert (await unit.raw("GET", f"/v1/nominals/{UNKNOWN_ID}")).status_code == 404
    refusals = {
        "caveat": {
            "rule": "caveat:responsible-authority-only",
            "route": f"/v1/records/{UNKNOWN_ID}",
            "why": "a handling caveat withholds the whole record from this agency",
        },
        "not_participant": {
            "rule": "disclosure-reader",
            "route": f"/v1/disclosures/{UNKNOWN_ID}",
            "why": "meeting m-1 request r-1: the caller is neither requester nor recipient",
        },
    }
    [asked] = await world.audit(agency_id=unit.id, outcome="refused")
    async with world.state.db.write() as session:
        for reason, told in refusals.items():
            record(
                session,
                AuditEvent(
                    operation=Operation(asked.operation),
                    outcome=Outcome.REFUSED,
                    agency_id=unit.id,
                    officer_id=asked.officer_id,
                    legal_basis=asked.legal_basis,
                    purpose=asked.purpose,
                    nominal_ref=nominal_id,
                    record_refs=("m-1", "r-1"),
                    rule=told["rule"],
                    reason_code=reason,
                    detail={"code": "not_found", "route": told["route"], "why": told["why"]},
                ),
            )
    await _sequenced(world)

    read = await _read(world, unit, ENTRIES, agency=unit.id, outcome="refused")
    *known, unknown = read.json()["entries"]  # newest first
    assert len(known) == 2
    for entry, told in zip(known, reversed(refusals.values()), strict=True):
        assert entry["detail"] == {"code": "not_found", "route": told["route"]}
        assert {**_alike(entry), "detail": None} == {**_alike(unknown), "detail": None}
        proof = await _read(world, unit, INCLUSION, entry_id=entry["entry_id"])
        assert proof.status_code == 404
    for word in ("caveat", "why", "m-1", "disclosure-reader", nominal_id):
        assert word not in read.text
    cookie = await _console(world)
    whole = await world.http.get(
        ENTRIES, params={"agency": unit.id, "nominal": nominal_id}, headers=cookie
    )
    assert {e["reason_code"] for e in whole.json()["entries"]} == set(refusals)


async def test_a_search_reads_a_bounded_number_of_rows_and_goes_on_by_its_cursor(
    any_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Barnet's unit searches the police's entries, newest first: many about a category 4
    nominal it may not know, then those about a category 2 one. A page reads at most its
    batches and ends, empty, with a cursor at the last row read; following the cursors it
    reaches the entry it sees (before, one page read every hidden row to find it)."""
    monkeypatch.setattr(search, "SCAN_BATCH", 5)
    monkeypatch.setattr(search, "SCAN_BATCHES", 2)
    world = any_world
    subject = {k: v for k, v in referral()["subject"].items() if k not in ("pnc_id", "crn")}
    seen_id = await at_level_2(world, subject={**subject, "family_name": "Okafor-Lindqvist"})
    hidden_id = await at_level_2(world, category="M4")
    unit = await _unit(world, "barnet-mappa-ig")
    async with world.state.db.write() as session:
        for _ in range(23):
            record(
                session,
                AuditEvent(
                    operation=Operation.CONSULTATION,
                    outcome=Outcome.ALLOWED,
                    agency_id=POLICE,
                    nominal_ref=hidden_id,
                ),
            )

    params = {"agency": POLICE, "limit": "1"}
    first = (await _read(world, unit, ENTRIES, **params)).json()
    assert first["entries"] == [] and first["next_cursor"] is not None
    pages = 1
    page = first
    while not page["entries"]:
        assert page["next_cursor"] is not None
        params["cursor"] = page["next_cursor"]
        page = (await _read(world, unit, ENTRIES, **params)).json()
        pages += 1
    assert page["entries"][0]["nominal_ref"] == seen_id
    assert pages >= 3  # 23 hidden rows and more, 10 read a page
