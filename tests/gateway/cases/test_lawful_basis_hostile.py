"""THREATS.md, "Lawful basis and need-to-know", as hostile tests through the HTTP API."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from adapters.client import ContextHeaders
from gateway.store.models import (
    ContributorDecision,
    HazardFlag,
    InformationRecord,
    Meeting,
    Nominal,
    OnwardDisclosureRequest,
    OutboxMessage,
    Referral,
    WarningMarker,
)
from tests.gateway.cases.scenario import (
    CP_CONFERENCE,
    CS,
    HOUSING,
    JCP,
    MAPPA,
    MENTAL_HEALTH,
    PNC,
    POLICE,
    PROBATION,
    THIRD_PARTY_CONCLUSION,
    THIRD_PARTY_TEXT,
    VICTIM_SUPPORT,
    WILTS_POLICE,
    at_level_1,
    at_level_2,
    disclosure_request,
    level_2_meeting,
    minutes,
    record,
    referral,
)
from tests.gateway.cases.support import TODAY, Agent, World


class Statements:
    """Every SQL statement the gateway runs while the block is open (to show what was read)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.seen.append(statement)

    def touching(self, table: str) -> list[str]:
        return [s for s in self.seen if re.search(rf"\b{table}\b", s)]


@pytest.fixture
def statements(any_world: World) -> Iterator[Statements]:
    spy = Statements()
    db = any_world.state.db
    engines = {db.engine.sync_engine, db.writer.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", spy)
    yield spy
    for engine in engines:
        event.remove(engine, "before_cursor_execute", spy)


CASE_TABLES = ("nominals", "information_records", "meetings", "minutes", "referrals")


@pytest.mark.parametrize(
    ("asker", "basis", "purpose", "rule", "code"),
    [
        # A basis that is not in the register.
        (
            HOUSING,
            "GDPR-art6",
            "risk-management",
            "lawful-basis-registered",
            "lawful_basis_unknown",
        ),
        # A purpose the basis does not allow (s.325(4) is not for public disclosure).
        (
            POLICE,
            "CJA2003-s325-4",
            "public-disclosure",
            "purpose-allowed-for-basis",
            "purpose_not_allowed",
        ),
        # A basis the caller's role may not use: s.327A is the Responsible Authority's alone.
        (
            HOUSING,
            "CJA2003-s327A",
            "public-disclosure",
            "role-allowed-for-basis",
            "role_not_allowed",
        ),
        # A basis the caller's agency type may not use: DPA 2018 s.35 is for competent authorities.
        (
            HOUSING,
            "DPA2018-s35",
            "risk-management",
            "agency-type-allowed-for-basis",
            "role_not_allowed",
        ),
    ],
)
async def test_unlawful_basis_is_refused_before_any_case_data_is_read(
    any_world: World,
    statements: Statements,
    asker: str,
    basis: str,
    purpose: str,
    rule: str,
    code: str,
) -> None:
    """403 lawful_basis_refused, audited with the rule; no case table was touched."""
    world = any_world
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    statements.seen.clear()
    refused = await world[asker].refused(
        "GET", f"/v1/nominals/{nominal_id}", context=world[asker].with_context(basis, purpose)
    )
    assert refused.status == 403
    assert refused.code == "lawful_basis_refused"
    # the spy hears this backend's statements (the refusal's own audit write), so its silence
    # about the case tables means something
    assert statements.touching("audit_entries"), statements.seen
    for table in CASE_TABLES:
        assert not statements.touching(table), table
    entry = (await world.audit(agency_id=asker, outcome="refused"))[-1]
    assert entry.rule == rule
    assert entry.reason_code == code
    assert entry.legal_basis == basis
    assert entry.purpose == purpose
    assert entry.policy_version


async def test_missing_basis_header_is_400_and_audited(any_world: World) -> None:
    """No MAPPA-Legal-Basis at all: 400 invalid_context before anything else, audited."""
    world = any_world
    nominal_id = await at_level_2(world)
    headers = await world[POLICE].headers("GET", f"/v1/nominals/{nominal_id}")
    del headers["MAPPA-Legal-Basis"]
    response = await world.http.get(f"/v1/nominals/{nominal_id}", headers=headers)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_context"
    entry = (await world.audit(agency_id=POLICE, outcome="refused"))[-1]
    assert entry.reason_code == "mappa-legal-basis_missing"


def _without_request_id(response_body: bytes) -> dict[str, Any]:
    body = json.loads(response_body)
    assert body.pop("request_id")
    return dict(body)


async def test_no_need_to_know_answers_exactly_as_a_nonexistent_id(any_world: World) -> None:
    """Housing, not involved, gets the same 404 bytes (bar the request id) for a real nominal,
    a nonexistent one and a malformed id; only the audit says which."""
    world = any_world
    nominal_id = await at_level_2(world)
    answers = []
    for target in (nominal_id, str(uuid.uuid4()), "not-a-gateway-id"):
        response = await world[HOUSING].raw("GET", f"/v1/nominals/{target}")
        assert response.status_code == 404
        answers.append((dict(response.headers), response.content))
    bodies = [_without_request_id(content) for _, content in answers]
    assert bodies[0] == bodies[1] == bodies[2]
    strip = re.compile(rb'"request_id":"[^"]*"')
    assert strip.sub(b"", answers[0][1]) == strip.sub(b"", answers[1][1])
    skip = {"x-request-id", "content-length", "date"}
    headers = [{k: v for k, v in h.items() if k not in skip} for h, _ in answers]
    assert headers[0] == headers[1]
    refusals = (await world.audit(agency_id=HOUSING, outcome="refused"))[-3:]
    assert [e.rule for e in refusals] == ["default-deny", "resource-exists", "resource-exists"]
    assert [e.reason_code for e in refusals] == ["no_need_to_know", "not_found", "not_found"]


async def test_records_and_minutes_hidden_the_same_way(any_world: World) -> None:
    """A record or minutes the caller may not know of are 404 like ids that do not exist."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id, {PROBATION: "attended"})
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    created = await world[PROBATION].post(
        f"/v1/nominals/{nominal_id}/records", {"kind": "case_note", "summary": "s"}
    )
    for path in (
        f"/v1/nominals/{nominal_id}/records/{created['id']}",
        f"/v1/nominals/{nominal_id}/records/{uuid.uuid4()}",
        f"/v1/meetings/{meeting_id}/minutes",
        f"/v1/meetings/{uuid.uuid4()}/minutes",
    ):
        response = await world[HOUSING].raw("GET", path)
        assert response.status_code == 404, path
        assert _without_request_id(response.content) == {
            "type": "https://mappa-gateway.invalid/problems/not_found",
            "title": "No such resource",
            "status": 404,
            "code": "not_found",
        }


async def test_agency_calling_ig_endpoints_is_403_and_audited(any_world: World) -> None:
    """The audit log's entries are for IG only: an agency gets 403, and the attempt is audited."""
    world = any_world
    response = await world[HOUSING].raw("GET", "/v1/audit/entries")
    assert response.status_code == 403
    entry = (await world.audit(agency_id=HOUSING, outcome="refused"))[-1]
    assert entry.rule == "ig-endpoints-only"


async def test_non_ra_agency_cannot_change_level_even_when_involved(any_world: World) -> None:
    """Housing attended the meeting and sees the nominal, but a level change is the RA's: 403."""
    world = any_world
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    refused = await world[HOUSING].refused(
        "POST", f"/v1/nominals/{nominal_id}/level", {"level": 1, "reason": "x"}
    )
    assert refused.status == 403
    assert (await world[POLICE].get(f"/v1/nominals/{nominal_id}"))["level"] == 2
    entry = (await world.audit(agency_id=HOUSING, outcome="refused"))[-1]
    assert entry.rule == "responsible-authority-only"


async def test_level_change_ends_access_under_a_still_valid_token(any_world: World) -> None:
    """Housing reads the case, the RA moves it to level 3, housing's next call (same token)
    is refused: the meeting's involvement ended with the level."""
    world = any_world
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    await world[HOUSING].get(f"/v1/nominals/{nominal_id}")
    token = await world[HOUSING].client.token()
    await world[POLICE].post(f"/v1/nominals/{nominal_id}/level", {"level": 3, "reason": "media"})
    refused = await world[HOUSING].refused("GET", f"/v1/nominals/{nominal_id}")
    assert refused.status == 404
    assert await world[HOUSING].client.token() == token  # the same token, still valid
    entry = (await world.audit(agency_id=HOUSING, outcome="refused"))[-1]
    assert entry.rule == "default-deny"


async def test_review_date_and_deregistration_end_access(any_world: World) -> None:
    """The day after the review date, and after deregistration, the next request is refused."""
    world = any_world
    nominal_id = await at_level_2(world)
    await world[POLICE].post(
        "/v1/meetings",
        {
            "nominal_id": nominal_id,
            "meeting_type": "level_2",
            "held_on": TODAY.isoformat(),
            "review_date": (TODAY + dt.timedelta(days=1)).isoformat(),
            "chair_officer": "DI-1",
            "participants": [{"agency_id": HOUSING, "participation": "attended"}],
            "confidentiality_statement_signed": True,
        },
    )
    await level_2_meeting(world, nominal_id, {JCP: "minutes_only"})
    world.clock.advance(days=2)  # the day after the review date, in London
    assert (await world[HOUSING].refused("GET", f"/v1/nominals/{nominal_id}")).status == 404
    await world[JCP].get(f"/v1/nominals/{nominal_id}")  # the other meeting has no review date
    await world[POLICE].post(f"/v1/nominals/{nominal_id}/deregistration", {"reason": "died"})
    assert (await world[JCP].refused("GET", f"/v1/nominals/{nominal_id}")).status == 404


async def test_body_signed_by_another_agency_is_refused(any_world: World) -> None:
    """Police seal a body; housing sends it as its own. The sender in the token, the signer and
    the signed body's issuer disagree: 400 unreadable_body, nothing stored."""
    world = any_world
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    sealed = await world[POLICE].client.seal({"kind": "case_note", "summary": "forged"})
    before = await world.count(InformationRecord)
    response = await world[HOUSING].raw(
        "POST", f"/v1/nominals/{nominal_id}/records", content=sealed
    )
    assert response.status_code == 400
    assert response.json()["code"] == "unreadable_body"
    assert await world.count(InformationRecord) == before


async def test_record_owner_is_the_token_agency_never_the_body(any_world: World) -> None:
    """A body naming an owner is refused (unknown field): ownership comes from the token."""
    world = any_world
    nominal_id = await at_level_2(world)
    refused = await world[PROBATION].refused(
        "POST",
        f"/v1/nominals/{nominal_id}/records",
        {"kind": "case_note", "summary": "s", "owner_agency_id": POLICE},
    )
    assert refused.status == 422


async def test_minutes_to_non_participant_only_with_approval_and_only_what_was_approved(
    any_world: World,
) -> None:
    """Mental health was invited but did not attend: no minutes. The conference gets nothing
    until the chair approves, then only the approved conclusions, no third party."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    path = f"/v1/meetings/{meeting_id}/minutes"
    assert (await world[MENTAL_HEALTH].refused("GET", path)).status == 404
    cp = world[CP_CONFERENCE].with_context("CA1989-s47", "child-protection")
    assert (await world[CP_CONFERENCE].refused("GET", path, context=cp)).status == 404
    asked = await world[CS].post("/v1/disclosures", disclosure_request(meeting_id, CP_CONFERENCE))
    assert (await world[CP_CONFERENCE].refused("GET", path, context=cp)).status == 404
    await world[POLICE].post(
        f"/v1/disclosures/{asked['id']}/decision",
        {"decision": "approve", "approved_parts": ["conclusions"], "reason": "s.47 enquiry"},
    )
    seen = await world[CP_CONFERENCE].get(path, context=cp)
    assert set(seen) <= {"meeting_id", "held_on", "marking", "conclusions"}
    assert [c["id"] for c in seen["conclusions"]] == ["k1"]
    assert THIRD_PARTY_CONCLUSION not in repr(seen)
    assert THIRD_PARTY_TEXT not in repr(seen)


async def test_missing_scope_is_403_and_audited(any_world: World) -> None:
    """An agency registered to read only may not write."""
    world = any_world
    reader = await world.register(
        "barnet-reader", "housing", "duty_to_cooperate", scopes=["case:read"]
    )
    refused = await reader.refused("POST", "/v1/referrals", {"kind": "mappa"})
    assert refused.status == 403
    assert refused.code == "insufficient_scope"
    entry = (await world.audit(agency_id="barnet-reader", outcome="refused"))[-1]
    assert entry.reason_code == "insufficient_scope"


def test_context_headers_used_by_these_tests_are_lawful() -> None:
    """The default context (s.325(4), risk management) is in the register for RA and DTC."""
    import policies
    from gateway.domain import AgencyType, Role

    decision = policies.check(
        "CJA2003-s325-4", "risk-management", Role.DUTY_TO_COOPERATE, AgencyType.HOUSING
    )
    assert decision.rule == "legal-basis:CJA2003-s325-4"
    assert ContextHeaders("a", "b", "c").as_headers()["MAPPA-Officer"] == "c"


def _ra_only_calls(nominal_id: str) -> list[tuple[str, dict[str, Any], str]]:
    """Every Responsible-Authority-only change, as (path, body, the refusal's rule). The marker
    and the flag come first: once the level, category or registration changes, housing and
    children's services may no longer be sent them (a refusal of its own, 409)."""
    later = (TODAY + dt.timedelta(days=60)).isoformat()
    rule = "responsible-authority-of-area-only"
    return [
        (
            "/v1/warning-markers",
            {
                "nominal_id": nominal_id,
                "recipient_agency_id": HOUSING,
                "uprn": "100012345678",
                "marker": "PWM",
                "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
                "review_date": later,
            },
            rule,
        ),
        (
            "/v1/hazard-flags",
            {
                "nominal_id": nominal_id,
                "recipient_agency_id": CS,
                "child_or_family_ref": "CF-1",
                "relationship": "father",
                "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
            },
            rule,
        ),
        (f"/v1/nominals/{nominal_id}/level", {"level": 3, "reason": "x"}, rule),
        (f"/v1/nominals/{nominal_id}/category", {"category": "M4", "reason": "x"}, rule),
        (f"/v1/nominals/{nominal_id}/deregistration", {"reason": "x"}, rule),
        (
            f"/v1/nominals/{nominal_id}/contributors",
            {
                "agency_id": VICTIM_SUPPORT,
                "purposes": ["risk-assessment"],
                "reason": "x",
                "ends_on": later,
            },
            rule,
        ),
        (
            "/v1/meetings",
            {
                "nominal_id": nominal_id,
                "meeting_type": "level_2",
                "held_on": TODAY.isoformat(),
                "chair_officer": "DI-9",
                "participants": [{"agency_id": HOUSING, "participation": "attended"}],
                "confidentiality_statement_signed": True,
            },
            "convened-by-responsible-authority",
        ),
    ]


async def test_another_areas_ra_involved_in_a_meeting_may_not_manage_the_case(
    any_world: World,
) -> None:
    """Wiltshire police, invited to Barnet's level 2 meeting (the subject may move), sees the
    case, but the case is Barnet's RA's to manage: each change is 403, audited with the rule,
    and nothing is stored or sent (no level, category or status change, no decision, marker,
    flag, meeting or outbox message)."""
    world = any_world
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id, {HOUSING: "attended", WILTS_POLICE: "invited"})
    assert (await world[WILTS_POLICE].get(f"/v1/nominals/{nominal_id}"))["id"] == nominal_id
    before = await world[POLICE].get(f"/v1/nominals/{nominal_id}")
    stored = [ContributorDecision, WarningMarker, HazardFlag, Meeting, OutboxMessage]
    counts = [await world.count(model) for model in stored]
    for path, body, rule in _ra_only_calls(nominal_id):
        refused = await world[WILTS_POLICE].refused("POST", path, body)
        assert refused.status == 403, (path, refused.problem)
        entry = (await world.audit(agency_id=WILTS_POLICE, outcome="refused"))[-1]
        assert entry.rule == rule, path
    assert [await world.count(model) for model in stored] == counts
    assert await world[POLICE].get(f"/v1/nominals/{nominal_id}") == before
    # housing, which attended, still sees the case: nothing was deregistered or re-categorised
    assert (await world[HOUSING].get(f"/v1/nominals/{nominal_id}"))["id"] == nominal_id
    assert not await world.audit(agency_id=WILTS_POLICE, operation="alteration", outcome="allowed")


async def test_the_areas_ra_and_the_lead_agency_still_manage_the_case(any_world: World) -> None:
    """The same calls by Barnet's own RA succeed (the refusal above is the area, not the
    calls): probation of the area raises the marker, police (the lead) the rest."""
    world = any_world
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id, {HOUSING: "attended", WILTS_POLICE: "invited"})
    for path, body, _ in _ra_only_calls(nominal_id):
        caller = PROBATION if "warning-markers" in path else POLICE
        assert (await world[caller].post(path, body))["id"], path


