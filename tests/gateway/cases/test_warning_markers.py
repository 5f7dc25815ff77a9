"""The housing property warning marker: a UPRN, ``PWM``, a contact, a review date; nothing else.

Raised by the Responsible Authority for a nominal it may know, for a housing provider that
need-to-know lets know of the nominal (it attended the MAPP meeting here; or the nominal is on
its level 1 list), built from the policies' ``[warning_marker]`` allow-list, sealed to the
housing provider and pushed through the outbox with its audit entry. No offence detail, no third
party, not even the nominal, reaches it. A provider that may not know of the nominal (category
4, deregistered, not involved) is sent nothing: 409, audited with the rule, nothing stored.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from adapters.client import GatewayResponseError
from adapters.housing import HousingAdapter
from adapters.sdk import Delivery
from adapters.standin import JsonStore
from gateway.store.models import WarningMarker
from tests.gateway.cases.scenario import (
    CS,
    HOUSING,
    JCP,
    POLICE,
    PROBATION,
    SECRETS,
    THIRD_PARTY_TEXT,
    WILTS_POLICE,
    at_level_2,
    level_2_meeting,
    referred,
)
from tests.gateway.cases.support import World, new_key

KIND = "warning_marker"
REVOCATION = "warning_marker_revocation"
UPRN = "200004512345"
OFFENCE = "Sexual assault of a child under 13 (s.7 SOA 2003), Crown Court 2019"


async def _case(world: World, **changes: Any) -> str:
    """A level 2 nominal whose MAPP meeting housing and children's services attended: housing
    may know of it, so it may be sent a marker."""
    nominal_id = await at_level_2(world, **changes)
    await level_2_meeting(world, nominal_id, {HOUSING: "attended", CS: "attended"})
    return nominal_id


def marker(nominal_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "nominal_id": nominal_id,
        "recipient_agency_id": HOUSING,
        "uprn": UPRN,
        "marker": "PWM",
        "contact": {"role": "mappa_unit", "telephone": "020 8000 0000"},
        "review_date": "2027-02-23",
    }
    body.update(changes)
    return body


async def test_warning_marker_reaches_housing_with_its_allow_list_only(world: World) -> None:
    """Exactly the marker id, UPRN, code, contact and review date: no name, address, offence,
    record text, third party or nominal id; one disclosure entry with its digest."""
    nominal_id = await _case(world)
    answer = await world[POLICE].post("/v1/warning-markers", marker(nominal_id))
    assert answer["status"] == "sent"
    [pushed] = await world.pushed(HOUSING, KIND)
    assert pushed == {
        "marker_id": answer["id"],
        "uprn": UPRN,
        "marker": "PWM",
        "contact": {"role": "mappa_unit", "telephone": "020 8000 0000"},
        "review_date": "2027-02-23",
    }
    text = json.dumps(pushed)
    for needle in (*SECRETS, OFFENCE, nominal_id):
        assert needle not in text, needle
    [entry] = [
        e
        for e in await world.audit(operation="disclosure", agency_id=POLICE)
        if e.detail.get("resource") == KIND
    ]
    assert entry.recipients == [HOUSING]
    assert entry.record_refs == [answer["id"]]
    assert entry.payload_digest
    assert entry.detail["builder"] == "warning-marker-allow-list"
    [row] = [r for r in await world.outbox(HOUSING) if r.kind == KIND]
    assert row.body.count(".") == 4 and UPRN not in row.body


@pytest.mark.parametrize(
    "smuggled",
    [
        {"offence": OFFENCE},  # an offence field: not on the contract
        {"notes": THIRD_PARTY_TEXT},  # third-party text in a free-text field
        {"address": "Flat 9, 41 Quillfeather Road"},  # a free-text address, not a UPRN
        {"contact": f"Call DS Hale re {OFFENCE}\n{THIRD_PARTY_TEXT}"},  # multi-line contact
        {"uprn": "Flat 9, 41 Quillfeather Road"},  # an address where the UPRN goes
        {"marker": "SEX"},  # a marker code outside the vocabulary
    ],
)
async def test_anything_beyond_the_allow_list_is_refused_and_nothing_sent(
    world: World, smuggled: dict[str, str]
) -> None:
    """422 naming the place, never the value; nothing enqueued for housing."""
    nominal_id = await _case(world)
    refused = await world[POLICE].refused(
        "POST", "/v1/warning-markers", marker(nominal_id, **smuggled)
    )
    assert refused.status == 422
    problem = json.dumps(refused.problem)
    assert OFFENCE not in problem and THIRD_PARTY_TEXT not in problem
    assert await world.outbox(HOUSING) == []


async def test_only_the_responsible_authority_raises_a_marker_for_a_housing_provider(
    world: World,
) -> None:
    """Children's services may not (403); children's services is no marker recipient (422); a
    nominal another area's police may not know of is 404; nothing is sent in any case."""
    nominal_id = await _case(world)
    assert (
        await world[CS].refused("POST", "/v1/warning-markers", marker(nominal_id))
    ).status == 403
    to_cs = marker(nominal_id, recipient_agency_id=CS)
    assert (await world[PROBATION].refused("POST", "/v1/warning-markers", to_cs)).status == 422
    outsider = await world[WILTS_POLICE].refused("POST", "/v1/warning-markers", marker(nominal_id))
    assert outsider.status == 404
    assert [r for r in await world.outbox() if r.kind == KIND] == []


