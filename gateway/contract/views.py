"""What leaves the gateway: one explicit schema per document and view.

The policies' allow-lists decide which fields each recipient receives; these models are the
last gate. A redacted document is validated against its view model (``extra="forbid"``) and only
the fields it actually carries are serialised, so a field that is on no schema can never reach a
recipient, whatever a bug upstream let through: :func:`shape` raises instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.contract.contact import Contact

__all__ = [
    "AckOut",
    "ActionView",
    "DisclosureRequestView",
    "HazardFlagView",
    "Level1EntryView",
    "MeetingView",
    "MinutesApprovedView",
    "MinutesView",
    "NominalView",
    "ParticipantView",
    "RecordView",
    "ViewRefused",
    "shape",
]

_OUT = ConfigDict(extra="forbid", frozen=True)
Items = list[dict[str, Any]]


class ViewRefused(ValueError):
    """A document carries a field its view does not define: nothing is sent."""


class NominalView(BaseModel):
    model_config = _OUT

    id: str | None = None
    area: str | None = None
    category: int | None = None
    level: int | None = None
    lead_agency_id: str | None = None
    status: str | None = None
    names: dict[str, Any] | None = None
    aliases: list[str] | None = None
    date_of_birth: str | None = None
    address: str | None = None
    pnc_id: str | None = None
    crn: str | None = None
    visor_ref: str | None = None
    status_informed: bool | None = None
    status_withheld_reason: str | None = None
    risk: Items | None = None
    level_changed_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class Level1EntryView(BaseModel):
    """The monthly level 1 list: minimal fields."""

    model_config = _OUT

    id: str | None = None
    names: dict[str, Any] | None = None
    date_of_birth: str | None = None
    category: int | None = None
    level: int | None = None
    lead_agency_id: str | None = None
    area: str | None = None


class RecordView(BaseModel):
    model_config = _OUT

    id: str | None = None
    nominal_id: str | None = None
    kind: str | None = None
    owner_agency_id: str | None = None
    officer: str | None = None
    marking: str | None = None
    caveats: list[str] | None = None
    created_at: str | None = None
    summary: str | None = None
    content: Items | None = None
    sources: Items | None = None
    risk: Items | None = None
    offence: str | None = None
    sentence: str | None = None
    address: str | None = None
    tenancy: str | None = None
    grading: str | None = None


class MinutesView(BaseModel):
    model_config = _OUT

    meeting_id: str | None = None
    nominal_id: str | None = None
    meeting_type: str | None = None
    held_on: str | None = None
    chair: dict[str, Any] | None = None
    attendees: list[str] | None = None
    apologies: list[str] | None = None
    minutes_only_recipients: list[str] | None = None
    confidentiality_statement_signed: bool | None = None
    marking: str | None = None
    caveats: list[str] | None = None
    discussion: Items | None = None
    sources: Items | None = None
    conclusions: Items | None = None
    actions: Items | None = None
    risk_management_plan: str | None = None
    review_date: str | None = None


class MinutesApprovedView(BaseModel):
    """An onward disclosure: the approved conclusions and action points, and the reference."""

    model_config = _OUT

    meeting_id: str | None = None
    held_on: str | None = None
    marking: str | None = None
    conclusions: Items | None = None
    actions: Items | None = None


class ParticipantView(BaseModel):
    """An agency's part in a meeting."""

    model_config = _OUT

    agency_id: str
    participation: str


class MeetingView(BaseModel):
    """One meeting: what it is, when, who chairs it and who takes part; never its minutes."""

    model_config = _OUT

    id: str
    nominal_id: str
    meeting_type: str
    #: The nominal's level when the meeting was convened.
    level: int | None = None
    held_on: str
    review_date: str | None = None
    #: ``convened``, ``minuted`` (minutes written) or ``need_closed``.
    status: str
    chair_agency_id: str
    participants: list[ParticipantView]


class ActionView(BaseModel):
    """One action point, as the minutes' redaction leaves it for the reader."""

    model_config = _OUT

    id: str
    meeting_id: str
    nominal_id: str
    owner_agency_id: str
    description: str
    #: The minutes' source the action rests on (one the reader may see).
    source: str | None = None
    due_date: str
    review_date: str | None = None
    status: str


class DisclosureRequestView(BaseModel):
    """An onward-disclosure request and its decision; never the minutes it concerns."""

    model_config = _OUT

    id: str
    meeting_id: str
    nominal_id: str
    requesting_agency_id: str
    recipient_agency_id: str
    purpose: str
    requested_parts: list[str]
    requested_at: str
    #: ``pending``, ``approved`` or ``refused``.
    status: str
    #: What the chair or co-ordinator approved (``conclusions``, ``actions/<id>``).
    approved_parts: list[str] | None = None
    #: The deciding officer, as the deciding agency identified it.
    decided_by: str | None = None
    decided_at: str | None = None


class HazardFlagView(BaseModel):
    """The ICS ``HZD`` marker: exactly these fields."""

    model_config = _OUT

    child_or_family_ref: str
    flag: str
    relationship: str
    statement: str
    #: None only for one stored before contacts had a shape (withheld, never sent as text).
    contact: Contact | None = None
    review_date: str | None = None


class AckOut(BaseModel):
    """The answer to a write: what was created or changed, and its state."""

    model_config = _OUT

    id: str
    status: str
    nominal_id: str | None = None
    kind: str | None = None
    level: int | None = None
    category: int | None = None


def shape(model: type[BaseModel], document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` as ``model`` serialises it (only the fields it carries), or ViewRefused."""
    try:
        return model.model_validate(dict(document)).model_dump(mode="json", exclude_unset=True)
    except ValidationError as exc:
        where = sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]})[:20]
        raise ViewRefused(f"{model.__name__} refuses fields {where}") from exc