async def test_a_referral_does_not_say_whether_the_subject_is_already_registered(
    any_world: World,
) -> None:
    """Housing refers a made-up subject carrying the PNC id of a registered level 2 nominal,
    and one carrying a PNC id nobody has: the two answers are the same (no nominal id in
    either: housing may know neither nominal), so a referral cannot be used to test whether
    an identifier is a registered case, or to learn its gateway id. Police, the RA of the
    area, may know both, and is told both ids."""
    world = any_world
    existing = await at_level_2(world)
    subject = {**referral()["subject"], "family_name": "Probe", "given_names": "Made Up"}
    lead = {"lead_agency_id": PROBATION}
    linked = await world[HOUSING].post("/v1/referrals", referral(subject=subject, **lead))
    fresh = await world[HOUSING].post(
        "/v1/referrals",
        referral(subject={**subject, "pnc_id": "2001/0000009Z", "crn": "Z999999"}, **lead),
    )
    assert "nominal_id" not in linked and "nominal_id" not in fresh
    assert set(linked) == set(fresh) and linked["status"] == fresh["status"] == "received"
    # Nor does a lookup afterwards: housing sees level 1 nominals only on the monthly list, so
    # the nominal the fresh referral registered is as unknown to it as the case the other was
    # linked to; and the linked referral is on the case, for the RA to read.
    for pnc in (PNC, "2001/0000009Z"):
        refused = await world[HOUSING].refused("POST", "/v1/nominals/lookup", {"pnc": pnc})
        assert refused.status == 404
    assert "linked" in await _referral_statuses(world, existing)
    assert (await world[POLICE].post("/v1/referrals", referral()))["nominal_id"] == existing
    other = await world[POLICE].post(
        "/v1/referrals", referral(subject={**subject, "pnc_id": "2001/0000008Y", "crn": "Z999998"})
    )
    assert other["nominal_id"] not in (None, existing)


