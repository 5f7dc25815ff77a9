"""The Responsible Authority's s.325(4A)(c) decisions: another person could contribute.

Inbound, the RA's decision and its revocation. Outbound, one schema per recipient: a decision
as the RA lists it (with the reasons it recorded), as the contributor it names lists it, and the
``contributor_decision`` message the contributor is sent when a decision is recorded or revoked
(neither of the last two has anywhere to put a reason)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.contract.types import STRICT, AgencyId, PlannedDate, PurposeCode, Reason

__all__ = [
    "CONTRIBUTOR_STATUSES",
    "ContributorDecisionEntry",
    "ContributorDecisionWithReasons",
    "ContributorIn",
    "ContributorNoticeView",
    "ContributorRevocationIn",
]

#: A decision stands until the end of its end date (then it has expired) or its revocation.
ContributorStatus = Literal["standing", "expired", "revoked"]
CONTRIBUTOR_STATUSES: tuple[str, ...] = get_args(ContributorStatus)
_OUT = ConfigDict(extra="forbid", frozen=True)


class ContributorIn(BaseModel):
    """The RA records that ``agency_id`` could contribute on one nominal, for ``purposes``,
    until the end of ``ends_on`` (reviewed by ``review_date``)."""

    model_config = STRICT

    agency_id: AgencyId
    #: Purpose codes of the legal-basis register that s.325(4A)(c) allows.
    purposes: list[PurposeCode] = Field(min_length=1, max_length=8)
    #: Why the RA considers the agency could contribute (sealed at rest; never in the audit).
    reason: Reason
    ends_on: PlannedDate
    review_date: PlannedDate | None = None

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


class ContributorDecisionEntry(BaseModel):
    """One decision as the contributor it names lists it: exactly these fields, no reasons."""

    model_config = _OUT

    id: str
    nominal_id: str
    agency_id: str
    purposes: list[str]
    ends_on: str
    review_date: str | None = None
    decided_at: str
    decided_by_agency_id: str
    status: ContributorStatus
    revoked_at: str | None = None


class ContributorDecisionWithReasons(ContributorDecisionEntry):
    """One decision as the Responsible Authority of the area lists it: with the reasons it
    recorded for the decision and for its revocation."""

    reason: str
    revocation_reason: str | None = None


class ContributorNoticeView(BaseModel):
    """The ``contributor_decision`` message to the agency a decision names, when the decision
    is recorded (``standing``) or revoked: exactly these fields."""

    model_config = _OUT

    decision_id: str
    nominal_id: str
    purposes: list[str]
    ends_on: str
    review_date: str | None = None
    status: ContributorStatus
