"""``POST /v1/nominals/{id}/erasure``: the Responsible Authority erases a nominal's case data.

A whole Barnet case (referral, screening, meeting, record with a third party, action, minutes,
onward disclosure, hazard flag, warning marker, s.325(4A)(c) decision, level change) is
deregistered and erased. Then the store is read directly: no sealed value about the nominal is
left but the erasure's own (its note, the RA's signed body, its remembered answer), no message
about it is queued, the nominal is a tombstone; every read, lookup and list answers as for an id
that does not exist, a new referral of the same person registers a new nominal, and the audit
log holds one ``erasure`` entry with ids and counts only, and still verifies. Refusals (a role,
basis, purpose or area that does not fit; a registered nominal for a reason that needs it
deregistered; a hostile body) erase nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from adapters.client import ContextHeaders
from gateway.audit.export import verify_database
from gateway.audit.sequencer import sequence
from gateway.store.models import (
    Action,
    ActionUpdate,
    AuditEntry,
    AuditEntryNominal,
    ContributorDecision,
    HazardFlag,
    HeldNotification,
    IdempotentRequest,
    InformationRecord,
    Meeting,
    Minutes,
    Nominal,
    NominalChange,
    OnwardDisclosureRequest,
    OriginEvidence,
    Referral,
    WarningMarker,
)
from tests.gateway.cases.scenario import (
    CP_CONFERENCE,
    CS,
    HOUSING,
    JCP,
    MAPPA,
    PNC,
    POLICE,
    PROBATION,
    SECRETS,
    VICTIM_SUPPORT,
    WILTS_POLICE,
    at_level_1,
    at_level_2,
    level_2_meeting,
    referral,
    whole_case,
)
from tests.gateway.cases.support import TODAY, World, new_key
from tests.gateway.cases.test_warning_markers import UPRN, marker

ERASE = ("DPA2018-s47", "erasure")
# As docs/api.md asks: the note outlives the erasure, so it names the decision record, never
# the person.
NOTE = "Retention review RR-2026-114, approved by the SMB chair"
#: Every sealed column that held the case, by model: all NULL after the erasure.
SEALED = (
    (Nominal, "details_sealed", lambda n, ids: Nominal.id == n),
    (Referral, "details_sealed", lambda n, ids: Referral.nominal_id == n),
    (InformationRecord, "body_sealed", lambda n, ids: InformationRecord.nominal_id == n),
    (Meeting, "need_closure_sealed", lambda n, ids: Meeting.nominal_id == n),
    (Minutes, "body_sealed", lambda n, ids: Minutes.meeting_id.in_(ids["meetings"])),
    (Action, "description_sealed", lambda n, ids: Action.meeting_id.in_(ids["meetings"])),
    (ActionUpdate, "note_sealed", lambda n, ids: ActionUpdate.action_id.in_(ids["actions"])),
    (HazardFlag, "details_sealed", lambda n, ids: HazardFlag.nominal_id == n),
    (WarningMarker, "details_sealed", lambda n, ids: WarningMarker.nominal_id == n),
    (
        OnwardDisclosureRequest,
        "details_sealed",
        lambda n, ids: OnwardDisclosureRequest.meeting_id.in_(ids["meetings"]),
    ),
    (ContributorDecision, "reason_sealed", lambda n, ids: ContributorDecision.nominal_id == n),
    (ContributorDecision, "revocation_sealed", lambda n, ids: ContributorDecision.nominal_id == n),
)


#: Tables whose rows about the nominal the erasure deletes (the test below checks each is empty
#: of them), and the history, whose sealed details it sets to NULL but for the erasure's own row.
DELETED = {"idempotency_keys", "held_notifications", "origin_evidence"}
CHECKED_APART = {("nominal_changes", "details_sealed")}


def test_every_sealed_column_of_the_schema_is_checked_after_an_erasure() -> None:
    """A sealed column added to the schema must be added to SEALED (and to what the erasure
    sets to NULL) or to the tables it deletes from: none escapes this test unnoticed."""
    from sqlalchemy import LargeBinary

    from gateway.store.models import Base

    schema = {
        (table.name, column.name)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, LargeBinary)
    }
    checked = {(model.__tablename__, column) for model, column, _ in SEALED}
    unchecked = {
        (table, column)
        for table, column in schema - checked - CHECKED_APART
        if table not in DELETED
    }
    assert unchecked == set()


def _erase_context(world: World, agency: str = POLICE) -> ContextHeaders:
    return world[agency].with_context(*ERASE)


async def _erase(
    world: World,
    nominal_id: str,
    *,
    reason: str = "retention_period_ended",
    agency: str = POLICE,
    key: str | None = None,
) -> dict[str, Any]:
    return await world[agency].post(
        f"/v1/nominals/{nominal_id}/erasure",
        {"reason": reason, "note": NOTE},
        key=key,
        context=_erase_context(world, agency),
    )


async def _full_case(world: World) -> tuple[str, dict[str, list[str]]]:
    """A whole case with a warning marker, an action status note and an s.325(4A)(c) decision,
    deregistered: the nominal's id and the ids of its meetings and actions."""
    nominal_id = await whole_case(world)
    police = world[POLICE]
    # housing takes part again after the level change, so the marker may go to it
    await level_2_meeting(world, nominal_id, {HOUSING: "attended"})
    await police.post("/v1/warning-markers", marker(nominal_id))
    await police.post(
        f"/v1/nominals/{nominal_id}/contributors",
        {
            "agency_id": VICTIM_SUPPORT,
            "purposes": ["risk-assessment"],
            "ends_on": (TODAY + dt.timedelta(days=60)).isoformat(),
            "reason": "Victim support holds the Ravenscroft victim's safety plan",
        },
    )
    async with world.state.db.read() as session:
        meetings = list(
            await session.scalars(select(Meeting.id).where(Meeting.nominal_id == nominal_id))
        )
        actions = list(
            await session.scalars(select(Action.id).where(Action.meeting_id.in_(meetings)))
        )
    await world[CS].post(
        f"/v1/actions/{actions[0]}/status",
        {"status": "in_progress", "note": "Checked ICS for the Ravenscroft household"},
    )
    await police.post(
        f"/v1/nominals/{nominal_id}/deregistration",
        {"reason": "Licence expired; Ravenscroft no longer MAPPA eligible"},
    )
    return nominal_id, {"meetings": meetings, "actions": actions}


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _unknown_like(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k != "request_id"}