async def test_a_referral_does_not_say_whether_a_category_4_case_is_registered(
    world: World,
) -> None:
    """The prison and the MAPPA unit, RA agencies that may not see category 4, would be told
    the id of the nominal a fresh referral makes, and no id when the PNC id is that of a category
    4 nominal: the difference says that a terrorism case is registered. Neither is told an id
    either way (they find the nominal by lookup); police, named for category 4, is told both."""
    prison = await world.register("barnet-prison", "prison", "responsible_authority")
    hidden = await at_level_2(world)
    change = {"category": "M4", "reason": "terrorism risk"}
    await world[POLICE].post(f"/v1/nominals/{hidden}/category", change)
    world.clock.advance(seconds=1)  # the referrals' nominals are registered after the case
    fresh_subject = {**referral()["subject"], "pnc_id": "2001/0000001Z", "crn": "Z000001"}
    for caller in (prison, world[MAPPA]):
        assert (await caller.refused("GET", f"/v1/nominals/{hidden}")).status == 404
        linked = await caller.post("/v1/referrals", referral(category="M2", agencies_involved=[]))
        fresh = await caller.post(
            "/v1/referrals", referral(category="M2", agencies_involved=[], subject=fresh_subject)
        )
        assert "nominal_id" not in linked and "nominal_id" not in fresh
        assert set(linked) == set(fresh) and linked["status"] == fresh["status"] == "received"
        # each referral made a nominal, which the referrer may know of and finds by its PNC
        # id: the category 4 case's PNC id answers as a fresh subject's does (not linked to it)
        for pnc in (fresh_subject["pnc_id"], PNC):
            found = await caller.post("/v1/nominals/lookup", {"pnc": pnc})
            assert found["id"] != hidden
    # Police, who may know of every nominal carrying the PNC id, finds the registered case (the
    # older) by lookup, and its own referral is linked to it
    assert (await world[POLICE].post("/v1/nominals/lookup", {"pnc": PNC}))["id"] == hidden
    linked = await world[POLICE].post("/v1/referrals", referral(category="M2"))
    assert linked["nominal_id"] == hidden


