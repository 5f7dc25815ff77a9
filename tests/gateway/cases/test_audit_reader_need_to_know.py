"""What a MAPPA co-ordination unit reads of the audit log is decided by need-to-know.

The case API answers a nominal the unit may not know of with the 404 of an id that does not
exist; its audit reads must not tell the two apart either: not its own refusal's entry (nominal
id, rule, reasons, leaf hash), not a search by that nominal, not the entries of the agencies
that work the case, not a page's cursor, not an inclusion proof. The console's IG officer still
reads every entry whole. On both backends.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from gateway.audit.sequencer import sequence
from gateway.console.accounts import add_officer
from gateway.console.session import SESSION_COOKIE, open_session
from tests.gateway.cases.scenario import PNC, POLICE, at_level_2, referral
from tests.gateway.cases.support import Agent, World

ENTRIES = "/v1/audit/entries"
INCLUSION = "/v1/audit/proof/inclusion"
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
    """An IG officer's console session (its cookie)."""
    async with world.state.db.write() as session:
        officer = await add_officer(session, "ig.officer", "IG Officer", "a long passphrase 1")
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
    route = same["detail"].get("route", "")
    for ident in asked:
        route = route.replace(ident, "{id}")
    same["detail"] = {**same["detail"], "route": route}
    return same


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
    nominal_id = await at_level_2(world)
    unit = await _unit(world, "wiltshire-mappa-ig", area="wiltshire")
    for pnc in (PNC, UNKNOWN_PNC):
        answer = await unit.raw("POST", LOOKUP, content=await unit.client.seal({"pnc": pnc}))
        assert answer.status_code == 404
    await _sequenced(world)

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
