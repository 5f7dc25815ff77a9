"""The documents the policies redact, built from the store's rows and their sealed columns.

What is sealed at rest (``*_sealed``) is the personal part of a document; the clear columns are
what the policies decide on. These functions put the two together into the plain JSON document
that :mod:`gateway.flow.redact` cuts down for each recipient (field names as classified in
``policies/data/recipients.toml``). ``None`` values are left out: a field that is absent is
neither shown nor recorded as withheld.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.contract import ItemIn, MinutesIn, RecordIn, ReferralIn, SourceIn
from gateway.domain import DisclosureStatus, Participation
from gateway.store.models import (
    Action,
    HazardFlag,
    InformationRecord,
    Meeting,
    Minutes,
    Nominal,
    OnwardDisclosureRequest,
)
from gateway.store.sealed import CaseSealer

__all__ = [
    "MARKING",
    "action_document",
    "action_minutes_document",
    "disclosure_request_document",
    "flag_source",
    "items",
    "meeting_document",
    "minutes_body",
    "minutes_document",
    "nominal_details",
    "nominal_document",
    "record_body",
    "record_document",
    "sources",
    "stored_minutes_body",
    "stored_record_document",
]

MARKING = "OFFICIAL-SENSITIVE"


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _compact(document: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if value is not None}


def items(entries: Iterable[ItemIn]) -> list[dict[str, Any]]:
    return [
        _compact(
            {
                "id": item.id,
                "text": item.text,
                "source": item.source,
                "sources": list(item.sources) or None,
                "caveats": [str(c) for c in item.caveats] or None,
            }
        )
        for item in entries
    ]


def sources(entries: Iterable[SourceIn]) -> list[dict[str, Any]]:
    return [
        _compact(
            {
                "id": source.id,
                "kind": str(source.kind),
                "description": source.description,
                "third_party": source.third_party,
                "released": source.released,
                "originator_agency_id": source.originator_agency_id,
            }
        )
        for source in entries
    ]


# ------------------------------------------------------------------------------ nominals


def nominal_details(referral: ReferralIn) -> dict[str, Any]:
    """What of a referral becomes the nominal's sealed details."""
    subject = referral.subject
    return _compact(
        {
            "names": {"family_name": subject.family_name, "given_names": subject.given_names},
            "aliases": list(subject.aliases),
            "date_of_birth": subject.date_of_birth.isoformat(),
            "address": subject.address,
            "pnc_id": subject.pnc_id,
            "crn": subject.crn,
            "visor_ref": subject.visor_ref,
            "risk": [{"group": str(r.group), "level": str(r.level)} for r in referral.risks],
        }
    )


def nominal_document(nominal: Nominal, sealer: CaseSealer) -> dict[str, Any]:
    details = sealer.unseal("nominals", nominal.id, "details_sealed", nominal.details_sealed)
    return _compact(
        {
            "id": nominal.id,
            "area": nominal.area,
            "category": nominal.category,
            "level": nominal.level,
            "lead_agency_id": nominal.lead_agency_id,
            "status": str(nominal.status),
            **details,
            "status_informed": nominal.status_informed,
            "status_withheld_reason": (
                str(nominal.status_withheld_reason) if nominal.status_withheld_reason else None
            ),
            "level_changed_at": _iso(nominal.level_changed_at),
            "created_at": _iso(nominal.created_at),
            "updated_at": _iso(nominal.updated_at),
        }
    )


# ------------------------------------------------------------------------------- records


def record_body(record: RecordIn) -> dict[str, Any]:
    """What of a record is sealed: its content and sources, and every free-text field."""
    return _compact(
        {
            "summary": record.summary,
            "content": items(record.content),
            "sources": sources(record.sources),
            "risk": [{"group": str(r.group), "level": str(r.level)} for r in record.risk],
            "offence": record.offence,
            "sentence": record.sentence,
            "address": record.address,
            "tenancy": record.tenancy,
            "grading": record.grading,
        }
    )


def record_document(record: InformationRecord, body: Mapping[str, Any]) -> dict[str, Any]:
    """The record's document from its row and its (unsealed) body."""
    return _compact(
        {
            "id": record.id,
            "nominal_id": record.nominal_id,
            "kind": str(record.kind),
            "owner_agency_id": record.owner_agency_id,
            "officer": record.officer,
            "marking": record.marking,
            "caveats": list(record.caveats) or None,
            "created_at": _iso(record.created_at),
            **body,
        }
    )


def stored_record_document(record: InformationRecord, sealer: CaseSealer) -> dict[str, Any]:
    body = sealer.unseal("information_records", record.id, "body_sealed", record.body_sealed)
    return record_document(record, body)


# ------------------------------------------------------------------------------- minutes


