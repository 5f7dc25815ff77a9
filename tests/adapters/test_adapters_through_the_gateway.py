"""The police and probation adapters against the real gateway app (real tokens, seals, store).

What each adapter maps is sent by the agency's own :class:`adapters.client.GatewayClient`:
calls about an existing nominal look it up by its PNC id or CRN first (sealed in a POST body,
never in a URL or an Idempotency-Key). What the gateway pushes is taken from its outbox, exactly
as sealed, and handed to the agency's receiver, which opens and verifies it before the adapter
applies it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import KeySet
from sqlalchemy import select

from adapters.childrens_services import ChildrensServicesAdapter
from adapters.client import ContextHeaders, GatewayClient, GatewayResponseError, Opened
from adapters.identity import AgencyIdentity
from adapters.police import PoliceAdapter
from adapters.probation import ProbationAdapter
from adapters.receiver import Receiver, SeenDeliveries
from adapters.standin import JsonStore
from gateway.store.models import (
    IdempotentRequest,
    InformationRecord,
    NominalChange,
    OutboxMessage,
)
from tests.adapters.support import pnc_forms, post_delivery
from tests.gateway.cases.conftest import any_world, world
from tests.gateway.cases.scenario import (
    ACTION_TEXT,
    CRN,
    CS,
    DISCUSSION_TEXT,
    HOUSING,
    PNC,
    POLICE,
    PROBATION,
    THIRD_PARTY,
    at_level_2,
    minutes,
)
from tests.gateway.cases.support import ISSUER, TODAY, World

__all__ = ["any_world", "world"]  # the case API's fixtures, shared

SAMPLES = Path(__file__).parent / "samples"
SAMPLE_PNC = "98/123456X"


def _sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def _offender(crn: str, level: str) -> dict[str, Any]:
    """An nDelius offender with one active MAPP registration."""
    return {
        "crn": crn,
        "registrations": [
            {"id": "R-2201", "type": "MAPP", "category": "M2", "level": level, "date": "2026-11-01"}
        ],
    }


def _police(world: World) -> PoliceAdapter:
    """The police adapter with the police agency's own idempotency secret."""
    return PoliceAdapter(idempotency_secret=world[POLICE].identity.idempotency_secret())