async def _as_unknown(world: World, agency: str, path: str) -> None:
    """``path`` answers ``agency`` exactly as the same path with an unknown id does."""
    known = await world[agency].raw("GET", path)
    unknown = await world[agency].raw("GET", path.replace(path.split("/")[3], str(uuid.uuid4())))
    assert known.status_code == unknown.status_code == 404, path
    assert _unknown_like(known.json()) == _unknown_like(unknown.json()), path


async def test_the_ra_erases_a_whole_case_and_nothing_of_it_is_left(any_world: World) -> None:
    world = any_world
    nominal_id, ids = await _full_case(world)
    async with world.state.db.read() as session:
        flag_id = await session.scalar(
            select(HazardFlag.id).where(HazardFlag.nominal_id == nominal_id)
        )
        marker_id = await session.scalar(
            select(WarningMarker.id).where(WarningMarker.nominal_id == nominal_id)
        )
        record_ids = sorted(
            await session.scalars(
                select(InformationRecord.id).where(InformationRecord.nominal_id == nominal_id)
            )
        )
    assert [row for row in await world.outbox() if row.nominal_ref == nominal_id]
    key = new_key()

    answer = await _erase(world, nominal_id, key=key)
    assert answer == {"id": nominal_id, "status": "erased", "level": 3, "category": 2}

    # The store: every sealed column about the nominal is NULL ...
    async with world.state.db.read() as session:
        for model, column, where in SEALED:
            values = (
                await session.scalars(select(getattr(model, column)).where(where(nominal_id, ids)))
            ).all()
            assert all(value is None for value in values), (model.__tablename__, column)
        nominal = await session.get(Nominal, nominal_id)
        assert nominal is not None
        assert nominal.status == "erased"
        assert (nominal.pnc_index, nominal.crn_index, nominal.visor_index) == (None, None, None)
        assert nominal.erased_at == world.clock.now
        assert nominal.erased_by_agency_id == POLICE
        assert nominal.erased_by_officer == "OFF-1"
        assert nominal.erasure_reason == "retention_period_ended"
        # ... but the history's erasure row, whose sealed note is the RA's decision
        changes = (
            await session.scalars(
                select(NominalChange).where(NominalChange.nominal_id == nominal_id)
            )
        ).all()
        [erasure_change] = [c for c in changes if c.details_sealed is not None]
        assert erasure_change.kind == "erasure"
        assert erasure_change.old_value == "deregistered"
        assert world.state.case_sealer is not None
        assert world.state.case_sealer.unseal(
            "nominal_changes", erasure_change.id, "details_sealed", erasure_change.details_sealed
        ) == {"reason": NOTE}
        [entry] = (
            await session.scalars(select(AuditEntry).where(AuditEntry.operation == "erasure"))
        ).all()
        # Rows that only carried case data are gone, but the erasure's own.
        held = (
            await session.scalars(
                select(HeldNotification.id).where(HeldNotification.nominal_ref == nominal_id)
            )
        ).all()
        assert held == []
        origins = (
            await session.scalars(
                select(OriginEvidence.entry_id).where(OriginEvidence.nominal_ref == nominal_id)
            )
        ).all()
        assert origins == [entry.entry_id]
        answers = (await session.scalars(select(IdempotentRequest))).all()
        named = [
            a for a in answers if a.audit_entry_id in entry.detail["removed"]["origin_evidence"]
        ]
        assert named == []
        assert [a.audit_entry_id for a in answers if a.key == key] == [entry.entry_id]

    # Nothing about it is queued: only the erasure notices, which name no nominal in the row.
    queued = await world.outbox()
    assert {row.kind for row in queued} == {"erasure"}
    assert all(row.nominal_ref is None and row.subject_ref is None for row in queued)
    notified = {row.recipient_agency_id for row in queued}
    assert {POLICE, PROBATION, CS, HOUSING, CP_CONFERENCE, MAPPA} <= notified
    for recipient in notified:
        [body] = await world.pushed(recipient, "erasure")
        expected: dict[str, Any] = {"nominal_id": nominal_id, "reason": "retention_period_ended"}
        if recipient == CS:
            expected["hazard_flag_ids"] = [flag_id]
        if recipient == HOUSING:
            expected["warning_marker_ids"] = [marker_id]
        assert body == expected, recipient

    # The audit entry: ids and counts, no personal data.
    assert entry.outcome == "allowed" and entry.nominal_ref == nominal_id
    assert entry.agency_id == POLICE and entry.officer_id == "OFF-1"
    assert (entry.legal_basis, entry.purpose) == ERASE
    assert entry.reason_code == "retention_period_ended"
    assert sorted(entry.recipients) == sorted(notified)
    erased = entry.detail["erased"]
    assert erased["information_records"] == record_ids
    assert erased["hazard_flags"] == [flag_id] and erased["warning_markers"] == [marker_id]
    assert erased["minutes"] and erased["actions"] == sorted(ids["actions"])
    assert erased["onward_disclosure_requests"] and erased["contributor_decisions"]
    assert erased["referrals"] and erased["action_updates"] and erased["nominal_changes"]
    assert entry.detail["erased_counts"]["information_records"] == len(record_ids)
    assert entry.detail["removed_counts"]["outbox_messages"] > 0
    assert entry.detail["removed_counts"]["origin_evidence"] > 0
    assert entry.detail["removed_counts"]["idempotency_keys"] > 0
    assert {n["recipient"] for n in entry.detail["notices"]} == notified
    text = _text({c.name: getattr(entry, c.name) for c in AuditEntry.__table__.columns})
    for needle in (*SECRETS, NOTE, "Ravenscroft", UPRN):
        assert needle not in text, needle

    # To everyone, the nominal and all of it is an unknown id.
    for agency in (POLICE, PROBATION, MAPPA, CS, HOUSING):
        await _as_unknown(world, agency, f"/v1/nominals/{nominal_id}")
    await _as_unknown(world, POLICE, f"/v1/nominals/{nominal_id}/records")
    await _as_unknown(world, PROBATION, f"/v1/nominals/{nominal_id}/records/{record_ids[0]}")
    await _as_unknown(world, POLICE, f"/v1/nominals/{nominal_id}/contributors")
    await _as_unknown(world, POLICE, f"/v1/nominals/{nominal_id}/warning-markers")
    await _as_unknown(world, MAPPA, f"/v1/meetings/{ids['meetings'][0]}")
    await _as_unknown(world, PROBATION, f"/v1/meetings/{ids['meetings'][0]}/minutes")
    await _as_unknown(world, CS, f"/v1/actions/{ids['actions'][0]}")
    await _as_unknown(world, CS, f"/v1/hazard-flags/{flag_id}")
    found = await world[POLICE].refused("POST", "/v1/nominals/lookup", {"pnc": PNC})
    nobody = await world[POLICE].refused("POST", "/v1/nominals/lookup", {"pnc": "2001/0000001Z"})
    assert found.status == nobody.status == 404
    assert _unknown_like(found.problem) == _unknown_like(nobody.problem)

    # A second erasure, retried or new, is that 404 too, and erases nothing more.
    for again in (key, new_key()):
        refused = await world[POLICE].refused(
            "POST",
            f"/v1/nominals/{nominal_id}/erasure",
            {"reason": "retention_period_ended", "note": NOTE},
            key=again,
            context=_erase_context(world),
        )
        assert refused.status == 404 and refused.code == "not_found"
    assert len(await world.audit(operation="erasure", outcome="allowed")) == 1

    # The same person referred again is a new nominal: the erased one matches nothing.
    referred = await world[POLICE].post("/v1/referrals", referral())
    assert referred["nominal_id"] not in (None, nominal_id)

    # The log, which held ids and codes only, is whole and verifies.
    audit = world.state.audit
    assert audit is not None
    await sequence(world.state.db, audit.signer, audit.origin)
    report = await asyncio.to_thread(
        verify_database, world.state.settings.database_url, audit.verifier()
    )
    assert report.ok, report