async def _referral_statuses(world: World, nominal_id: str) -> list[str]:
    async with world.state.db.read() as session:
        query = select(Referral.status).where(Referral.nominal_id == nominal_id)
        return [str(status) for status in (await session.scalars(query)).all()]


async def test_referrals_are_linked_to_a_case_the_referrer_may_know_and_never_pile_up(
    world: World,
) -> None:
    """The prison may know of a category 2 case of its area: its referral of the case's PNC id
    is linked to it, registering nothing. Of a category 4 case it may not know: its first
    referral registers a nominal of its own, its later ones are linked to that nominal, never
    adding another. Police's lookup by the PNC id finds the registered case, the oldest, however
    many nominals registered later carry the identifiers (more than it reads candidates of)."""
    prison = await world.register("barnet-prison", "prison", "responsible_authority")
    case = await at_level_2(world)
    world.clock.advance(seconds=1)
    before = await world.count(Nominal)
    await prison.post("/v1/referrals", referral(agencies_involved=[]))
    assert await world.count(Nominal) == before
    assert "linked" in await _referral_statuses(world, case)

    await world[POLICE].post(f"/v1/nominals/{case}/category", {"category": "M4", "reason": "t"})
    world.clock.advance(seconds=1)
    for _ in range(3):
        await prison.post("/v1/referrals", referral(category="M2", agencies_involved=[]))
        world.clock.advance(seconds=1)
    assert await world.count(Nominal) == before + 1  # one of the prison's own
    async with world.state.db.write() as session:  # eleven more, registered later still
        registered = await session.get(Nominal, case)
        assert registered is not None
        for n in range(11):
            world.clock.advance(seconds=1)
            session.add(
                Nominal(
                    id=str(uuid.uuid4()),
                    area=registered.area,
                    category=2,
                    level=1,
                    lead_agency_id=POLICE,
                    status="active",
                    pnc_index=registered.pnc_index,
                    created_at=world.clock.now,
                    updated_at=world.clock.now,
                )
            )
    assert (await world[POLICE].post("/v1/nominals/lookup", {"pnc": PNC}))["id"] == case


