"""The children's services hazard flag (ICS ``HZD``): a reference, a relationship, a contact."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from gateway.contract.types import STRICT, AgencyId, PlannedDate, ResourceId

__all__ = ["HazardFlagIn"]


class HazardFlagIn(BaseModel):
    """Nothing else can be sent: no offence, no intelligence, no third party."""

    model_config = STRICT

    nominal_id: ResourceId
    recipient_agency_id: AgencyId
    child_or_family_ref: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9/_.-]{0,63}$")
    relationship: str = Field(min_length=1, max_length=40)
    contact: str = Field(min_length=1, max_length=120)
    review_date: PlannedDate | None = None

    @field_validator("relationship")
    @classmethod
    def _known_relationship(cls, value: str) -> str:
        from policies import default_policy_set

        if value not in default_policy_set().recipients.hazard_flag.relationships:
            raise ValueError("relationship is not in the hazard flag vocabulary")
        return value

    @field_validator("contact")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("contact is one printable line")
        return value