async def test_created_in_error_erases_a_registered_nominal(world: World) -> None:
    """A registration made in error is erased without deregistration: it leaves the level 1
    list and its identifiers find nothing."""
    nominal_id = await at_level_1(world)
    listed = await world[PROBATION].get("/v1/level-1-list")
    assert nominal_id in _text(listed)
    await _erase(world, nominal_id, reason="created_in_error")
    assert nominal_id not in _text(await world[PROBATION].get("/v1/level-1-list"))
    refused = await world[PROBATION].refused("POST", "/v1/nominals/lookup", {"pnc": PNC})
    assert refused.status == 404
    [entry] = await world.audit(operation="erasure")
    assert entry.reason_code == "created_in_error" and entry.detail["from"] == "active"


async def test_agencies_that_had_the_nominal_on_the_level_1_list_are_told_of_its_erasure(
    any_world: World,
) -> None:
    """A page of the level 1 list gives each nominal's names and date of birth in one audit
    entry that names no nominal (its ids are the entry's record_refs): the erasure finds the
    agencies whose pages listed the nominal through the entry's index and sends each the
    notice; an agency whose page did not list it is not told. (Only the lead and the agency
    erasing were told: the agencies holding the list's copy never heard of the erasure.)"""
    world = any_world
    first = await at_level_1(world, subject=_listed_subject(1))
    world.clock.advance(seconds=1)
    nominal_id = await at_level_1(world, subject=_listed_subject(2))
    assert nominal_id in _text(await world[HOUSING].get("/v1/level-1-list"))
    page = await world[JCP].get("/v1/level-1-list", limit="1")  # the older nominal alone
    assert [entry["id"] for entry in page["entries"]] == [first]

    async with world.state.db.read() as session:
        indexed = (
            await session.execute(
                select(AuditEntryNominal.nominal_id, AuditEntry.agency_id).join(
                    AuditEntry, AuditEntry.entry_id == AuditEntryNominal.entry_id
                )
            )
        ).all()
    assert sorted(indexed) == sorted([(first, HOUSING), (nominal_id, HOUSING), (first, JCP)])

    await _erase(world, nominal_id, reason="created_in_error")
    [entry] = await world.audit(operation="erasure")
    assert HOUSING in entry.recipients and JCP not in entry.recipients
    assert await world.pushed(HOUSING, "erasure") == [
        {"nominal_id": nominal_id, "reason": "created_in_error"}
    ]
    assert await world.pushed(JCP, "erasure") == []