class Sent:
    """Every request the agencies send to the gateway: the URL and the Idempotency-Key."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    async def __call__(self, request: httpx.Request) -> None:
        self.requests.append((str(request.url), request.headers.get("idempotency-key", "")))

    def text(self) -> str:
        return json.dumps(self.requests)


@pytest.fixture
def sent(world: World) -> Sent:
    recorder = Sent()
    world.http.event_hooks["request"].append(recorder)
    return recorder


@pytest.fixture
def sent_any(any_world: World) -> Sent:
    recorder = Sent()
    any_world.http.event_hooks["request"].append(recorder)
    return recorder


async def test_police_markers_go_on_the_nominal_found_by_pnc(
    any_world: World, sent_any: Sent
) -> None:
    """The police nominal becomes a referral, then each warning marker an intelligence record on
    the nominal the gateway finds by the PNC id; the PNC id is in no URL, and in no marker call's
    Idempotency-Key."""
    police = any_world[POLICE]
    calls = _police(any_world).to_contract(_sample("police_nominal.json"))
    answers = [await police.client.send(call, police.context) for call in calls]
    assert all(isinstance(a, Opened) for a in answers)
    referral, *records = [a.body for a in answers if isinstance(a, Opened)]
    nominal_id = referral["nominal_id"]
    assert [r["nominal_id"] for r in records] == [nominal_id, nominal_id]
    async with any_world.state.db.read() as session:
        stored = (
            await session.scalars(
                select(InformationRecord).where(InformationRecord.nominal_id == nominal_id)
            )
        ).all()
    assert sorted(r.kind for r in stored) == ["intelligence", "intelligence"]
    lookups = await any_world.audit(operation="consultation", agency_id=POLICE)
    assert [(e.outcome, e.nominal_ref, e.detail["lookup"]) for e in lookups] == [
        ("allowed", nominal_id, "pnc"),
        ("allowed", nominal_id, "pnc"),
    ]
    urls = [url for url, _ in sent_any.requests]
    assert urls.count(f"{ISSUER}/v1/nominals/lookup") == 2
    assert f"{ISSUER}/v1/nominals/{nominal_id}/records" in urls
    for url, key in sent_any.requests:
        assert "123456" not in url, url
        if "/records" in url:
            assert key.startswith(f"police-marker-{nominal_id}-") and "123456" not in key


async def test_no_pnc_reaches_the_idempotency_table_or_the_logs(
    any_world: World, sent_any: Sent, capsys: pytest.CaptureFixture[str]
) -> None:
    """The police nominal's referral and markers, sent and resent: the Idempotency-Keys the
    gateway remembers, the headers the adapter sent and the gateway's operational logs hold the
    PNC id in no form (spelling, serial, plain hash); the resend is still recognised."""
    police = any_world[POLICE]
    capsys.readouterr()
    calls = _police(any_world).to_contract(_sample("police_nominal.json"))
    first = [await police.client.send(call, police.context) for call in calls]
    again = [await police.client.send(call, police.context) for call in calls]
    assert [a.body for a in first if isinstance(a, Opened)] == [
        a.body for a in again if isinstance(a, Opened)
    ]
    captured = capsys.readouterr()
    async with any_world.state.db.read() as session:
        remembered = (
            await session.scalars(
                select(IdempotentRequest.key).where(IdempotentRequest.agency_id == POLICE)
            )
        ).all()
    assert len(remembered) == len(calls)  # the referral and two markers, once each
    assert any(key.startswith("police-referral-") for key in remembered)
    assert '"route": "/v1/referrals"' in captured.out + captured.err  # the writes were logged
    headers = [key for _, key in sent_any.requests]
    for form in pnc_forms(SAMPLE_PNC):
        for key in [*remembered, *headers]:
            assert form.lower() not in key.lower(), (form, key)
        assert form not in captured.out + captured.err, form


async def test_police_markers_resent_are_stored_once(world: World) -> None:
    """The adapter's calls sent twice (a retry after a crash): the lookup finds the same nominal,
    so the marker's Idempotency-Key is the same and the gateway replays its first answer."""
    police = world[POLICE]
    calls = _police(world).to_contract(_sample("police_nominal.json"))
    first = [await police.client.send(call, police.context) for call in calls]
    again = [await police.client.send(call, police.context) for call in calls]
    assert [a.body for a in first if isinstance(a, Opened)] == [
        a.body for a in again if isinstance(a, Opened)
    ]
    assert await world.count(InformationRecord) == 2


async def test_probation_sets_the_level_of_the_nominal_found_by_crn(
    any_world: World, sent_any: Sent
) -> None:
    """nDelius M3 for the CRN: probation looks the nominal up by CRN and changes its level
    through the level endpoint; the CRN is in no URL or Idempotency-Key; a resend of the same
    registration replays, changing nothing twice."""
    nominal_id = await at_level_2(any_world)
    probation = any_world[PROBATION]
    [call] = ProbationAdapter().to_contract(_offender(CRN, "M3"))
    answer = await probation.client.send(call, probation.context)
    assert isinstance(answer, Opened)
    assert (answer.body["id"], answer.body["level"]) == (nominal_id, 3)
    assert (await any_world[POLICE].get(f"/v1/nominals/{nominal_id}"))["level"] == 3
    replay = await probation.client.send(call, probation.context)
    assert isinstance(replay, Opened) and replay.body == answer.body
    async with any_world.state.db.read() as session:
        changes = (
            await session.scalars(
                select(NominalChange).where(
                    NominalChange.nominal_id == nominal_id, NominalChange.agency_id == PROBATION
                )
            )
        ).all()
    assert [(c.kind, c.old_value, c.new_value) for c in changes] == [("level", "2", "3")]
    [lookup, *_] = await any_world.audit(operation="consultation", agency_id=PROBATION)
    assert (lookup.nominal_ref, lookup.detail["lookup"]) == (nominal_id, "crn")
    assert f"{ISSUER}/v1/nominals/{nominal_id}/level" in [url for url, _ in sent_any.requests]
    assert CRN not in sent_any.text()