async def test_housing_adapter_writes_pwm_on_the_property_and_nothing_else(
    world: World, tmp_path: Path
) -> None:
    """The sealed marker, opened by housing, becomes a PWM on the property found by its UPRN."""
    nominal_id = await _case(world)
    await world[POLICE].post("/v1/warning-markers", marker(nominal_id))
    [pushed] = await world.pushed(HOUSING, KIND)
    store = JsonStore(tmp_path / "housing.json")
    store.put("properties", UPRN, {"uprn": UPRN, "address": "1 Demo Close", "markers": []})
    message_id = "7d0f5c1e-0000-4000-8000-0000000000c1"
    receipt = HousingAdapter(store).receive(Delivery(message_id, KIND, pushed, "gw"))
    assert receipt.action == "warning_marker_written"
    prop = store.get("properties", UPRN)
    assert prop is not None
    assert prop["markers"] == [
        {
            "code": "PWM",
            "contact": {"role": "mappa_unit", "telephone": "020 8000 0000"},
            "review_date": "2027-02-23",
            "marker_id": pushed["marker_id"],
            "message_id": message_id,
        }
    ]


# -- listing and revocation ------------------------------------------------------------------

REVOKE = {"reason": "review_completed"}


async def _raised(world: World, nominal_id: str, count: int = 1) -> list[str]:
    ids = []
    for n in range(count):
        answer = await world[POLICE].post(
            "/v1/warning-markers", marker(nominal_id, uprn=f"20000451234{n}")
        )
        ids.append(str(answer["id"]))
        world.clock.advance(seconds=1)
    return ids


async def test_ra_lists_the_markers_raised_on_a_nominal_a_page_at_a_time(world: World) -> None:
    """Probation (the other RA) lists police's three markers two at a time, oldest first, each
    with exactly the listing's fields; the listing is one audited disclosure per page."""
    nominal_id = await _case(world)
    raised = await _raised(world, nominal_id, 3)
    path = f"/v1/nominals/{nominal_id}/warning-markers"
    first = await world[PROBATION].get(path, limit="2")
    assert [m["id"] for m in first["warning_markers"]] == raised[:2]
    second = await world[PROBATION].get(path, limit="2", cursor=first["next_cursor"])
    assert [m["id"] for m in second["warning_markers"]] == raised[2:]
    assert "next_cursor" not in second
    entry = first["warning_markers"][0]
    assert entry == {
        "id": raised[0],
        "nominal_id": nominal_id,
        "recipient_agency_id": HOUSING,
        "raised_by_agency_id": POLICE,
        "uprn": "200004512340",
        "marker": "PWM",
        "contact": {"role": "mappa_unit", "telephone": "020 8000 0000"},
        "review_date": "2027-02-23",
        "status": "sent",
        "raised_at": entry["raised_at"],
    }
    for needle in (*SECRETS, OFFENCE):
        assert needle not in json.dumps(first), needle
    listed = [
        e
        for e in await world.audit(operation="disclosure", agency_id=PROBATION)
        if e.detail.get("listed") == KIND
    ]
    assert [e.record_refs for e in listed] == [raised[:2], raised[2:]]
    assert all(e.recipients == [PROBATION] and e.payload_digest for e in listed)


async def test_marker_details_are_sealed_at_rest(world: World) -> None:
    """The stored marker's UPRN and contact are not in the row in clear."""
    nominal_id = await _case(world)
    [marker_id] = await _raised(world, nominal_id)
    async with world.state.db.read() as session:
        row = await session.get(WarningMarker, marker_id)
    assert row is not None and row.status == "sent"
    assert b"200004512340" not in row.details_sealed and b"MAPPA unit" not in row.details_sealed


