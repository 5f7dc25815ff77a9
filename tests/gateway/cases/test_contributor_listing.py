"""s.325(4A)(c) decisions listed and told: who lists a nominal's decisions (and sees which, with
or without the RA's reasons), and the ``contributor_decision`` message the contributor is sent
when a decision naming it is recorded or revoked. Every call is audited; no reason text reaches
any sink but the RA's own answers."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from adapters.client import ContextHeaders
from adapters.identity import AgencyIdentity
from gateway import agencies
from gateway.cases.contributors import NOTICE_KIND
from gateway.cases.explain import explain_access
from gateway.cases.held_notifications import release_held
from gateway.flow.audit import SALT_KEY
from gateway.store.models import AgencyKey, AuditEntry, ContributorDecision, HeldNotification
from tests.gateway.cases.scenario import (
    CS,
    HOUSING,
    MAPPA,
    POLICE,
    VICTIM_SUPPORT,
    WILTS_POLICE,
    at_level_2,
    level_2_meeting,
)
from tests.gateway.cases.support import TODAY, World, audit_entries_fail
from tests.gateway.cases.test_contributor_decisions import CONTRIBUTING, REASON, decision

BASIS = CONTRIBUTING.legal_basis
#: Another other contributor, with its own decision on the same nominal.
CIRCLES = "barnet-circles"
CIRCLES_REASON = "Circles volunteers meet him weekly; Mr Tobias Quennell-Hart coordinates"
#: An other contributor at the meeting that the RA recorded no decision for.
HAB = "barnet-hab-centre"
REVOCATION_REASON = "Ms Lorna Etheridge-Pike withdrew her consent on 22 November"
#: Reason text: never in any sink but the RA's own answers.
REASONS = (REASON, CIRCLES_REASON, REVOCATION_REASON)
LISTED = "contributor_decision"
UNKNOWN_NOMINAL = "00000000-0000-4000-8000-000000000000"


def _contributing(officer: str) -> ContextHeaders:
    return ContextHeaders(BASIS, CONTRIBUTING.purpose, officer)


#: The context each agency lists under: a contributor states s.325(4A)(c), the others s.325(4).
CONTEXTS: dict[str, ContextHeaders | None] = {
    VICTIM_SUPPORT: CONTRIBUTING,
    CIRCLES: _contributing("C-1"),
    HAB: _contributing("H-1"),
}


def _path(nominal_id: str) -> str:
    return f"/v1/nominals/{nominal_id}/contributors"


async def _recorded(world: World, nominal_id: str, **changes: Any) -> str:
    answer = await world[POLICE].post(_path(nominal_id), decision(**changes))
    assert answer["status"] == "recorded"
    world.clock.advance(seconds=1)  # decisions list oldest first
    return str(answer["id"])


async def _revoke(world: World, nominal_id: str, decision_id: str) -> None:
    await world[POLICE].post(
        f"{_path(nominal_id)}/{decision_id}/revocation", {"reason": REVOCATION_REASON}
    )
    world.clock.advance(seconds=1)


async def _case_with_two_contributors(world: World) -> tuple[str, dict[str, str]]:
    """A level 2 nominal whose meeting housing, victim support and the Hab Centre attended, with
    the RA's decisions for victim support and Circles (none for the Hab Centre)."""
    await world.register(CIRCLES, "other", "other_contributor")
    await world.register(HAB, "other", "other_contributor")
    nominal_id = await at_level_2(world)
    await level_2_meeting(
        world, nominal_id, {HOUSING: "attended", VICTIM_SUPPORT: "attended", HAB: "attended"}
    )
    decisions = {
        VICTIM_SUPPORT: await _recorded(world, nominal_id),
        CIRCLES: await _recorded(world, nominal_id, agency_id=CIRCLES, reason=CIRCLES_REASON),
    }
    return nominal_id, decisions


def _reasons_absent(text: str, where: str) -> None:
    for reason in REASONS:
        assert reason not in text, f"reason text found in {where}"


async def _last(world: World, who: str, outcome: str) -> AuditEntry:
    return (await world.audit(agency_id=who, outcome=outcome, operation="disclosure"))[-1]


