"""The housing property warning marker: a property reference, a marker code, a contact, a date;
its revocation (a reason code, never free text); the RA's view of the markers it raised."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.contract.contact import Contact
from gateway.contract.types import STRICT, AgencyId, PlannedDate, ResourceId

__all__ = [
    "REVOCATION_REASONS",
    "WarningMarkerEntry",
    "WarningMarkerIn",
    "WarningMarkerRevocationIn",
    "WarningMarkerView",
]

#: Why a marker is revoked: codes only, so no personal data can ride on a revocation.
RevocationReason = Literal["review_completed", "left_property", "deregistered", "raised_in_error"]
REVOCATION_REASONS: tuple[str, ...] = get_args(RevocationReason)


class WarningMarkerIn(BaseModel):
    """What the RA may send: nothing else. No name, offence, intelligence or third party; the
    property is named by its UPRN, never by a free-text address."""

    model_config = STRICT

    nominal_id: ResourceId
    recipient_agency_id: AgencyId
    #: The property's Unique Property Reference Number (the address reference).
    uprn: str = Field(pattern=r"^[0-9]{1,12}$")
    marker: str = Field(default="PWM", pattern=r"^[A-Z]{2,8}$")
    #: A role with a number or an address, never free text.
    contact: Contact
    #: When the housing provider reviews (and removes) the marker: a marker never lingers.
    review_date: PlannedDate

    @field_validator("marker")
    @classmethod
    def _known_marker(cls, value: str) -> str:
        from policies import default_policy_set

        if value not in default_policy_set().recipients.warning_marker.markers:
            raise ValueError("marker is not in the warning marker vocabulary")
        return value


class WarningMarkerView(BaseModel):
    """The marker as the housing provider receives it: exactly these fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uprn: str
    marker: str
    #: None only for one stored before contacts had a shape (withheld, never sent as text).
    contact: Contact | None = None
    review_date: str | None = None


class WarningMarkerRevocationIn(BaseModel):
    """The RA withdraws a marker: why, as a code. The housing provider removes the PWM."""

    model_config = STRICT

    reason: RevocationReason


class WarningMarkerEntry(BaseModel):
    """One marker as the Responsible Authority lists it (exactly these fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    nominal_id: str
    recipient_agency_id: str
    raised_by_agency_id: str
    uprn: str
    marker: str
    #: None only for one stored before contacts had a shape (withheld, never shown as text).
    contact: Contact | None = None
    review_date: str | None = None
    status: str
    raised_at: str
    revoked_at: str | None = None
    revoked_by_agency_id: str | None = None
    revoked_reason: str | None = None
