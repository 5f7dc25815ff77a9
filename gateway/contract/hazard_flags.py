"""The children's services hazard flag (ICS ``HZD``): a reference, a relationship, a contact.

The reference is a reference (letter codes and a number, never a description) and the contact a
role with a number or an address (:class:`~gateway.contract.contact.Contact`), never free text:
nothing about offences, intelligence or third parties can ride on either."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from gateway.contract.contact import Contact
from gateway.contract.types import STRICT, AgencyId, ChildOrFamilyRef, PlannedDate, ResourceId

__all__ = ["HazardFlagIn"]


class HazardFlagIn(BaseModel):
    """Nothing else can be sent: no offence, no intelligence, no third party."""

    model_config = STRICT

    nominal_id: ResourceId
    recipient_agency_id: AgencyId
    child_or_family_ref: ChildOrFamilyRef
    relationship: str = Field(min_length=1, max_length=40)
    contact: Contact
    review_date: PlannedDate | None = None

    @field_validator("relationship")
    @classmethod
    def _known_relationship(cls, value: str) -> str:
        from policies import default_policy_set

        if value not in default_policy_set().recipients.hazard_flag.relationships:
            raise ValueError("relationship is not in the hazard flag vocabulary")
        return value