# -- who lists which decisions ----------------------------------------------------------------

LISTINGS = [
    # responsible-authority-of-area: police list every decision, with the reasons recorded.
    pytest.param(POLICE, "all", "responsible-authority-of-area", id="police"),
    # responsible-authority-of-area: so does the area's MAPPA unit (an RA agency).
    pytest.param(MAPPA, "all", "responsible-authority-of-area", id="mappa-unit"),
    # contributor-named-in-decision: victim support lists its own decision, without the reason,
    # and never Circles'.
    pytest.param(VICTIM_SUPPORT, "own", "contributor-named-in-decision", id="victim-support"),
    # contributor-named-in-decision: Circles lists its own, never victim support's.
    pytest.param(CIRCLES, "own", "contributor-named-in-decision", id="circles"),
]


@pytest.mark.parametrize(("who", "sees", "rule"), LISTINGS)
async def test_who_lists_which_decisions(world: World, who: str, sees: str, rule: str) -> None:
    """The RA of the area sees every decision with its reasons; a contributor its own, with no
    reason; the listing is one disclosure entry naming the rule and the decisions listed."""
    nominal_id, decisions = await _case_with_two_contributors(world)
    answer = await world[who].get(_path(nominal_id), context=CONTEXTS.get(who))
    listed = answer["contributor_decisions"]
    expected = list(decisions.values()) if sees == "all" else [decisions[who]]
    assert [entry["id"] for entry in listed] == expected
    assert "next_cursor" not in answer
    first = listed[0]
    named = VICTIM_SUPPORT if sees == "all" else who
    assert first["agency_id"] == named and first["nominal_id"] == nominal_id
    assert first["purposes"] == ["mappa-meeting", "risk-assessment"]
    assert first["ends_on"] == (TODAY + dt.timedelta(days=60)).isoformat()
    assert first["review_date"] == (TODAY + dt.timedelta(days=30)).isoformat()
    assert first["decided_by_agency_id"] == POLICE and first["status"] == "standing"
    assert first["decided_at"].endswith("Z")
    if sees == "all":
        assert [entry["reason"] for entry in listed] == [REASON, CIRCLES_REASON]
    else:
        assert not {"reason", "revocation_reason"} & set(first)
        _reasons_absent(json.dumps(answer), f"the answer to {who}")
    entry = await _last(world, who, "allowed")
    assert entry.rule == rule and entry.detail["listed"] == LISTED
    assert entry.record_refs == expected and entry.recipients == [who]
    assert entry.nominal_ref == nominal_id and entry.payload_digest
    withheld = {w["field"] for w in entry.withheld}
    assert withheld == (
        set()
        if sees == "all"
        else {"contributor_decisions[].reason", "contributor_decisions[].revocation_reason"}
    )


REFUSALS = [
    # default-deny: housing attended the meeting, so may know of the nominal: 403, not 404.
    pytest.param(HOUSING, 403, "default-deny", id="housing-may-know"),
    # other-contributor-recorded: a contributor at the meeting with no decision of its own: the
    # nominal is unknown to it.
    pytest.param(HAB, 404, "other-contributor-recorded", id="contributor-without-decision"),
    # default-deny: children's services' referral tie ended at screening: unknown to it.
    pytest.param(CS, 404, "default-deny", id="childrens-services-uninvolved"),
    # default-deny: the police of another area: unknown to them.
    pytest.param(WILTS_POLICE, 404, "default-deny", id="other-area-police"),
]