def _cursor_ids(pages: list[dict[str, Any]]) -> list[str]:
    """The row id each page's cursor was made from (a cursor is base64url JSON [time, id])."""
    ids = []
    for page in pages:
        if "next_cursor" in page:
            cursor = page["next_cursor"]
            ids.append(json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[1])
    return ids


async def _pages(agent: Agent, path: str, name: str, limit: str) -> list[dict[str, Any]]:
    pages = [await agent.get(path, limit=limit)]
    while "next_cursor" in pages[-1]:
        assert pages[-1][name], "a page with a cursor holds something"
        pages.append(await agent.get(path, limit=limit, cursor=pages[-1]["next_cursor"]))
    return pages


@pytest.mark.parametrize("limit", ["1", "2", "3"])
async def test_level_1_list_pages_neither_show_nor_count_category_4(
    any_world: World, limit: str
) -> None:
    """Category 4 nominals interleaved with three others on the level 1 list: housing pages
    through exactly the three, in order; no page is short or empty because of a hidden one,
    and no cursor is made from one (a cursor is opaque, not encrypted: before, an empty page's
    cursor carried a category 4 nominal's id and creation time)."""
    world = any_world
    shown, hidden = [], []
    for n in range(6):
        world.clock.advance(seconds=1)
        subject = {**referral()["subject"], "pnc_id": f"2010/00000{n:02d}A", "crn": f"Z0000{n:02d}"}
        nominal_id = await at_level_1(world, subject=subject, category="M4" if n % 2 == 0 else "M2")
        (hidden if n % 2 == 0 else shown).append(nominal_id)
    pages = await _pages(world[HOUSING], "/v1/level-1-list", "entries", limit)
    assert [e["id"] for page in pages for e in page["entries"]] == shown
    assert len(pages) == -(-len(shown) // int(limit))  # no page more than the visible rows need
    assert set(_cursor_ids(pages)) <= set(shown)
    assert not any(h in json.dumps(pages) for h in hidden)
    police = await _pages(world[POLICE], "/v1/level-1-list", "entries", limit)
    assert len([e for page in police for e in page["entries"]]) == 6


async def test_record_pages_neither_show_nor_count_records_the_caller_may_not_see(
    any_world: World,
) -> None:
    """Probation's records alternate with ones housing may not see (originator-only): housing
    pages one at a time through its own view alone, and no cursor names a hidden record."""
    world = any_world
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    shown, hidden = [], []
    for n in range(6):
        world.clock.advance(seconds=1)
        caveats = ["originator-only"] if n % 2 == 0 else []
        answer = await world[PROBATION].post(
            f"/v1/nominals/{nominal_id}/records", record(caveats=caveats)
        )
        (hidden if caveats else shown).append(answer["id"])
    path = f"/v1/nominals/{nominal_id}/records"
    pages = await _pages(world[HOUSING], path, "records", "1")
    assert [r["id"] for page in pages for r in page["records"]] == shown
    assert len(pages) == len(shown)
    assert set(_cursor_ids(pages)) <= set(shown)
    assert not any(h in json.dumps(pages) for h in hidden)


async def test_only_the_chair_or_coordinator_decides_and_a_refusal_discloses_nothing(
    any_world: World,
) -> None:
    """Children's services asks to share the minutes with the conference. Neither it (the
    requester, a participant) nor probation (a participant, not the chair) may decide: 403 to
    the requester, which may read the request, and to probation, which may not, the 404 its
    read of the request gets (as for one that does not exist), each audited with the rule; the
    request still pending, nothing sent. The chair refuses: the conference still gets 404,
    nothing is pushed to it, and no disclosure names it."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    asked = await world[CS].post("/v1/disclosures", disclosure_request(meeting_id, CP_CONFERENCE))
    decision = f"/v1/disclosures/{asked['id']}/decision"
    approve = {"decision": "approve", "approved_parts": ["conclusions"], "reason": "x"}
    for who, status, rule in (
        (CS, 403, "chair-or-coordinator"),
        (PROBATION, 404, "onward-disclosure-requester-or-chair-or-coordinator"),
    ):
        refused = await world[who].refused("POST", decision, approve)
        assert refused.status == status, who
        assert (await world.audit(agency_id=who, outcome="refused"))[-1].rule == rule
        if status == 404:  # the body of a request that does not exist
            unknown = f"/v1/disclosures/{uuid.uuid4()}/decision"
            absent = await world[who].refused("POST", unknown, approve)
            assert {**refused.problem, "request_id": 0} == {**absent.problem, "request_id": 0}
    async with world.state.db.read() as session:
        row = await session.get(OnwardDisclosureRequest, asked["id"])
        assert row is not None and row.status == "pending"
    assert await world.pushed(CP_CONFERENCE) == []
    refusal = await world[POLICE].post(decision, {"decision": "refuse", "reason": "not needed"})
    assert refusal["status"] == "refused"
    cp = world[CP_CONFERENCE].with_context("CA1989-s47", "child-protection")
    path = f"/v1/meetings/{meeting_id}/minutes"
    assert (await world[CP_CONFERENCE].refused("GET", path, context=cp)).status == 404
    assert await world.pushed(CP_CONFERENCE) == []
    assert not [
        entry
        for entry in await world.audit(outcome="allowed")
        if CP_CONFERENCE in (entry.recipients or [])
    ]
    # decided once: approving afterwards is a conflict, and still sends nothing
    assert (await world[POLICE].refused("POST", decision, approve)).status == 409
    assert await world.pushed(CP_CONFERENCE) == []