async def test_a_referrer_that_may_not_know_the_case_is_not_told_of_its_erasure(
    any_world: World,
) -> None:
    """Housing refers a made-up subject carrying the PNC id of a case it may not know of: the
    referral is linked to the case and tells housing nothing. When the RA erases the case,
    housing is sent no notice naming it (its referral's entry counted it among the case's
    holders, and the notice gave it the hidden case's id), and a retry of its referral with
    its Idempotency-Key answers as before (a new referral would say the case had gone)."""
    world = any_world
    hidden = await at_level_2(world)
    await world[POLICE].post(f"/v1/nominals/{hidden}/category", {"category": "M4", "reason": "t"})
    assert (await world[HOUSING].refused("GET", f"/v1/nominals/{hidden}")).status == 404
    subject = {**referral()["subject"], "family_name": "Probe", "given_names": "Made Up"}
    body = referral(subject=subject, lead_agency_id=PROBATION, agencies_involved=[])
    key = new_key()
    first = await world[HOUSING].post("/v1/referrals", body, key=key)
    async with world.state.db.read() as session:
        statuses = (
            await session.scalars(select(Referral.status).where(Referral.nominal_id == hidden))
        ).all()
    assert "linked" in statuses
    await _erase(world, hidden, reason="created_in_error")
    assert await world.pushed(HOUSING, "erasure") == []
    assert await world[HOUSING].post("/v1/referrals", body, key=key) == first


