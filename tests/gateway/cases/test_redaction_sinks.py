"""THREATS.md, "Redaction": third-party content searched for in every sink, and failures.

The sinks: every HTTP answer (its bytes, and its plaintext once decrypted by the recipient),
every outbox row (its bytes, and its plaintext decrypted by its recipient; dead letters live in
the same table), the operational logs, and every audit row.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import policies
from adapters.client import GatewayResponseError
from gateway.store.models import AuditEntry, HazardFlag, Minutes, OutboxMessage
from tests.gateway.cases.scenario import (
    ACTION_TEXT,
    ADDRESS,
    CHILD_REF,
    CP_CONFERENCE,
    CS,
    DATE_OF_BIRTH,
    DISCUSSION_TEXT,
    FAMILY_NAME,
    HOUSING,
    JCP,
    POLICE,
    PROBATION,
    SECRETS,
    THIRD_PARTY,
    at_level_2,
    disclosure_request,
    level_2_meeting,
    minutes,
    record,
)
from tests.gateway.cases.support import TODAY, World


def _absent(haystack: str, needles: tuple[str, ...], where: str) -> None:
    for needle in needles:
        assert needle not in haystack, f"{needle!r} found in {where}"


async def test_third_party_content_reaches_no_sink_but_its_originator(
    any_world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record and minutes with third-party sources flow to every kind of recipient; the
    third-party bytes appear only in the originator's own answers."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    # Probation's record: its neighbour source is probation's own.
    created = await world[PROBATION].post(f"/v1/nominals/{nominal_id}/records", record())
    # Police's minutes: the neighbour source is police's; the victim source too (the author's).
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    asked = await world[CS].post("/v1/disclosures", disclosure_request(meeting_id, CP_CONFERENCE))
    await world[POLICE].post(
        f"/v1/disclosures/{asked['id']}/decision",
        {"decision": "approve", "approved_parts": ["conclusions", "actions"], "reason": "s.47"},
    )

    # HTTP answers, raw and decrypted, for every recipient that is not an originator.
    record_path = f"/v1/nominals/{nominal_id}/records/{created['id']}"
    for agency in (POLICE, CS, HOUSING, JCP):
        response = await world[agency].raw("GET", record_path)
        assert response.status_code == 200, agency
        _absent(response.text, SECRETS, f"raw answer to {agency}")
        opened, _ = await world[agency].client.open(response.text)
        _absent(repr(opened.body), THIRD_PARTY, f"record answer to {agency}")
    for agency in (PROBATION, CS, HOUSING, JCP):
        body = await world[agency].get(f"/v1/meetings/{meeting_id}/minutes")
        _absent(repr(body), THIRD_PARTY, f"minutes answer to {agency}")
    cp = world[CP_CONFERENCE].with_context("CA1989-s47", "child-protection")
    approved = await world[CP_CONFERENCE].get(f"/v1/meetings/{meeting_id}/minutes", context=cp)
    _absent(repr(approved), THIRD_PARTY, "onward disclosure answer")
    # The originators do see their own third parties.
    assert THIRD_PARTY[0] in repr(await world[PROBATION].get(record_path))
    assert THIRD_PARTY[0] in repr(await world[POLICE].get(f"/v1/meetings/{meeting_id}/minutes"))

    # Outbox rows: raw bytes, and the plaintext as each recipient decrypts it.
    rows = await world.outbox()
    assert {row.recipient_agency_id for row in rows} >= {POLICE, PROBATION, CS, HOUSING, JCP}
    assert CP_CONFERENCE in {row.recipient_agency_id for row in rows}
    for row in rows:
        _absent(row.body, SECRETS, f"outbox row bytes for {row.recipient_agency_id}")
        plaintext = repr(world[row.recipient_agency_id].open(row.body))
        if row.recipient_agency_id != POLICE:  # police originated the minutes' third parties
            _absent(plaintext, THIRD_PARTY, f"outbox {row.kind} to {row.recipient_agency_id}")
        elif row.kind == "record":  # the record pushed to police, the lead, is probation's
            _absent(plaintext, THIRD_PARTY, "record pushed to the lead agency")

    # Operational logs carry no personal data at all.
    captured = capsys.readouterr()
    _absent(captured.out + captured.err, SECRETS, "operational logs")

    # Audit rows: field names and rules of what was withheld, never values.
    entries = await world.audit()
    for entry in entries:
        text = repr({c.name: getattr(entry, c.name) for c in AuditEntry.__table__.columns})
        _absent(text, SECRETS, f"audit entry {entry.id}")
    withheld = {(w["field"], w["rule"]) for e in entries for w in e.withheld}
    assert ("sources[#2]", "third-party-source") in withheld
    assert ("discussion[#2]", "third-party-source") in withheld


async def test_hazard_flag_carries_only_its_allow_list(any_world: World) -> None:
    """The pushed flag holds the reference, HZD, the relationship, the statement, the contact,
    the review date, and nothing of the nominal, its offences or third parties."""
    world = any_world
    nominal_id = await at_level_2(world)
    answer = await world[POLICE].post(
        "/v1/hazard-flags",
        {
            "nominal_id": nominal_id,
            "recipient_agency_id": CS,
            "child_or_family_ref": CHILD_REF,
            "relationship": "father",
            "contact": {"role": "mappa_unit", "telephone": "020 7000 0000"},
            "review_date": (TODAY + dt.timedelta(days=90)).isoformat(),
        },
    )
    [pushed] = await world.pushed(CS, "hazard_flag")
    assert set(pushed) == {"hazard_flag", "flag_id"}
    assert pushed["flag_id"] == answer["id"]
    assert pushed["hazard_flag"] == {
        "child_or_family_ref": CHILD_REF,
        "flag": "HZD",
        "relationship": "father",
        "statement": "known to MAPPA",
        "contact": {"role": "mappa_unit", "telephone": "020 7000 0000"},
        "review_date": (TODAY + dt.timedelta(days=90)).isoformat(),
    }
    _absent(repr(pushed), SECRETS, "hazard flag")
    seen = await world[CS].get(
        f"/v1/hazard-flags/{answer['id']}",
        context=world[CS].with_context("CA2004-s11", "safeguarding"),
    )
    assert seen == pushed["hazard_flag"]


@pytest.mark.parametrize(
    "extra",
    [
        {"offence": "Sexual assault of a child under 13"},  # an offence
        {"intelligence": "Seen near school"},  # intelligence
        {"family_name": FAMILY_NAME},  # the nominal's name
        {"notes": "Informant says ..."},  # third-party material by any name
    ],
)
async def test_hazard_flag_with_anything_else_is_refused_and_nothing_sent(
    any_world: World, extra: dict[str, Any]
) -> None:
    """A flag body with any field beyond the allow-list is 422; no flag, no outbox row."""
    world = any_world
    nominal_id = await at_level_2(world)
    queued = await world.count(OutboxMessage)  # the level change told the RA agencies
    refused = await world[POLICE].refused(
        "POST",
        "/v1/hazard-flags",
        {
            "nominal_id": nominal_id,
            "recipient_agency_id": CS,
            "child_or_family_ref": CHILD_REF,
            "relationship": "father",
            "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
            **extra,
        },
    )
    assert refused.status == 422
    assert await world.count(HazardFlag) == 0
    assert await world.count(OutboxMessage) == queued


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise policies.RedactionFailed("boom", rule="redaction-step:test", policy_version="v")


async def test_redaction_failure_on_a_read_is_503_and_releases_nothing(
    any_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If redaction fails, the answer is 503 redaction_failed with no data; audited as failed."""
    world = any_world
    nominal_id = await at_level_2(world)
    monkeypatch.setattr(policies, "redact", _boom)
    response = await world[POLICE].raw("GET", f"/v1/nominals/{nominal_id}")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "redaction_failed"
    _absent(response.text, (FAMILY_NAME, DATE_OF_BIRTH, ADDRESS), "503 body")
    entry = (await world.audit(agency_id=POLICE, operation="disclosure"))[-1]
    assert entry.outcome == "failed"
    assert entry.rule == "redaction-step:test"