async def test_probation_finds_a_police_referred_nominal_by_the_pnc_id_nDelius_holds(
    world: World, sent: Sent
) -> None:
    """The gateway does not know the nominal by this CRN (police referred it): the adapter's
    second identifier, the PNC id nDelius holds, finds it; each lookup is audited."""
    nominal_id = await at_level_2(world)
    probation = world[PROBATION]
    [call] = ProbationAdapter().to_contract({**_offender("X000009", "M3"), "pnc": PNC})
    assert call.lookup == {"crn": "X000009", "pnc": PNC}
    answer = await probation.client.send(call, probation.context)
    assert isinstance(answer, Opened) and answer.body["level"] == 3
    lookups = await world.audit(operation="consultation", agency_id=PROBATION)
    assert [(e.outcome, e.nominal_ref, e.detail.get("lookup")) for e in lookups] == [
        ("refused", None, None),
        ("allowed", nominal_id, "pnc"),
    ]
    assert PNC not in sent.text() and "X000009" not in sent.text()


async def test_probation_level_for_a_crn_the_gateway_does_not_show_changes_nothing(
    world: World,
) -> None:
    """A CRN no nominal has, and a CRN of a nominal housing may not know of: the lookup is 404
    and no level call is made."""
    nominal_id = await at_level_2(world)
    probation = world[PROBATION]
    [unknown] = ProbationAdapter().to_contract(_offender("X000001", "M3"))
    with pytest.raises(GatewayResponseError) as caught:
        await probation.client.send(unknown, probation.context)
    assert caught.value.status == 404
    housing = world[HOUSING]
    [hidden] = ProbationAdapter().to_contract(_offender(CRN, "M3"))
    with pytest.raises(GatewayResponseError) as refused:
        await housing.client.send(hidden, housing.context)
    assert refused.value.status == 404
    assert refused.value.problem == {
        **caught.value.problem,
        "request_id": refused.value.problem["request_id"],
    }
    assert (await world[POLICE].get(f"/v1/nominals/{nominal_id}"))["level"] == 2
    assert [e.detail.get("change") for e in await world.audit(operation="alteration")] == [
        "screening"
    ]


# -- what the gateway pushes -----------------------------------------------------------------


@pytest.fixture
async def police_receiver(
    world: World, tmp_path: Path
) -> AsyncIterator[tuple[Receiver, JsonStore]]:
    """Police's receiver and stand-in system, trusting the gateway's published keys."""
    jwks = KeySet.import_key_set((await world.http.get("/.well-known/jwks.json")).json())
    store = JsonStore(tmp_path / "police.json")
    receiver = Receiver(
        world[POLICE].identity,
        PoliceAdapter(store),
        ISSUER,
        gateway_keys=jwks,
        clock=world.clock,
        seen=SeenDeliveries(tmp_path / "police-seen-deliveries.sqlite3"),
    )
    yield receiver, store