async def test_revocation_is_pushed_to_housing_with_its_audit_entry(world: World) -> None:
    """Revoking answers ``revoked``; housing is sent exactly the marker id, UPRN and code it
    already holds, sealed, never the reason or the date; the audit entry names housing, the
    rule that lets housing know of the nominal (its meeting, not the caller's rule), the reason
    code and the payload digest; the listing shows the marker revoked, with its reason."""
    nominal_id = await _case(world)
    [marker_id] = await _raised(world, nominal_id)
    answer = await world[POLICE].post(f"/v1/warning-markers/{marker_id}/revocation", REVOKE)
    assert answer == {"id": marker_id, "status": "revoked", "nominal_id": nominal_id, "kind": KIND}
    [pushed] = await world.pushed(HOUSING, REVOCATION)
    assert pushed == {
        "marker_id": marker_id,
        "uprn": "200004512340",
        "marker": "PWM",
        "revoked": True,
    }
    [row] = [r for r in await world.outbox(HOUSING) if r.kind == REVOCATION]
    assert row.body.count(".") == 4 and "200004512340" not in row.body
    [entry] = [
        e
        for e in await world.audit(operation="alteration", agency_id=POLICE)
        if e.detail.get("resource") == KIND
    ]
    assert entry.outcome == "allowed"
    assert entry.recipients == [HOUSING]
    assert entry.record_refs == [marker_id]
    assert entry.rule == "involved-meeting" and entry.detail["caller_rule"] != entry.rule
    assert "recipient_refused_by" not in entry.detail
    assert entry.detail["reason"] == "review_completed"
    assert entry.payload_digest and entry.payload_digest.startswith("sha256:")
    listed = await world[POLICE].get(f"/v1/nominals/{nominal_id}/warning-markers")
    [shown] = listed["warning_markers"]
    assert shown["status"] == "revoked"
    assert shown["revoked_by_agency_id"] == POLICE
    assert shown["revoked_reason"] == "review_completed"


async def test_revocation_honours_its_idempotency_key(world: World) -> None:
    """The same key and body replays the answer (one push); the same key with another body is
    422; a new key on a revoked marker is 409; nothing more is sent."""
    nominal_id = await _case(world)
    [marker_id] = await _raised(world, nominal_id)
    path = f"/v1/warning-markers/{marker_id}/revocation"
    key = new_key()
    first = await world[POLICE].post(path, REVOKE, key=key)
    again = await world[POLICE].post(path, REVOKE, key=key)
    assert again == first
    reused = await world[POLICE].refused("POST", path, {"reason": "left_property"}, key=key)
    assert reused.status == 422 and reused.code == "idempotency_key_reused"
    twice = await world[POLICE].refused("POST", path, REVOKE, key=new_key())
    assert twice.status == 409 and twice.code == "conflict"
    assert len(await world.pushed(HOUSING, REVOCATION)) == 1
    [refusal] = await world.audit(reason_code="conflict")
    assert refusal.record_refs == [marker_id] and refusal.outcome == "refused"


@pytest.mark.parametrize(
    ("who", "body", "status"),
    [
        (CS, REVOKE, 403),  # children's services attended the meeting: may know, may not revoke
        (HOUSING, REVOKE, 403),  # the recipient attended too: may know, may not revoke
        (JCP, REVOKE, 404),  # may not know of the nominal: as if the marker did not exist
        (WILTS_POLICE, REVOKE, 404),  # another area's RA: as if the marker did not exist
        (POLICE, {"reason": f"moved; {OFFENCE}"}, 422),  # free text where a code goes
        (POLICE, {"reason": "review_completed", "note": THIRD_PARTY_TEXT}, 422),  # unknown field
    ],
)
async def test_revocation_refused_changes_and_sends_nothing(
    world: World, who: str, body: dict[str, Any], status: int
) -> None:
    """A refused revocation leaves the marker active, sends housing nothing, leaks no text."""
    nominal_id = await _case(world)
    [marker_id] = await _raised(world, nominal_id)
    refused = await world[who].refused("POST", f"/v1/warning-markers/{marker_id}/revocation", body)
    assert refused.status == status
    assert OFFENCE not in json.dumps(refused.problem)
    assert THIRD_PARTY_TEXT not in json.dumps(refused.problem)
    assert await world.pushed(HOUSING, REVOCATION) == []
    async with world.state.db.read() as session:
        row = await session.get(WarningMarker, marker_id)
    assert row is not None and row.status == "sent" and row.revoked_at is None


