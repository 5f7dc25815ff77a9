"""Barnet's agencies (seed 004) and the bodies they send, in one place.

The strings marked as personal data or third-party content are what the sink searches look for:
they must never appear outside the store's sealed columns, except to those entitled to them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.gateway.cases.support import TODAY, World

# -- personal data and third-party content: searched for in every sink --------------------------
FAMILY_NAME = "Ravenscroft"
GIVEN_NAMES = "Declan Ambrose"
DATE_OF_BIRTH = "1979-04-17"
ADDRESS = "Flat 9, 41 Quillfeather Road, Hendon NW4 9ZZ"
PNC = "1999/0345678Q"
CRN = "X771234"
REASONS = "Released on licence; disclosed intent to contact former partner's children"
RECORD_TEXT = "Attended approved premises curfew check; compliant, disclosed new relationship"
#: A neighbour reporting the subject: a third-party source, never beyond its originator.
THIRD_PARTY_SOURCE = "Mrs Philippa Oddington-Vance of 43 Quillfeather Road"
THIRD_PARTY_TEXT = "Neighbour saw him outside Woodhaven Primary at 15:10 on three afternoons"
DISCUSSION_TEXT = "Probation reported a breach of exclusion zone; police to review ANPR"
CONCLUSION_TEXT = "Manage at level 2; refer to housing for move away from school catchment"
THIRD_PARTY_CONCLUSION = "Victim Ms Lorna Etheridge-Pike asked for a safety plan at her new address"
ACTION_TEXT = "Children's services to check ICS for any open case on the household"
CHILD_REF = "ICS-FAM-55821"

SECRETS = (
    FAMILY_NAME,
    GIVEN_NAMES,
    DATE_OF_BIRTH,
    ADDRESS,
    PNC,
    CRN,
    REASONS,
    RECORD_TEXT,
    THIRD_PARTY_SOURCE,
    THIRD_PARTY_TEXT,
    DISCUSSION_TEXT,
    CONCLUSION_TEXT,
    THIRD_PARTY_CONCLUSION,
    ACTION_TEXT,
)
THIRD_PARTY = (THIRD_PARTY_SOURCE, THIRD_PARTY_TEXT, THIRD_PARTY_CONCLUSION)

POLICE = "barnet-police"
PROBATION = "barnet-probation"
MAPPA = "barnet-mappa-unit"
CS = "barnet-childrens-services"
HOUSING = "barnet-housing"
JCP = "barnet-jobcentre-plus"
MENTAL_HEALTH = "barnet-mental-health"
CP_CONFERENCE = "barnet-cp-conference"
WILTS_POLICE = "wiltshire-police"
VICTIM_SUPPORT = "barnet-victim-support"

BARNET = (
    (POLICE, "police", "responsible_authority"),
    (PROBATION, "probation", "responsible_authority"),
    (MAPPA, "mappa_coordination", "responsible_authority"),
    (CS, "childrens_services", "duty_to_cooperate"),
    (HOUSING, "housing", "duty_to_cooperate"),
    (JCP, "jobcentre_plus", "duty_to_cooperate"),
    (MENTAL_HEALTH, "mental_health", "duty_to_cooperate"),
    (CP_CONFERENCE, "childrens_services", "duty_to_cooperate"),
    (VICTIM_SUPPORT, "other", "other_contributor"),
)


async def onboard_barnet(world: World) -> None:
    for agency_id, agency_type, role in BARNET:
        await world.register(agency_id, agency_type, role)
    await world.register(WILTS_POLICE, "police", "responsible_authority", area="wiltshire")


def referral(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "mappa",
        "subject": {
            "family_name": FAMILY_NAME,
            "given_names": GIVEN_NAMES,
            "date_of_birth": DATE_OF_BIRTH,
            "address": ADDRESS,
            "pnc_id": PNC,
            "crn": CRN,
        },
        "category": "M2",
        "reasons": REASONS,
        "risks": [
            {"group": "children", "level": "high"},
            {"group": "known_adult", "level": "medium"},
        ],
        "agencies_involved": [PROBATION, CS],
        "referrer_name": "DS Okonkwo-Hale",
        "referrer_contact": "mappa.referrals@met.example",
    }
    body.update(changes)
    return body


def record(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "case_note",
        "summary": "Curfew check and neighbour report",
        "content": [
            {"id": "c1", "text": RECORD_TEXT, "source": "s-probation"},
            {"id": "c2", "text": THIRD_PARTY_TEXT, "source": "s-neighbour"},
        ],
        "sources": [
            {
                "id": "s-probation",
                "kind": "agency",
                "description": "Supervising officer",
                "third_party": False,
            },
            {
                "id": "s-neighbour",
                "kind": "neighbour",
                "description": THIRD_PARTY_SOURCE,
                "third_party": True,
            },
        ],
        "risk": [{"group": "children", "level": "high"}],
    }
    body.update(changes)
    return body


def minutes(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "discussion": [
            {"id": "d1", "text": DISCUSSION_TEXT, "source": "s-probation"},
            {"id": "d2", "text": THIRD_PARTY_TEXT, "source": "s-neighbour"},
        ],
        "sources": [
            {
                "id": "s-probation",
                "kind": "agency",
                "description": "Offender manager",
                "third_party": False,
            },
            {
                "id": "s-neighbour",
                "kind": "neighbour",
                "description": THIRD_PARTY_SOURCE,
                "third_party": True,
                "originator_agency_id": POLICE,
            },
            {
                "id": "s-victim",
                "kind": "victim",
                "description": "Former partner",
                "third_party": True,
            },
        ],
        "conclusions": [
            {"id": "k1", "text": CONCLUSION_TEXT},
            {"id": "k2", "text": THIRD_PARTY_CONCLUSION, "source": "s-victim"},
        ],
        "risk_management_plan": "Exclusion zone; weekly reporting; review in four weeks",
        "apologies": [MENTAL_HEALTH],
    }
    body.update(changes)
    return body


def disclosure_request(meeting_id: str, recipient: str, **changes: Any) -> dict[str, Any]:
    """A participant's request to share a meeting's conclusions and actions onward; by default
    with a child protection conference, for a s.47 enquiry."""
    body: dict[str, Any] = {
        "meeting_id": meeting_id,
        "recipient_agency_id": recipient,
        "purpose": "child-protection",
        "parts": ["conclusions", "actions"],
        "recipient_description": "Initial child protection conference",
        "reasons": "Household children are subject to a s.47 enquiry",
    }
    body.update(changes)
    return body


async def referred(world: World, **changes: Any) -> str:
    """Police refer a subject; the new nominal's id (level 1, awaiting screening)."""
    answer = await world[POLICE].post("/v1/referrals", referral(**changes))
    nominal_id = answer["nominal_id"]
    assert isinstance(nominal_id, str)
    return nominal_id


