"""MAPPA A: the referral form, as an agency sends it.

A MAPPA referral names the category; the referral of a non-offender is not MAPPA (it goes to a
high-risk information-sharing meeting) and has none. A referral from an agency that is not a
Responsible Authority names the lead agency (police or probation) that will manage the case.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from gateway.contract.types import (
    STRICT,
    AgencyId,
    BirthDate,
    CategoryCode,
    Identifier,
    LongText,
    OptionalAddress,
    ShortText,
)
from gateway.domain import ReferralKind, RiskGroup, RiskLevel

__all__ = ["ReferralIn", "RiskEntry", "SubjectDetails"]


class SubjectDetails(BaseModel):
    model_config = STRICT

    family_name: ShortText
    given_names: ShortText
    aliases: tuple[ShortText, ...] = Field(default=(), max_length=20)
    date_of_birth: BirthDate
    address: OptionalAddress | None = None
    pnc_id: Identifier | None = None
    crn: Identifier | None = None
    visor_ref: Identifier | None = None


class RiskEntry(BaseModel):
    """One row of the risk-of-serious-harm matrix: a group at risk and the level."""

    model_config = STRICT

    group: RiskGroup
    level: RiskLevel


class ReferralIn(BaseModel):
    model_config = STRICT

    kind: ReferralKind = ReferralKind.MAPPA
    subject: SubjectDetails
    category: CategoryCode | None = None
    reasons: LongText
    risks: tuple[RiskEntry, ...] = Field(min_length=1, max_length=6)
    agencies_involved: tuple[AgencyId, ...] = Field(default=(), max_length=50)
    referrer_name: ShortText
    referrer_contact: ShortText
    #: The Responsible Authority agency that will lead (default: the referrer, if it is one).
    lead_agency_id: AgencyId | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ReferralIn:
        groups = [risk.group for risk in self.risks]
        if len(groups) != len(set(groups)):
            raise ValueError("each group at risk appears once")
        if self.kind is ReferralKind.MAPPA and self.category is None:
            raise ValueError("a MAPPA referral names the category")
        if self.kind is ReferralKind.HIGH_RISK_INFORMATION_SHARING and self.category is not None:
            raise ValueError("a non-offender has no MAPPA category")
        return self