async def test_redaction_failure_on_a_push_stores_and_sends_nothing(
    any_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Minutes whose redaction for a participant fails: 503; no minutes, no outbox row."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    queued = await world.count(OutboxMessage)  # the level change told the RA agencies
    monkeypatch.setattr(policies, "redact", _boom)
    with pytest.raises(GatewayResponseError) as caught:
        await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    assert caught.value.status == 503
    assert caught.value.code == "redaction_failed"
    assert await world.count(Minutes) == 0
    assert await world.count(OutboxMessage) == queued
    with pytest.raises(GatewayResponseError) as flagged:
        await world[POLICE].post(
            "/v1/hazard-flags",
            {
                "nominal_id": nominal_id,
                "recipient_agency_id": CS,
                "child_or_family_ref": CHILD_REF,
                "relationship": "father",
                "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
            },
        )
    assert flagged.value.status == 503
    assert await world.count(HazardFlag) == 0
    assert await world.count(OutboxMessage) == queued


async def test_onward_disclosure_to_a_participant_sends_only_the_approved_parts(
    any_world: World,
) -> None:
    """Jobcentre Plus receives the minutes (minutes only), so may read them whole; an onward
    disclosure approved to it for the conclusions alone still pushes the conclusions alone:
    what an onward disclosure sends is what was approved, not what the recipient could read."""
    world = any_world
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    asked = await world[CS].post(
        "/v1/disclosures", disclosure_request(meeting_id, JCP, purpose="risk-management")
    )
    await world[POLICE].post(
        f"/v1/disclosures/{asked['id']}/decision",
        {"decision": "approve", "approved_parts": ["conclusions"], "reason": "conclusions only"},
    )
    [onward] = await world.pushed(JCP, "onward_disclosure")
    assert set(onward["onward_disclosure"]) == {"meeting_id", "held_on", "marking", "conclusions"}
    _absent(repr(onward), (*THIRD_PARTY, DISCUSSION_TEXT, ACTION_TEXT), "onward push to JCP")
    # its own read of the minutes, as a participant, is unchanged
    assert "discussion" in await world[JCP].get(f"/v1/meetings/{meeting_id}/minutes")


async def test_a_record_its_caveat_withholds_is_one_the_recipient_may_not_know_of(
    any_world: World,
) -> None:
    """Probation's ``originator-only`` record: to housing (which attended) and to police (the
    lead) it does not exist. The single read is the same 404 as an unknown id, audited with
    the caveat; the list leaves it out; the lead is pushed nothing; probation is told of no
    consultation. Before, each got an empty ``{}`` that said the record was there."""
    world = any_world
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)
    pushed_before = len(await world.pushed(POLICE, "record"))
    hidden = await world[PROBATION].post(
        f"/v1/nominals/{nominal_id}/records", record(caveats=["originator-only"])
    )
    shared = await world[PROBATION].post(f"/v1/nominals/{nominal_id}/records", record())
    assert len(await world.pushed(POLICE, "record")) == pushed_before + 1  # the shared one only
    written = [e for e in await world.audit(agency_id=PROBATION) if hidden["id"] in e.record_refs]
    assert written[0].detail["not_sent"] == [{"agency": POLICE, "rule": "caveat:originator-only"}]
    for agency in (HOUSING, POLICE):
        missing = await world[agency].raw(
            "GET", f"/v1/nominals/{nominal_id}/records/00000000-0000-4000-8000-000000000000"
        )
        refused = await world[agency].raw(
            "GET", f"/v1/nominals/{nominal_id}/records/{hidden['id']}"
        )
        assert refused.status_code == missing.status_code == 404
        assert refused.json()["code"] == missing.json()["code"] == "not_found"
        entry = (await world.audit(agency_id=agency, outcome="refused"))[-1]
        assert entry.rule == "caveat:originator-only"
        page = await world[agency].get(f"/v1/nominals/{nominal_id}/records")
        assert [r["id"] for r in page["records"]] == [shared["id"]]
        listed = (await world.audit(agency_id=agency, outcome="allowed"))[-1]
        assert hidden["id"] not in listed.record_refs
    told = [
        note
        for note in await world.pushed(PROBATION, "owner_notification")
        if hidden["id"] in note.get("record_ids", ())
    ]
    assert told == []
    assert (await world[PROBATION].get(f"/v1/nominals/{nominal_id}/records/{hidden['id']}"))[
        "id"
    ] == hidden["id"]
