"""Onward disclosure: asking to share minutes beyond the meeting, and the chair's decision."""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from gateway.contract.types import (
    STRICT,
    AgencyId,
    Description,
    PurposeCode,
    Reason,
    ResourceId,
)

__all__ = ["DecisionIn", "DisclosureDecision", "DisclosureIn", "Part", "within"]

#: ``conclusions``, ``actions``, or one action: ``actions/<action id>``.
Part = Annotated[
    str,
    StringConstraints(pattern=r"^(conclusions|actions)(/[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$"),
]


def within(part: str, requested: tuple[str, ...]) -> bool:
    """Whether ``part`` is no more than was requested (an item of a requested whole part)."""
    return part in requested or part.partition("/")[0] in requested


class DisclosureIn(BaseModel):
    model_config = STRICT

    meeting_id: ResourceId
    recipient_agency_id: AgencyId
    #: The recipient's purpose, from the legal-basis register (e.g. ``child-protection``).
    purpose: PurposeCode
    parts: tuple[Part, ...] = Field(min_length=1, max_length=20)
    recipient_description: Description
    reasons: Reason

    @field_validator("purpose")
    @classmethod
    def _registered_purpose(cls, value: str) -> str:
        from policies import default_policy_set

        if value not in default_policy_set().legal_bases.purposes:
            raise ValueError("purpose is not in the legal-basis register")
        return value


class DisclosureDecision(enum.StrEnum):
    APPROVE = "approve"
    REFUSE = "refuse"


class DecisionIn(BaseModel):
    model_config = STRICT

    decision: DisclosureDecision
    approved_parts: tuple[Part, ...] = Field(default=(), max_length=20)
    reason: Reason

    @model_validator(mode="after")
    def _consistent(self) -> DecisionIn:
        if (self.decision is DisclosureDecision.APPROVE) != bool(self.approved_parts):
            raise ValueError("an approval names the approved parts; a refusal names none")
        return self
