"""Written reports for a meeting: ``POST`` and ``GET /v1/meetings/{id}/reports``.

Only an agency invited to the meeting may send one; it is an information record of kind
``written_report`` attached to the meeting, sealed at rest, audited as a collection, pushed
(redacted) to the chair and the MAPPA unit, and listed for the meeting's chair, co-ordinator and
participants, with third-party sources withheld from everyone but their originator.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from gateway.store.models import (
    AuditEntry,
    IdempotentRequest,
    InformationRecord,
    OutboxMessage,
)
from tests.gateway.cases.scenario import (
    CS,
    HOUSING,
    JCP,
    MAPPA,
    MENTAL_HEALTH,
    POLICE,
    PROBATION,
    THIRD_PARTY_SOURCE,
    THIRD_PARTY_TEXT,
    WILTS_POLICE,
    at_level_2,
    level_2_meeting,
)
from tests.gateway.cases.support import World

REPORT_TEXT = "Family known; child protection plan in place since March; allocated social worker"
TABLES = (InformationRecord, OutboxMessage, IdempotentRequest)


def report(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "written_report",
        "summary": "Children's services' perspective for the level 2 meeting",
        "content": [
            {"id": "c1", "text": REPORT_TEXT, "source": "s-cs"},
            {"id": "c2", "text": THIRD_PARTY_TEXT, "source": "s-neighbour"},
        ],
        "sources": [
            {"id": "s-cs", "kind": "agency", "description": "Social worker", "third_party": False},
            {
                "id": "s-neighbour",
                "kind": "neighbour",
                "description": THIRD_PARTY_SOURCE,
                "third_party": True,
            },
        ],
    }
    body.update(changes)
    return body


async def _counts(world: World) -> dict[str, int]:
    return {model.__tablename__: await world.count(model) for model in TABLES}


async def _meeting(world: World) -> tuple[str, str]:
    """A level 2 meeting police chair: CS, housing attend, JCP minutes only, MH invited;
    probation (Responsible Authority, so it may know the nominal) is not at it."""
    nominal_id = await at_level_2(world)
    participants = {CS: "attended", HOUSING: "attended", JCP: "minutes_only"}
    participants[MENTAL_HEALTH] = "invited"
    return nominal_id, await level_2_meeting(world, nominal_id, participants)


async def test_invited_agency_sends_a_written_report_stored_sealed_and_audited(
    any_world: World,
) -> None:
    """Mental health, invited, reports: a written_report record on the meeting, its text only
    sealed at rest; a collection entry; pushed to the chair and the MAPPA unit, the neighbour
    withheld from both."""
    nominal_id, meeting_id = await _meeting(any_world)
    answer = await any_world[MENTAL_HEALTH].post(f"/v1/meetings/{meeting_id}/reports", report())
    assert (answer["status"], answer["kind"], answer["nominal_id"]) == (
        "stored",
        "written_report",
        nominal_id,
    )
    async with any_world.state.db.read() as session:
        [row] = (await session.scalars(select(InformationRecord))).all()
    assert (row.meeting_id, row.owner_agency_id, row.kind) == (
        meeting_id,
        MENTAL_HEALTH,
        "written_report",
    )
    assert REPORT_TEXT.encode() not in row.body_sealed
    [entry] = await any_world.audit(operation="collection", agency_id=MENTAL_HEALTH)
    assert entry.record_refs == [meeting_id, row.id]
    assert entry.detail["resource"] == "written_report"
    pushes = [r for r in await any_world.outbox() if r.kind == "record"]
    assert sorted(r.recipient_agency_id for r in pushes) == [MAPPA, POLICE]
    for recipient in (POLICE, MAPPA):
        [pushed] = await any_world.pushed(recipient, "record")
        text = json.dumps(pushed)
        assert REPORT_TEXT in text and THIRD_PARTY_TEXT not in text
        assert THIRD_PARTY_SOURCE not in text
    disclosures = await any_world.audit(operation="disclosure", agency_id=MENTAL_HEALTH)
    assert sorted(e.recipients[0] for e in disclosures) == [MAPPA, POLICE]


@pytest.mark.parametrize(
    ("reader", "sees_third_party"),
    [
        (POLICE, False),  # the chair
        (MAPPA, False),  # the co-ordinator
        (CS, False),  # a participant
        (JCP, False),  # receives the minutes
        (MENTAL_HEALTH, True),  # the report's author sees its own neighbour
    ],
)
async def test_chair_coordinator_and_participants_read_the_reports(
    world: World, reader: str, sees_third_party: bool
) -> None:
    """Each reads the meeting's reports, redacted for it; the owner is told of others' reads."""
    _, meeting_id = await _meeting(world)
    sent = await world[MENTAL_HEALTH].post(f"/v1/meetings/{meeting_id}/reports", report())
    listed = await world[reader].get(f"/v1/meetings/{meeting_id}/reports")
    [found] = listed["reports"]
    assert found["id"] == sent["id"] and found["kind"] == "written_report"
    assert (THIRD_PARTY_TEXT in json.dumps(found)) is sees_third_party
    [entry] = [
        e
        for e in await world.audit(operation="disclosure", agency_id=reader)
        if sent["id"] in e.record_refs and e.recipients == [reader]
    ]
    assert meeting_id in entry.record_refs
    if not sees_third_party:
        assert any(w["field"].startswith(f"reports[{sent['id']}]") for w in entry.withheld)


@pytest.mark.parametrize(
    "sender",
    [
        JCP,  # minutes only: not invited to attend
        PROBATION,  # an RA agency that may know the nominal but is not at this meeting
        WILTS_POLICE,  # another area
        HOUSING,  # with a meeting id that does not exist (below)
    ],
)
async def test_agency_not_invited_gets_the_404_of_no_meeting_and_nothing_is_stored(
    any_world: World, sender: str
) -> None:
    """Same 404 body as an unknown meeting id; nothing stored or pushed; refusal audited."""
    _, meeting_id = await _meeting(any_world)
    before = await _counts(any_world)
    target = str(uuid.uuid4()) if sender == HOUSING else meeting_id
    refused = await any_world[sender].refused("POST", f"/v1/meetings/{target}/reports", report())
    unknown = await any_world[sender].refused(
        "POST", f"/v1/meetings/{uuid.uuid4()}/reports", report()
    )
    assert refused.status == unknown.status == 404
    strip = {"request_id"}
    assert {k: v for k, v in refused.problem.items() if k not in strip} == {
        k: v for k, v in unknown.problem.items() if k not in strip
    }
    assert await _counts(any_world) == before
    [entry, _] = await any_world.audit(agency_id=sender, outcome="refused")
    assert entry.operation == "collection" and entry.rule  # the audit says which rule refused
    assert entry.reason_code in ("not_found", "no_need_to_know")


async def test_non_participant_cannot_list_the_reports(world: World) -> None:
    """Probation (RA, not at the meeting) and Wiltshire police: 404, audited with the rule."""
    _, meeting_id = await _meeting(world)
    await world[MENTAL_HEALTH].post(f"/v1/meetings/{meeting_id}/reports", report())
    for reader in (PROBATION, WILTS_POLICE):
        refused = await world[reader].refused("GET", f"/v1/meetings/{meeting_id}/reports")
        assert refused.status == 404
    [probation] = await world.audit(agency_id=PROBATION, outcome="refused")
    assert probation.rule == "meeting-participant"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (report(kind="intelligence"), "kind"),  # a report is a written report
        (report(summary=""), "summary"),  # empty
        (report(meeting_id="x"), "meeting_id"),  # unknown field
        (report(content=[{"id": "c1", "text": "x", "source": "nowhere"}]), ""),  # bad citation
        ({"kind": "written_report"}, "summary"),  # nothing to say
    ],
)
async def test_bad_report_is_422_and_stores_nothing(
    world: World, body: dict[str, Any], where: str
) -> None:
    _, meeting_id = await _meeting(world)
    before = await _counts(world)
    refused = await world[MENTAL_HEALTH].refused("POST", f"/v1/meetings/{meeting_id}/reports", body)
    assert refused.status == 422 and refused.code == "validation_failed"
    if where:
        assert any(where in ".".join(e["loc"]) for e in refused.problem["errors"])
    assert await _counts(world) == before


async def test_report_in_clear_is_415_and_a_retry_is_stored_once(world: World) -> None:
    """Plain JSON is refused; the same report resent with its Idempotency-Key is one record."""
    _, meeting_id = await _meeting(world)
    path = f"/v1/meetings/{meeting_id}/reports"
    plain = await world[MENTAL_HEALTH].raw(
        "POST", path, content=json.dumps(report()), content_type="application/json"
    )
    assert plain.status_code == 415
    first = await world[MENTAL_HEALTH].post(path, report(), key="mh-report-1")
    again = await world[MENTAL_HEALTH].post(path, report(), key="mh-report-1")
    assert first == again
    assert await world.count(InformationRecord) == 1
    reused = await world[MENTAL_HEALTH].refused(
        "POST", path, report(summary="x"), key="mh-report-1"
    )
    assert reused.status == 422


async def test_report_text_reaches_no_log_or_audit_row(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report's text and its third party: in no operational log line and no audit row."""
    _, meeting_id = await _meeting(world)
    await world[MENTAL_HEALTH].post(f"/v1/meetings/{meeting_id}/reports", report())
    await world[CS].get(f"/v1/meetings/{meeting_id}/reports")
    captured = capsys.readouterr()
    for needle in (REPORT_TEXT, THIRD_PARTY_TEXT, THIRD_PARTY_SOURCE):
        assert needle not in captured.out + captured.err
        for entry in await world.audit():
            text = repr({c.name: getattr(entry, c.name) for c in AuditEntry.__table__.columns})
            assert needle not in text