def _listed_subject(n: int) -> dict[str, str]:
    return {**referral()["subject"], "pnc_id": f"2011/00000{n:02d}B", "crn": f"Y0000{n:02d}"}


async def test_a_registered_nominal_is_deregistered_before_any_other_erasure(
    world: World,
) -> None:
    """Retention and an upheld request erase a closed case: a registered one is 409, erased
    nothing, audited; once deregistered the same erasure goes through."""
    nominal_id = await at_level_2(world)
    for reason in ("retention_period_ended", "erasure_request_upheld"):
        refused = await world[POLICE].refused(
            "POST",
            f"/v1/nominals/{nominal_id}/erasure",
            {"reason": reason, "note": NOTE},
            key=new_key(),
            context=_erase_context(world),
        )
        assert refused.status == 409
    entries = await world.audit(operation="erasure")
    assert [(e.outcome, e.detail.get("reason")) for e in entries] == [
        ("refused", "not_deregistered")
    ] * 2
    assert (await world[POLICE].get(f"/v1/nominals/{nominal_id}"))["id"] == nominal_id
    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/deregistration", {"reason": "Order expired"}
    )
    assert (await _erase(world, nominal_id, reason="erasure_request_upheld"))["status"] == "erased"


async def _nothing_erased(world: World, nominal_id: str) -> None:
    assert await world.audit(operation="erasure", outcome="allowed") == []
    async with world.state.db.read() as session:
        nominal = await session.get(Nominal, nominal_id)
        assert nominal is not None and nominal.status == "deregistered"
        assert nominal.details_sealed is not None and nominal.pnc_index is not None
    assert (await world[POLICE].get(f"/v1/nominals/{nominal_id}"))["id"] == nominal_id


