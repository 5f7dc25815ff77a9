"""The Responsible Authority's s.325(4A)(c) decisions: another person could contribute."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from gateway.contract.types import STRICT, AgencyId, IsoDate, PurposeCode, Reason

__all__ = ["ContributorIn", "ContributorRevocationIn"]


class ContributorIn(BaseModel):
    """The RA records that ``agency_id`` could contribute on one nominal, for ``purposes``,
    until the end of ``ends_on`` (reviewed by ``review_date``)."""

    model_config = STRICT

    agency_id: AgencyId
    #: Purpose codes of the legal-basis register that s.325(4A)(c) allows.
    purposes: list[PurposeCode] = Field(min_length=1, max_length=8)
    #: Why the RA considers the agency could contribute (sealed at rest; never in the audit).
    reason: Reason
    ends_on: IsoDate
    review_date: IsoDate | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ContributorIn:
        if len(set(self.purposes)) != len(self.purposes):
            raise ValueError("a purpose is listed twice")
        if self.review_date is not None and self.review_date > self.ends_on:
            raise ValueError("the review date is on or before the end date")
        return self


class ContributorRevocationIn(BaseModel):
    """The RA withdraws its decision before its end date."""

    model_config = STRICT

    reason: Reason