@pytest.mark.parametrize(
    "marker_id",
    [
        "7d0f5c1e-0000-4000-8000-000000000000",  # well formed, no such marker
        "not-a-marker-id",  # not an id at all
        "' OR 1=1 --",  # SQL, not an id
    ],
)
async def test_revoking_an_unknown_marker_is_404(world: World, marker_id: str) -> None:
    """Unknown and malformed ids answer the same 404, and the refusal is audited."""
    await at_level_2(world)
    refused = await world[POLICE].refused(
        "POST", f"/v1/warning-markers/{marker_id}/revocation", REVOKE
    )
    assert refused.status == 404 and refused.code == "not_found"
    assert await world.audit(reason_code="not_found")


async def test_plain_json_revocation_is_415_and_stores_nothing(world: World) -> None:
    """Case writes are application/jose only."""
    nominal_id = await _case(world)
    [marker_id] = await _raised(world, nominal_id)
    response = await world[POLICE].raw(
        "POST",
        f"/v1/warning-markers/{marker_id}/revocation",
        content=json.dumps(REVOKE),
        content_type="application/json",
    )
    assert response.status_code == 415
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await world.pushed(HOUSING, REVOCATION) == []


@pytest.mark.parametrize(
    ("who", "params", "status"),
    [
        (CS, {}, 403),  # may know the nominal (attended), is no Responsible Authority
        (HOUSING, {}, 403),  # the marker's recipient (attended) does not list the RA's markers
        (JCP, {}, 404),  # may not know of the nominal: no such nominal
        (WILTS_POLICE, {}, 404),  # another area's police: no such nominal
        (POLICE, {"cursor": "not-a-cursor"}, 400),  # a malformed cursor
        (POLICE, {"limit": "1000"}, 400),  # a page over the limit
        (POLICE, {"uprn": "200004512340"}, 400),  # no filtering by property
    ],
)
async def test_listing_refused_discloses_nothing(
    world: World, who: str, params: dict[str, str], status: int
) -> None:
    """Only an RA agency that may know the nominal lists its markers; bad parameters are 400."""
    nominal_id = await _case(world)
    await _raised(world, nominal_id)
    refused = await world[who].refused(
        "GET", f"/v1/nominals/{nominal_id}/warning-markers", **params
    )
    assert refused.status == status
    assert "200004512340" not in json.dumps(refused.problem)


async def test_concurrent_revocations_revoke_once(any_world: World) -> None:
    """Two revocations with different keys race: one answers ``revoked``, the other 409, and
    housing is sent one revocation (SQLite and PostgreSQL)."""
    world = any_world
    nominal_id = await _case(world)
    [marker_id] = await _raised(world, nominal_id)
    path = f"/v1/warning-markers/{marker_id}/revocation"
    await world[POLICE].client.token()
    results = await asyncio.gather(
        world[POLICE].post(path, REVOKE, key=new_key()),
        world[POLICE].post(path, REVOKE, key=new_key()),
        return_exceptions=True,
    )
    answers = [r for r in results if isinstance(r, dict)]
    conflicts = [r for r in results if isinstance(r, GatewayResponseError)]
    assert len(answers) == 1 and answers[0]["status"] == "revoked"
    assert [c.status for c in conflicts] == [409]
    assert len([r for r in await world.outbox(HOUSING) if r.kind == REVOCATION]) == 1


async def test_housing_adapter_removes_the_pwm_on_revocation(world: World, tmp_path: Path) -> None:
    """The marker and its revocation, opened by housing, leave the property without the PWM;
    a redelivered revocation changes nothing; another marker on the property stays."""
    nominal_id = await _case(world)
    [marker_id] = await _raised(world, nominal_id)
    await world[POLICE].post(f"/v1/warning-markers/{marker_id}/revocation", REVOKE)
    [pushed] = await world.pushed(HOUSING, KIND)
    [revocation] = await world.pushed(HOUSING, REVOCATION)
    store = JsonStore(tmp_path / "housing.json")
    uprn = "200004512340"
    other = {"code": "PWM", "marker_id": "another", "message_id": "m-0"}
    store.put("properties", uprn, {"uprn": uprn, "markers": [other]})
    adapter = HousingAdapter(store)
    adapter.receive(Delivery("7d0f5c1e-0000-4000-8000-0000000000c1", KIND, pushed, "gw"))
    prop = store.get("properties", uprn)
    assert prop is not None and len(prop["markers"]) == 2
    removal = Delivery("7d0f5c1e-0000-4000-8000-0000000000c2", REVOCATION, revocation, "gw")
    assert adapter.receive(removal).action == "warning_marker_removed"
    assert (store.get("properties", uprn) or {})["markers"] == [other]
    assert adapter.receive(removal).action == "warning_marker_absent"
    assert (store.get("properties", uprn) or {})["markers"] == [other]