def minutes_body(minutes: MinutesIn) -> dict[str, Any]:
    return _compact(
        {
            "discussion": items(minutes.discussion),
            "sources": sources(minutes.sources),
            "conclusions": items(minutes.conclusions),
            "risk_management_plan": minutes.risk_management_plan,
            "caveats": [str(c) for c in minutes.caveats] or None,
            "apologies": list(minutes.apologies) or None,
        }
    )


def action_document(action: Action, sealer: CaseSealer) -> dict[str, Any]:
    description = sealer.unseal(
        "actions", action.id, "description_sealed", action.description_sealed
    )
    return _compact(
        {
            "id": action.id,
            "owner_agency_id": action.owner_agency_id,
            "description": description.get("description"),
            "source": description.get("source"),
            "due_date": _iso(action.due_date),
            "review_date": _iso(action.review_date),
            "status": str(action.status),
        }
    )


def minutes_document(
    meeting: Meeting,
    participants: Sequence[tuple[str, Participation]],
    body: Mapping[str, Any],
    actions: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The minutes' document from the meeting, its participants, the body and the actions."""
    return _compact(
        {
            "meeting_id": meeting.id,
            "nominal_id": meeting.nominal_id,
            "meeting_type": str(meeting.meeting_type),
            "held_on": _iso(meeting.held_on),
            "chair": {"agency_id": meeting.chair_agency_id, "officer": meeting.chair_officer},
            "attendees": sorted(a for a, p in participants if p is Participation.ATTENDED),
            "minutes_only_recipients": sorted(
                a for a, p in participants if p is Participation.MINUTES_ONLY
            ),
            "confidentiality_statement_signed": meeting.confidentiality_statement_signed,
            "marking": MARKING,
            **body,
            "actions": list(actions) or None,
            "review_date": _iso(meeting.review_date),
        }
    )


def stored_minutes_body(minutes: Minutes, sealer: CaseSealer) -> dict[str, Any]:
    return sealer.unseal("minutes", minutes.id, "body_sealed", minutes.body_sealed)


def action_minutes_document(
    meeting: Meeting, body: Mapping[str, Any], action: Mapping[str, Any]
) -> dict[str, Any]:
    """What of the minutes one action point's redaction needs: the meeting reference, the
    minutes' caveats and sources (``body``, empty before the minutes are written), and the
    action point as the minutes' one action."""
    return _compact(
        {
            "meeting_id": meeting.id,
            "nominal_id": meeting.nominal_id,
            "marking": MARKING,
            "caveats": body.get("caveats"),
            "sources": body.get("sources"),
            "actions": [action],
        }
    )


# ------------------------------------------------------------------------------ meetings

#: A meeting's status as its read gives it: minutes not yet written, written, need closed.
CONVENED, MINUTED, NEED_CLOSED = "convened", "minuted", "need_closed"


def meeting_document(
    meeting: Meeting, participants: Sequence[tuple[str, Participation]], *, minuted: bool
) -> dict[str, Any]:
    """The meeting's own document: identifiers, codes and dates, never its minutes."""
    status = NEED_CLOSED if meeting.need_closed_at is not None else CONVENED
    if status == CONVENED and minuted:
        status = MINUTED
    return _compact(
        {
            "id": meeting.id,
            "nominal_id": meeting.nominal_id,
            "meeting_type": str(meeting.meeting_type),
            "level": meeting.level_at_meeting,
            "held_on": _iso(meeting.held_on),
            "review_date": _iso(meeting.review_date),
            "status": status,
            "chair_agency_id": meeting.chair_agency_id,
            "participants": [
                {"agency_id": agency_id, "participation": str(participation)}
                for agency_id, participation in sorted(participants)
            ],
        }
    )


# --------------------------------------------------------------------- onward disclosure


def disclosure_request_document(
    request: OnwardDisclosureRequest, nominal_id: str, requested_parts: Sequence[str]
) -> dict[str, Any]:
    """An onward-disclosure request's status: who asked, for whom, what, and the decision;
    never the minutes, nor the request's free text (its reasons, the recipient's description)."""
    decided = request.status is not DisclosureStatus.PENDING
    return _compact(
        {
            "id": request.id,
            "meeting_id": request.meeting_id,
            "nominal_id": nominal_id,
            "requesting_agency_id": request.requesting_agency_id,
            "recipient_agency_id": request.recipient_agency_id,
            "purpose": request.purpose,
            "requested_parts": list(requested_parts),
            "requested_at": _iso(request.created_at),
            "status": str(request.status),
            "approved_parts": [str(p) for p in request.approved_parts] if decided else None,
            "decided_by": request.decided_by,
            "decided_at": _iso(request.decided_at),
        }
    )


# --------------------------------------------------------------------------- hazard flags


def flag_source(flag: HazardFlag, sealer: CaseSealer) -> dict[str, Any]:
    """The stored flag's fields, for the builder to rebuild the flag from its allow-list."""
    details = sealer.unseal("hazard_flags", flag.id, "details_sealed", flag.details_sealed)
    return _compact({**details, "review_date": _iso(flag.review_date)})
