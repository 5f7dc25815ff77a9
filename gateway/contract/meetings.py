"""Meetings, their participants, minutes (MAPPA B) and action points."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from gateway.contract.sources import CaveatCode, ItemIn, SourceIn, check_citations
from gateway.contract.types import (
    STRICT,
    AgencyId,
    ItemRef,
    LongText,
    MeetingDate,
    OfficerRef,
    PlannedDate,
    Reason,
    ResourceId,
    StrictBool,
    Summary,
)
from gateway.domain import ActionStatus, MeetingType, Participation

__all__ = [
    "ActionIn",
    "ActionStatusIn",
    "MeetingClosureIn",
    "MeetingIn",
    "MinutesIn",
    "ParticipantIn",
    "ParticipantsIn",
]


class ParticipantIn(BaseModel):
    model_config = STRICT

    agency_id: AgencyId
    participation: Participation


def _unique(participants: tuple[ParticipantIn, ...]) -> None:
    ids = [p.agency_id for p in participants]
    if len(ids) != len(set(ids)):
        raise ValueError("each agency appears once")


class MeetingIn(BaseModel):
    model_config = STRICT

    nominal_id: ResourceId
    meeting_type: MeetingType
    held_on: MeetingDate
    review_date: PlannedDate | None = None
    chair_officer: OfficerRef
    participants: tuple[ParticipantIn, ...] = Field(default=(), max_length=50)
    confidentiality_statement_signed: StrictBool

    @model_validator(mode="after")
    def _consistent(self) -> MeetingIn:
        _unique(self.participants)
        if any(p.participation is Participation.REMOVED for p in self.participants):
            raise ValueError("a meeting is convened without agencies taken off it")
        if self.review_date is not None and self.review_date < self.held_on:
            raise ValueError("the review date is on or after the meeting")
        return self


class ParticipantsIn(BaseModel):
    """Set the participation of agencies (invited, attended, minutes only), or take an agency
    off the meeting (``removed``)."""

    model_config = STRICT

    participants: tuple[ParticipantIn, ...] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _consistent(self) -> ParticipantsIn:
        _unique(self.participants)
        return self


class MeetingClosureIn(BaseModel):
    """Close the meeting's need: why no further sharing through it is needed (sealed at rest)."""

    model_config = STRICT

    reason: Reason


class MinutesIn(BaseModel):
    model_config = STRICT

    discussion: tuple[ItemIn, ...] = Field(default=(), max_length=200)
    sources: tuple[SourceIn, ...] = Field(default=(), max_length=50)
    conclusions: tuple[ItemIn, ...] = Field(min_length=1, max_length=100)
    risk_management_plan: LongText | None = None
    caveats: tuple[CaveatCode, ...] = Field(default=(), max_length=4)
    #: Agencies that sent apologies.
    apologies: tuple[AgencyId, ...] = Field(default=(), max_length=50)

    @model_validator(mode="after")
    def _consistent(self) -> MinutesIn:
        check_citations(self.sources, self.discussion, self.conclusions)
        return self


class ActionIn(BaseModel):
    model_config = STRICT

    owner_agency_id: AgencyId
    description: Summary
    due_date: PlannedDate
    review_date: PlannedDate | None = None
    #: A source of the meeting's minutes that this action rests on.
    source: ItemRef | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ActionIn:
        if self.review_date is not None and self.review_date < self.due_date:
            raise ValueError("the review date is on or after the due date")
        return self


class ActionStatusIn(BaseModel):
    """A new status for an action point, and an optional note (sealed at rest)."""

    model_config = STRICT

    status: ActionStatus
    note: Reason | None = None