@pytest.mark.parametrize(
    ("agency", "basis", "purpose", "rule"),
    [
        # a duty-to-co-operate agency may not rely on the erasure basis
        (HOUSING, "DPA2018-s47", "erasure", "role-allowed-for-basis"),
        # an ordinary MAPPA basis and purpose are no licence to erase
        (POLICE, "CJA2003-s325-4", "risk-management", "purpose-allowed-for-operation"),
        # the erasure purpose under a basis that does not allow it
        (POLICE, "CJA2003-s325-4", "erasure", "purpose-allowed-for-basis"),
        # the erasure basis for another purpose
        (POLICE, "DPA2018-s47", "risk-management", "purpose-allowed-for-operation"),
    ],
)
async def test_a_basis_purpose_or_role_that_does_not_fit_is_refused_before_anything_is_read(
    world: World, agency: str, basis: str, purpose: str, rule: str
) -> None:
    nominal_id, _ = await _full_case(world)
    refused = await world[agency].refused(
        "POST",
        f"/v1/nominals/{nominal_id}/erasure",
        {"reason": "retention_period_ended", "note": NOTE},
        key=new_key(),
        context=world[agency].with_context(basis, purpose),
    )
    assert refused.status == 403 and refused.code == "lawful_basis_refused"
    [entry] = await world.audit(operation="erasure")
    assert entry.outcome == "refused" and entry.rule == rule
    assert entry.nominal_ref is None and entry.payload_digest is None  # nothing opened or read
    await _nothing_erased(world, nominal_id)


async def test_the_erasure_basis_serves_no_other_operation(world: World) -> None:
    nominal_id = await at_level_2(world)
    refused = await world[POLICE].refused(
        "GET", f"/v1/nominals/{nominal_id}", context=_erase_context(world)
    )
    assert refused.status == 403
    [entry] = await world.audit(outcome="refused")
    assert entry.rule == "operation-allowed-for-basis"


async def test_an_agency_other_than_the_area_s_ra_is_refused_as_for_other_ra_writes(
    world: World,
) -> None:
    """Another area's police: 404 as an unknown id while it may not know the nominal; 403 once
    a meeting lets it know the case, which is still not its to erase."""
    nominal_id, _ = await _full_case(world)
    path = f"/v1/nominals/{nominal_id}/erasure"
    body = {"reason": "retention_period_ended", "note": NOTE}
    unknown_path = f"/v1/nominals/{uuid.uuid4()}/erasure"
    wilts = world[WILTS_POLICE]
    context = _erase_context(world, WILTS_POLICE)
    refused = await wilts.refused("POST", path, body, key=new_key(), context=context)
    unknown = await wilts.refused("POST", unknown_path, body, key=new_key(), context=context)
    assert refused.status == unknown.status == 404
    assert _unknown_like(refused.problem) == _unknown_like(unknown.problem)

    other = await at_level_2(
        world, subject={**referral()["subject"], "pnc_id": "2002/0000002A", "crn": "Y000001"}
    )
    await level_2_meeting(world, other, {WILTS_POLICE: "attended", PROBATION: "attended"})
    assert (await wilts.get(f"/v1/nominals/{other}"))["id"] == other
    refused = await wilts.refused(
        "POST",
        f"/v1/nominals/{other}/erasure",
        {"reason": "created_in_error", "note": NOTE},
        key=new_key(),
        context=context,
    )
    assert refused.status == 403 and refused.code == "forbidden", refused.problem
    entries = await world.audit(operation="erasure")
    assert [(e.outcome, e.rule) for e in entries][-1] == (
        "refused",
        "responsible-authority-of-area-only",
    )
    assert {e.outcome for e in entries} == {"refused"}
    await _nothing_erased(world, nominal_id)


@pytest.mark.parametrize(
    "body",
    [
        {"reason": "tidying_up", "note": NOTE},  # not in the vocabulary
        {"reason": "RETENTION_PERIOD_ENDED", "note": NOTE},  # codes are exact
        {"reason": "retention_period_ended"},  # no note
        {"reason": "retention_period_ended", "note": ""},
        {"reason": "retention_period_ended", "note": NOTE, "cascade": True},  # unknown field
        {"reason": "retention_period_ended", "note": NOTE, "nominal_id": str(uuid.uuid4())},
        {"reason": ["retention_period_ended"], "note": NOTE},
        {"reason": "retention_period_ended", "note": "line\x1b[2Jcleared"},  # control character
    ],
)
async def test_a_hostile_body_is_refused_and_erases_nothing(
    world: World, body: dict[str, Any]
) -> None:
    nominal_id, _ = await _full_case(world)
    before = len(await world.outbox())
    refused = await world[POLICE].refused(
        "POST",
        f"/v1/nominals/{nominal_id}/erasure",
        body,
        key=new_key(),
        context=_erase_context(world),
    )
    assert refused.status == 422 and refused.code == "validation_failed"
    assert len(await world.outbox()) == before
    assert not any(row.kind == "erasure" for row in await world.outbox())
    await _nothing_erased(world, nominal_id)