@pytest.mark.parametrize(("who", "status", "rule"), REFUSALS)
async def test_others_are_refused_and_the_uninvolved_learn_nothing(
    world: World, who: str, status: int, rule: str
) -> None:
    """An agency that may know of the nominal gets 403; one that may not gets the 404 of an
    unknown nominal, the same bytes; either way the refusal is audited with its rule."""
    nominal_id, _ = await _case_with_two_contributors(world)
    agent, context = world[who], CONTEXTS.get(who)
    response = await agent.raw("GET", _path(nominal_id), context=context)
    assert response.status_code == status
    _reasons_absent(response.text, f"the refusal to {who}")
    entry = (await world.audit(agency_id=who, outcome="refused"))[-1]
    assert entry.rule == rule and entry.nominal_ref == nominal_id
    assert entry.request_id == response.headers["X-Request-ID"]
    if status == 404:
        unknown = await agent.raw("GET", _path(UNKNOWN_NOMINAL), context=context)
        assert unknown.status_code == 404
        assert response.headers["content-type"] == unknown.headers["content-type"]

        def without_request_id(answer: Any) -> bytes:
            return bytes(answer.content).replace(answer.headers["X-Request-ID"].encode(), b"")

        assert without_request_id(response) == without_request_id(unknown)
    assert await _disclosed(world, who) == 0


async def _disclosed(world: World, who: str) -> int:
    return len(
        [e for e in await world.audit(agency_id=who, outcome="allowed") if e.detail.get("listed")]
    )


async def test_policy_explain_says_who_may_list_the_decisions(world: World) -> None:
    """``policy explain --resource contributors`` names the rule that lets victim support list
    its own decisions, and the one that refuses housing."""
    nominal_id, _ = await _case_with_two_contributors(world)
    target: dict[str, str | None] = {"resource": "contributors"}
    db, now = world.state.db, world.clock.now
    own = await explain_access(
        db, agency_id=VICTIM_SUPPORT, nominal_id=nominal_id, target=target, now=now
    )
    assert "ALLOWED by contributor-named-in-decision: view own-contributor-decisions" in own
    refused = await explain_access(
        db, agency_id=HOUSING, nominal_id=nominal_id, target=target, now=now
    )
    assert "REFUSED by default-deny" in refused
    _reasons_absent(own + refused, "the explanation")


# -- expired and revoked decisions ------------------------------------------------------------


async def _three_states(world: World) -> tuple[str, list[str]]:
    """Victim support's decisions: one expired, one revoked, one standing (in that order)."""
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id, {VICTIM_SUPPORT: "attended"})
    expired = await _recorded(world, nominal_id, ends_on=TODAY.isoformat(), review_date=None)
    world.clock.advance(days=1)  # past midnight at the end of its end date
    revoked = await _recorded(world, nominal_id)
    await _revoke(world, nominal_id, revoked)
    standing = await _recorded(world, nominal_id)
    return nominal_id, [expired, revoked, standing]


STATES = [
    # responsible-authority-of-area: the RA sees each state, and the revocation's reason.
    pytest.param(POLICE, True, id="responsible-authority"),
    # contributor-named-in-decision: the contributor sees the same states, with no reasons.
    pytest.param(VICTIM_SUPPORT, False, id="contributor"),
]


@pytest.mark.parametrize(("who", "with_reasons"), STATES)
async def test_expired_and_revoked_decisions_show_their_status(
    world: World, who: str, with_reasons: bool
) -> None:
    """standing, expired (past the end of its end date) and revoked (with when) each listed."""
    nominal_id, ids = await _three_states(world)
    answer = await world[who].get(_path(nominal_id), context=CONTEXTS.get(who))
    listed = answer["contributor_decisions"]
    assert [(e["id"], e["status"]) for e in listed] == list(
        zip(ids, ["expired", "revoked", "standing"], strict=True)
    )
    expired, revoked, standing = listed
    assert "revoked_at" not in expired and "revoked_at" not in standing
    async with world.state.db.read() as session:
        row = await session.get(ContributorDecision, ids[1])
    assert row is not None and row.revoked_at is not None
    assert revoked["revoked_at"] == row.revoked_at.isoformat().replace("+00:00", "Z")
    if with_reasons:
        assert revoked["revocation_reason"] == REVOCATION_REASON
        assert expired["reason"] == REASON and "revocation_reason" not in expired
    else:
        _reasons_absent(json.dumps(answer), "the contributor's answer")


# -- cursor pages -----------------------------------------------------------------------------