async def at_level_1(world: World, **changes: Any) -> str:
    """A referred nominal that screening screened out: level 1, on the area's level 1 list."""
    nominal_id = await referred(world, **changes)
    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/screening",
        {"outcome": "screened_out", "reasons": "Managed by the lead agency alone"},
    )
    return nominal_id


async def at_level_2(world: World, **changes: Any) -> str:
    """A referred nominal that screening put at level 2."""
    nominal_id = await referred(world, **changes)
    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/screening",
        {"outcome": "level_2", "reasons": "Imminent risk to children in the area"},
    )
    return nominal_id


async def level_2_meeting(
    world: World, nominal_id: str, participants: dict[str, str] | None = None
) -> str:
    """A level 2 meeting chaired by police, with Barnet's usual attendance (seed 004)."""
    parts = participants or {
        PROBATION: "attended",
        CS: "attended",
        HOUSING: "attended",
        JCP: "minutes_only",
        MENTAL_HEALTH: "invited",
    }
    answer = await world[POLICE].post(
        "/v1/meetings",
        {
            "nominal_id": nominal_id,
            "meeting_type": "level_2",
            "held_on": TODAY.isoformat(),
            "chair_officer": "DI-2231",
            "participants": [{"agency_id": a, "participation": p} for a, p in parts.items()],
            "confidentiality_statement_signed": True,
        },
    )
    meeting_id = answer["id"]
    assert isinstance(meeting_id, str)
    return meeting_id


async def whole_case(world: World) -> str:
    """A whole Barnet case through the API: referral, screening, meeting, record with a third
    party, action, minutes, onward disclosure, hazard flag, level change; the nominal's id."""
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    await world[PROBATION].post(f"/v1/nominals/{nominal_id}/records", record())
    await world[POLICE].post(
        f"/v1/meetings/{meeting_id}/actions",
        {
            "owner_agency_id": CS,
            "description": ACTION_TEXT,
            "due_date": (TODAY + dt.timedelta(days=7)).isoformat(),
        },
    )
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    asked = await world[CS].post(
        "/v1/disclosures",
        {
            "meeting_id": meeting_id,
            "recipient_agency_id": CP_CONFERENCE,
            "purpose": "child-protection",
            "parts": ["conclusions"],
            "recipient_description": "Conference for the Ravenscroft children",
            "reasons": "s.47 enquiry about the household",
        },
    )
    await world[POLICE].post(
        f"/v1/disclosures/{asked['id']}/decision",
        {"decision": "approve", "approved_parts": ["conclusions"], "reason": "s.47"},
    )
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
    await world[POLICE].post(
        f"/v1/nominals/{nominal_id}/level", {"level": 3, "reason": "Media interest in Ravenscroft"}
    )
    return nominal_id