async def test_plain_json_is_refused(world: World) -> None:
    nominal_id, _ = await _full_case(world)
    response = await world[POLICE].raw(
        "POST",
        f"/v1/nominals/{nominal_id}/erasure",
        content=json.dumps({"reason": "retention_period_ended", "note": NOTE}),
        content_type="application/json",
        context=_erase_context(world),
    )
    assert response.status_code == 415
    await _nothing_erased(world, nominal_id)


def _erased_before_release(
    world: World, monkeypatch: pytest.MonkeyPatch, module: Any, nominal_id: str
) -> list[dict[str, Any]]:
    """Have the RA erase ``nominal_id`` (created in error) once, when ``module`` first releases
    an answer, between the answer being made and its release; what the erasure answered."""
    original = module.released
    erased: list[dict[str, Any]] = []

    async def erasure_meanwhile(*args: Any, **kwargs: Any) -> None:
        if not erased:
            erased.append(await _erase(world, nominal_id, reason="created_in_error"))
        await original(*args, **kwargs)

    monkeypatch.setattr(module, "released", erasure_meanwhile)
    return erased


async def test_an_answer_made_before_an_erasure_committed_is_not_released(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probation's read of the nominal is answered, and before its answer is released (its
    audit entry committed) the RA erases the nominal: the answer is not sent but a 404 exactly
    as for an unknown id, its refusal audited with the erasure's rule, and no disclosure to
    probation is recorded after the erasure. (It was released after the erasure had told every
    agency the log showed, and probation, not yet among them, was never told to erase it.)"""
    from gateway.cases import nominals

    nominal_id = await at_level_2(world)
    path = f"/v1/nominals/{nominal_id}"
    assert (await world[PROBATION].get(path))["id"] == nominal_id
    erased = _erased_before_release(world, monkeypatch, nominals, nominal_id)
    refused = await world[PROBATION].refused("GET", path)
    assert erased and refused.status == 404
    unknown = await world[PROBATION].refused("GET", f"/v1/nominals/{uuid.uuid4()}")
    assert _unknown_like(refused.problem) == _unknown_like(unknown.problem)
    entries = await world.audit(agency_id=PROBATION)
    [erasure] = await world.audit(operation="erasure")
    after = [e for e in entries if e.id > erasure.id]
    assert [(e.outcome, e.rule) for e in after] == [
        ("refused", "nominal-erased"),
        ("refused", "resource-exists"),  # the unknown id
    ]


async def test_a_level_1_list_read_before_an_erasure_committed_is_not_released(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of the level 1 list made before the RA erased a nominal on it is not sent once
    the erasure has committed: 409 conflict (read it again), refused in the audit; the page read
    again leaves the erased nominal out. (It was sent, the erased person's minimal details with
    it, and the erasure, finding no entry about that nominal, told nobody.)"""
    from gateway.cases import level1

    nominal_id = await at_level_1(world)
    assert nominal_id in _text(await world[PROBATION].get("/v1/level-1-list"))
    erased = _erased_before_release(world, monkeypatch, level1, nominal_id)
    refused = await world[PROBATION].refused("GET", "/v1/level-1-list")
    assert erased and refused.status == 409 and refused.code == "conflict"
    [erasure] = await world.audit(operation="erasure")
    after = [e for e in await world.audit(agency_id=PROBATION) if e.id > erasure.id]
    assert [e.outcome for e in after] == ["refused"]
    assert nominal_id not in _text(await world[PROBATION].get("/v1/level-1-list"))
    async with world.state.db.read() as session:
        indexed = set(await session.scalars(select(AuditEntryNominal.entry_id)))
    allowed = {e.entry_id for e in await world.audit(agency_id=PROBATION, outcome="allowed")}
    assert indexed and indexed <= allowed  # the refused page indexed nothing