async def test_decisions_are_listed_a_page_at_a_time(world: World) -> None:
    """Two at a time, oldest first, the cursor leading on; each page one audited disclosure."""
    nominal_id, ids = await _three_states(world)
    police = world[POLICE]
    first = await police.get(_path(nominal_id), limit="2")
    assert [e["id"] for e in first["contributor_decisions"]] == ids[:2]
    second = await police.get(_path(nominal_id), limit="2", cursor=first["next_cursor"])
    assert [e["id"] for e in second["contributor_decisions"]] == ids[2:]
    assert "next_cursor" not in second
    pages = [
        e for e in await world.audit(agency_id=POLICE, outcome="allowed") if e.detail.get("listed")
    ]
    assert [e.record_refs for e in pages] == [ids[:2], ids[2:]]


def _cursor(*parts: Any) -> str:
    raw = json.dumps(list(parts)).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


TAMPERED = [
    # cut short: no longer the position it was
    pytest.param(lambda c: c[: len(c) // 2], id="truncated"),
    # a character that is not base64url
    pytest.param(lambda c: c[:10] + "*" + c[11:], id="not-base64url"),
    # longer than any cursor the gateway writes
    pytest.param(lambda c: c + "A" * 200, id="oversized"),
    # an id carrying SQL: refused as a parameter, never run or echoed
    pytest.param(
        lambda c: _cursor("2026-11-23T09:00:00+00:00", "x' OR '1'='1"), id="sql-in-the-id"
    ),
    # a time without a zone
    pytest.param(lambda c: _cursor("2026-11-23T09:00:00", str(uuid.uuid4())), id="naive-time"),
    # another shape altogether
    pytest.param(lambda c: _cursor({"after": 0}), id="not-a-position"),
]


@pytest.mark.parametrize("tamper", TAMPERED)
async def test_a_tampered_cursor_is_a_400_problem_and_lists_nothing(
    world: World, tamper: Any
) -> None:
    """A cursor the gateway did not write is 400 invalid_parameter, audited, nothing listed."""
    nominal_id, _ = await _three_states(world)
    first = await world[POLICE].get(_path(nominal_id), limit="1")
    cursor = tamper(first["next_cursor"])
    refused = await world[POLICE].refused("GET", _path(nominal_id), limit="1", cursor=cursor)
    assert (refused.status, refused.code) == (400, "invalid_parameter")
    assert refused.problem["type"].endswith("/invalid_parameter")
    assert "OR" not in json.dumps(refused.problem)
    entry = (await world.audit(agency_id=POLICE, outcome="refused"))[-1]
    assert entry.reason_code == "invalid_parameter"
    assert await _disclosed(world, POLICE) == 1  # the first page only


# -- the contributor is told ------------------------------------------------------------------


NOTICES = [
    # recorded: the contributor is told its decision stands.
    pytest.param(False, "standing", id="recorded"),
    # revoked: the contributor is told it stands no more.
    pytest.param(True, "revoked", id="revoked"),
]


@pytest.mark.parametrize(("revoke", "status"), NOTICES)
async def test_contributor_is_told_sealed_through_the_outbox_without_any_reason(
    world: World, capsys: pytest.CaptureFixture[str], revoke: bool, status: str
) -> None:
    """One ``contributor_decision`` message per decision event, sealed to victim support with
    exactly the allow-listed fields, audited as a disclosure to it in the write's request; no
    reason text in the answer, the outbox row, the logs or the audit."""
    nominal_id = await at_level_2(world)
    capsys.readouterr()
    answer = await world[POLICE].post(_path(nominal_id), decision())
    decision_id = str(answer["id"])
    answers = [json.dumps(answer)]
    if revoke:
        world.clock.advance(seconds=1)  # the outbox lists oldest first
        revoked = await world[POLICE].post(
            f"{_path(nominal_id)}/{decision_id}/revocation", {"reason": REVOCATION_REASON}
        )
        answers.append(json.dumps(revoked))
    rows = [row for row in await world.outbox(VICTIM_SUPPORT) if row.kind == NOTICE_KIND]
    assert len(rows) == 1 + revoke
    body = world[VICTIM_SUPPORT].open(rows[-1].body)
    assert body == {
        "decision_id": decision_id,
        "nominal_id": nominal_id,
        "purposes": ["mappa-meeting", "risk-assessment"],
        "ends_on": (TODAY + dt.timedelta(days=60)).isoformat(),
        "review_date": (TODAY + dt.timedelta(days=30)).isoformat(),
        "status": status,
    }
    assert rows[-1].nominal_ref == nominal_id and rows[-1].body.count(".") == 4

    [write] = [
        e
        for e in await world.audit(agency_id=POLICE, outcome="allowed")
        if e.operation != "disclosure" and e.record_refs == [decision_id]
    ][-1:]
    told = [
        e
        for e in await world.audit(agency_id=POLICE, operation="disclosure")
        if e.recipients == [VICTIM_SUPPORT]
    ]
    assert len(told) == 1 + revoke
    notice = told[-1]
    assert notice.rule == "contributor-named-in-decision" and notice.outcome == "allowed"
    assert {k: v for k, v in notice.detail.items() if k != SALT_KEY} == {
        "resource": NOTICE_KIND,
        "delivery": "outbox",
        "kind": NOTICE_KIND,
    }
    assert notice.request_id == write.request_id and notice.record_refs == [decision_id]
    assert notice.nominal_ref == nominal_id
    assert {w["field"] for w in notice.withheld} == {"reason", "revocation_reason"}
    assert write.detail["contributor_notice"] == {
        "status": "queued",
        "payload_digest": notice.payload_digest,
    }

    for text in answers:
        _reasons_absent(text, "the RA's answer")
    for row in rows:
        _reasons_absent(row.body, "the outbox row")
        _reasons_absent(json.dumps(world[VICTIM_SUPPORT].open(row.body)), "the message")
    logs = capsys.readouterr()
    _reasons_absent(logs.out + logs.err, "the logs")
    for entry in await world.audit():
        _reasons_absent(json.dumps([entry.detail, entry.withheld]), "the audit")


async def _expire_victim_support_key(world: World) -> None:
    async with world.state.db.write() as session:
        await session.execute(
            update(AgencyKey)
            .where(AgencyKey.agency_id == VICTIM_SUPPORT, AgencyKey.use == "enc")
            .values(not_after=world.clock.now - dt.timedelta(seconds=1))
        )


UNTOLD = [
    # contributor-named-in-decision needs category-4-named-agencies: a terrorism case is not
    # for an other contributor, so it is told nothing of the decision.
    pytest.param("M4", False, {"status": "not_sent", "rule": "category-4-named-agencies"},
                 id="category-4"),
    # no usable encryption key: nothing sent in clear; the decision still stands.
    pytest.param("M2", True, {"status": "held", "reason": "recipient_key_unavailable"},
                 id="no-usable-key"),
]  # fmt: skip


@pytest.mark.parametrize(("category", "key_expired", "said"), UNTOLD)
async def test_decision_goes_ahead_when_the_contributor_cannot_be_told(
    world: World, category: str, key_expired: bool, said: dict[str, str]
) -> None:
    """Recorded, no message queued, and the write's audit entry says why."""
    nominal_id = await at_level_2(world, category=category)
    if key_expired:
        await _expire_victim_support_key(world)
    decision_id = await _recorded(world, nominal_id)
    assert [row for row in await world.outbox(VICTIM_SUPPORT) if row.kind == NOTICE_KIND] == []
    [write] = [e for e in await world.audit(agency_id=POLICE) if e.record_refs == [decision_id]]
    told = dict(write.detail["contributor_notice"])
    message_id = told.pop("message_id", None)
    assert write.operation == "collection" and told == said
    async with world.state.db.read() as session:
        held = (await session.scalars(select(HeldNotification))).all()
    # a held message is kept, under the id the audit names; a refused one is not
    assert [row.id for row in held] == ([message_id] if said["status"] == "held" else [])


async def _release(world: World) -> int:
    state = world.state
    assert state.sealer is not None and state.case_sealer is not None
    return await release_held(
        state.db, sealer=state.sealer, case_sealer=state.case_sealer, now=world.clock.now
    )


async def _rotate_victim_support(world: World) -> None:
    """Victim support registers a new key pair (``agencies rotate-keys``)."""
    renewed = AgencyIdentity.generate(VICTIM_SUPPORT)
    await agencies.rotate_agency_keys(
        world.state.db, VICTIM_SUPPORT, renewed.public_jwks(), dt.timedelta(0), now=world.clock.now
    )
    world[VICTIM_SUPPORT].identity = renewed


async def _held_rows(world: World) -> list[HeldNotification]:
    async with world.state.db.read() as session:
        query = select(HeldNotification).order_by(HeldNotification.held_at)
        return list((await session.scalars(query)).all())


async def test_held_message_goes_out_once_the_contributor_has_a_key(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """No usable key: the message is held, sealed at rest (no reason, no ids in clear), and
    nothing is sent; once victim support registers a key, it goes out sealed to that key,
    exactly once, with the allow-listed fields only, audited as a disclosure to it that names
    the rule, the reasons withheld, and the write's agency, officer, basis and request."""
    nominal_id = await at_level_2(world)
    await _expire_victim_support_key(world)
    capsys.readouterr()
    decision_id = await _recorded(world, nominal_id)
    [held] = await _held_rows(world)
    assert (held.kind, held.owner_agency_id, held.released_at) == (
        NOTICE_KIND,
        VICTIM_SUPPORT,
        None,
    )
    _reasons_absent(held.body_sealed.decode("latin-1"), "the held row")
    assert decision_id.encode() not in held.body_sealed
    assert await _release(world) == 0  # still no key: still held

    await _rotate_victim_support(world)
    assert await _release(world) == 1
    assert await _release(world) == 0
    [row] = [row for row in await world.outbox(VICTIM_SUPPORT) if row.kind == NOTICE_KIND]
    assert row.id == held.id and row.nominal_ref == nominal_id
    assert world[VICTIM_SUPPORT].open(row.body) == {
        "decision_id": decision_id,
        "nominal_id": nominal_id,
        "purposes": ["mappa-meeting", "risk-assessment"],
        "ends_on": (TODAY + dt.timedelta(days=60)).isoformat(),
        "review_date": (TODAY + dt.timedelta(days=30)).isoformat(),
        "status": "standing",
    }
    write = next(
        e
        for e in await world.audit(agency_id=POLICE, outcome="allowed")
        if e.operation == "collection" and e.record_refs == [decision_id]
    )
    [released] = await world.audit(reason_code="contributor_notice_released")
    assert released.recipients == [VICTIM_SUPPORT] and released.outcome == "allowed"
    assert released.detail["message_id"] == held.id and released.payload_digest
    assert released.rule == "contributor-named-in-decision"
    assert {w["field"] for w in released.withheld} == {"reason", "revocation_reason"}
    assert (released.agency_id, released.officer_id) == (POLICE, write.officer_id)
    assert (released.legal_basis, released.purpose) == (write.legal_basis, write.purpose)
    assert released.request_id == write.request_id
    assert released.record_refs == [decision_id] and released.detail["delivery"] == "outbox"
    logs = capsys.readouterr()
    _reasons_absent(logs.out + logs.err, "the logs")
    for entry in await world.audit():
        _reasons_absent(json.dumps([entry.detail, entry.withheld]), "the audit")


async def test_held_messages_of_a_decision_revoked_meanwhile(world: World) -> None:
    """Recorded and revoked while victim support had no key: at release, the message that the
    decision stands is not sent (it no longer does: other-contributor-recorded), and the
    revocation's message is."""
    nominal_id = await at_level_2(world)
    await _expire_victim_support_key(world)
    decision_id = await _recorded(world, nominal_id)
    world.clock.advance(seconds=1)
    await _revoke(world, nominal_id, decision_id)
    standing, revoked = await _held_rows(world)
    await _rotate_victim_support(world)
    assert await _release(world) == 1
    [row] = [row for row in await world.outbox(VICTIM_SUPPORT) if row.kind == NOTICE_KIND]
    assert row.id == revoked.id
    assert world[VICTIM_SUPPORT].open(row.body)["status"] == "revoked"
    [refused] = await world.audit(reason_code="contributor_notice_not_sent")
    assert refused.detail["message_id"] == standing.id
    assert refused.rule == "other-contributor-recorded" and refused.outcome == "refused"
    assert all(held.released_at == world.clock.now for held in await _held_rows(world))


async def test_held_message_is_not_sent_if_need_to_know_refuses_at_release(
    world: World,
) -> None:
    """Need-to-know is judged again at release: the nominal became category 4 while the
    message was held, and category 4 is not for an other contributor; the message is settled
    unsent, and the audit says so with the rule."""
    nominal_id = await at_level_2(world)
    await _expire_victim_support_key(world)
    await _recorded(world, nominal_id)
    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/category", {"category": 4, "reason": "terrorism-related"}
    )
    await _rotate_victim_support(world)
    assert await _release(world) == 0
    assert [row for row in await world.outbox(VICTIM_SUPPORT) if row.kind == NOTICE_KIND] == []
    async with world.state.db.read() as session:
        [held] = (await session.scalars(select(HeldNotification))).all()
    assert held.released_at == world.clock.now
    [refused] = await world.audit(reason_code="contributor_notice_not_sent")
    assert refused.outcome == "refused" and refused.recipients == [VICTIM_SUPPORT]
    assert refused.rule == "category-4-named-agencies"
    assert refused.payload_digest is None and refused.detail["delivery"] == "none"
    assert await _release(world) == 0


async def _outbox_rows(world: World) -> int:
    return len(await world.outbox(VICTIM_SUPPORT))


REFUSED_WRITES = [
    # responsible-authority-only: housing may know the case, is not the RA (403).
    pytest.param(HOUSING, "record", {}, 403, id="record-by-housing"),
    # default-deny: another area's police may not know of it (404).
    pytest.param(WILTS_POLICE, "record", {}, 404, id="record-by-other-area"),
    # a DTC agency named as the contributor: not what s.325(4A)(c) is for (422).
    pytest.param(POLICE, "record", {"agency_id": HOUSING}, 422, id="record-naming-housing"),
    # one decision stands per agency and nominal (409).
    pytest.param(POLICE, "record", {}, 409, id="record-a-second"),
    # responsible-authority-only: housing may not revoke (403).
    pytest.param(HOUSING, "revoke", {}, 403, id="revoke-by-housing"),
    # a decision revoked already stands no more (409).
    pytest.param(POLICE, "revoke-again", {}, 409, id="revoke-twice"),
]


@pytest.mark.parametrize(("who", "act", "changes", "status"), REFUSED_WRITES)
async def test_a_refused_write_tells_the_contributor_nothing(
    world: World, who: str, act: str, changes: dict[str, Any], status: int
) -> None:
    """The refusal is audited with its rule; no outbox row is stored for anyone."""
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id, {HOUSING: "attended"})
    decision_id = await _recorded(world, nominal_id)
    revocation = f"{_path(nominal_id)}/{decision_id}/revocation"
    if act == "revoke-again":
        await _revoke(world, nominal_id, decision_id)
    before = len(await world.outbox())
    if act == "record":
        refused = await world[who].refused("POST", _path(nominal_id), decision(**changes))
    else:
        refused = await world[who].refused("POST", revocation, {"reason": REVOCATION_REASON})
    assert refused.status == status
    assert len(await world.outbox()) == before
    entry = (await world.audit(agency_id=who, outcome="refused"))[-1]
    assert entry.reason_code and entry.nominal_ref == nominal_id


async def test_no_message_without_the_decisions_audit_entry(world: World) -> None:
    """If the audit entry cannot be written the decision is 503: nothing stored, nothing
    queued; a listing is 503 too and releases nothing."""
    nominal_id = await at_level_2(world)
    sealed = await world[POLICE].client.seal(decision())
    await world[POLICE].client.token()  # a token first: the token endpoint audits too
    with audit_entries_fail(world):
        response = await world[POLICE].raw("POST", _path(nominal_id), content=sealed)
        listing = await world[POLICE].raw("GET", _path(nominal_id))
    assert response.status_code == 503 and listing.status_code == 503
    assert listing.json()["code"] == "audit_unavailable"
    assert await world.count(ContributorDecision) == 0
    assert await _outbox_rows(world) == 0