async def _push(receiver: Receiver, row: OutboxMessage) -> dict[str, Any]:
    """POST the outbox row to the receiver exactly as the relay does (body, kind, message id)."""
    response = await post_delivery(receiver, row)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_police_adapter_applies_the_minutes_the_gateway_pushes(
    world: World, police_receiver: tuple[Receiver, JsonStore]
) -> None:
    """Probation chairs a level 2 meeting police attend; the minutes the gateway seals to police
    are opened by police's receiver and the adapter writes the meeting, its conclusions and its
    action on the nominal; no discussion and no other agency's third party reach the system."""
    receiver, store = police_receiver
    nominal_id = await at_level_2(world)
    meeting = await world[PROBATION].post(
        "/v1/meetings",
        {
            "nominal_id": nominal_id,
            "meeting_type": "level_2",
            "held_on": TODAY.isoformat(),
            "chair_officer": "SPO-1180",
            "participants": [{"agency_id": POLICE, "participation": "attended"}],
            "confidentiality_statement_signed": True,
        },
    )
    action = await world[PROBATION].post(
        f"/v1/meetings/{meeting['id']}/actions",
        {"owner_agency_id": POLICE, "description": ACTION_TEXT, "due_date": TODAY.isoformat()},
    )
    await world[PROBATION].post(f"/v1/meetings/{meeting['id']}/minutes", minutes())
    [row] = [r for r in await world.outbox(POLICE) if r.kind == "minutes"]
    pushed = world[POLICE].open(row.body)

    answer = await _push(receiver, row)
    assert answer["action"] == "minutes_recorded"
    nominal = store.get("nominals", nominal_id)
    assert nominal is not None
    outcome = nominal["meeting_outcome"]
    assert outcome["meeting_id"] == meeting["id"]
    assert (outcome["meeting_type"], outcome["held_on"]) == ("level_2", TODAY.isoformat())
    assert outcome["conclusions"] == [
        {"id": c["id"], "text": c["text"]} for c in pushed["minutes"]["conclusions"]
    ]
    assert outcome["conclusions"] and all(c["text"] for c in outcome["conclusions"])
    [stored_action] = outcome["actions"]
    assert (stored_action["id"], stored_action["description"]) == (action["id"], ACTION_TEXT)
    assert stored_action["owner_agency_id"] == POLICE
    text = json.dumps(store.all("nominals"))
    assert DISCUSSION_TEXT not in text
    # The victim is probation's third-party source: withheld from police by the gateway.
    assert THIRD_PARTY[2] not in json.dumps(pushed) and THIRD_PARTY[2] not in text

    again = await _push(receiver, row)  # the relay may deliver twice; applied once
    assert again["status"] == "duplicate"
    assert store.get("nominals", nominal_id) == nominal


async def test_childrens_services_written_report_reaches_the_meeting(world: World) -> None:
    """Children's services, invited to the level 2 meeting and unable to attend, send their
    written report through the adapter: stored on the meeting, listed for the chair."""
    nominal_id = await at_level_2(world)
    meeting = await world[POLICE].post(
        "/v1/meetings",
        {
            "nominal_id": nominal_id,
            "meeting_type": "level_2",
            "held_on": TODAY.isoformat(),
            "chair_officer": "DI-2231",
            "participants": [{"agency_id": CS, "participation": "invited"}],
            "confidentiality_statement_signed": True,
        },
    )
    [call] = ChildrensServicesAdapter().to_contract(
        {
            "type": "written_report",
            "id": "WR-1",
            "meeting_id": meeting["id"],
            "summary": "Case open; child protection plan in place.",
        }
    )
    sent = await world[CS].client.send(call, world[CS].context)
    assert isinstance(sent, Opened) and sent.body["kind"] == "written_report"
    listed = await world[POLICE].get(f"/v1/meetings/{meeting['id']}/reports")
    assert [(r["id"], r["owner_agency_id"]) for r in listed["reports"]] == [(sent.body["id"], CS)]


@pytest.mark.parametrize(
    "retry_after",
    [
        "\u00b2",  # str.isdigit passes it, float refuses it: the call raised ValueError
        "\u0661\u0662",  # Arabic-Indic and fullwidth digits: float reads them as 12
        "\uff11\uff12",
        "0" * 9 + "5",  # ASCII, but more than nine digits
    ],
)
async def test_client_neither_waits_nor_retries_on_a_retry_after_not_in_ascii_digits(
    retry_after: str,
) -> None:
    """A 429 whose Retry-After is not one to nine ASCII digits (the gateway stood in for by a
    mock transport) goes back to the caller as the 429, with no wait and no second send."""
    sent: list[str] = []
    waits: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        if request.url.path == "/oauth/token":
            body = {"access_token": "t", "token_type": "DPoP", "expires_in": 300}
            return httpx.Response(200, json=body)
        return httpx.Response(
            429, headers=[(b"retry-after", retry_after.encode())], json={"code": "rate_limited"}
        )

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    context = ContextHeaders("cja2003-s325", "risk-management", "PC-1")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        client = GatewayClient(AgencyIdentity.generate(POLICE), ISSUER, http, sleep=sleep)
        with pytest.raises(GatewayResponseError) as refused:
            await client.call("GET", "/v1/level-1-list", context)
    assert refused.value.status == 429
    assert waits == []
    assert sent == ["/oauth/token", "/v1/level-1-list"]