# -- the housing provider must be one that may know of the nominal -----------------------------


async def _category_4(world: World) -> str:
    return await _case(world, category="M4")


async def _deregistered(world: World) -> str:
    nominal_id = await _case(world)
    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/deregistration", {"reason": "Registration period ended"}
    )
    return nominal_id


async def _not_involved(world: World) -> str:
    return await at_level_2(world)


@pytest.mark.parametrize(
    ("case", "rule"),
    [
        # terrorism: only police and probation of the area, even though housing attended
        (_category_4, "category-4-named-agencies"),
        # deregistration ended housing's meeting involvement: no rule grants
        (_deregistered, "default-deny"),
        # level 2, housing took no part in the case: no rule grants
        (_not_involved, "default-deny"),
    ],
)
async def test_marker_for_a_provider_that_may_not_know_the_nominal_is_refused(
    any_world: World, case: Any, rule: str
) -> None:
    """409 recipient_may_not_know, audited with the rule that refused housing; no marker row,
    nothing queued for housing, no disclosure entry."""
    world = any_world
    nominal_id = await case(world)
    refused = await world[POLICE].refused("POST", "/v1/warning-markers", marker(nominal_id))
    assert refused.status == 409 and refused.code == "conflict"
    assert UPRN not in json.dumps(refused.problem)
    [entry] = [
        e
        for e in await world.audit(agency_id=POLICE, outcome="refused")
        if e.detail.get("reason") == "recipient_may_not_know"
    ]
    assert entry.rule == rule
    assert entry.detail["recipient"] == HOUSING
    assert entry.nominal_ref == nominal_id
    assert await world.count(WarningMarker) == 0
    assert [r for r in await world.outbox(HOUSING) if r.kind == KIND] == []
    assert not [
        e for e in await world.audit(operation="disclosure") if e.detail.get("resource") == KIND
    ]


@pytest.mark.parametrize(
    ("level", "rule"),
    [
        (2, "involved-meeting"),  # housing attended the MAPP meeting
        (1, "level-1-monthly-list"),  # a level 1 nominal of its area is on housing's list
    ],
)
async def test_marker_disclosure_is_audited_with_the_providers_rule(
    any_world: World, level: int, rule: str
) -> None:
    """The marker's disclosure entry names the rule that let housing know of the nominal, not
    the raiser's (which is in the detail)."""
    world = any_world
    nominal_id = await (_case(world) if level == 2 else referred(world))
    answer = await world[POLICE].post("/v1/warning-markers", marker(nominal_id))
    [pushed] = await world.pushed(HOUSING, KIND)
    assert pushed["marker_id"] == answer["id"]
    [entry] = [
        e
        for e in await world.audit(operation="disclosure", agency_id=POLICE)
        if e.detail.get("resource") == KIND
    ]
    assert entry.recipients == [HOUSING]
    assert entry.rule == rule
    assert entry.detail["caller_rule"] in {"lead-agency", "responsible-authority-of-area"}


async def test_a_marker_stored_with_a_free_text_contact_is_listed_without_it(
    any_world: World,
) -> None:
    """A marker stored before contacts had a shape (free text, since refused at the contract)
    is still listed to the Responsible Authority, without its contact: the text never leaves
    (the listing was a 500 for good)."""
    world = any_world
    nominal_id = await _case(world)
    raised = await world[POLICE].post("/v1/warning-markers", marker(nominal_id))
    sealer = world.state.case_sealer
    assert sealer is not None
    async with world.state.db.write() as session:
        row = await session.get(WarningMarker, raised["id"])
        assert row is not None
        stored = sealer.unseal("warning_markers", row.id, "details_sealed", row.details_sealed)
        legacy = {**stored, "contact": "DS Hale re his indecent images case"}
        row.details_sealed = sealer.seal("warning_markers", row.id, "details_sealed", legacy)
    listed = await world[POLICE].get(f"/v1/nominals/{nominal_id}/warning-markers")
    [entry] = listed["warning_markers"]
    assert entry["id"] == raised["id"] and "contact" not in entry
    assert "indecent" not in repr(listed)
