"""Changes to a nominal that only the Responsible Authority makes, its erasure included."""

from __future__ import annotations

import enum

from pydantic import BaseModel, model_validator

from gateway.contract.types import (
    STRICT,
    CategoryCode,
    Identifier,
    LevelCode,
    Reason,
    ResourceId,
)
from gateway.domain import ErasureReason, Level

__all__ = [
    "CategoryChangeIn",
    "DeregistrationIn",
    "ErasureIn",
    "LevelChangeIn",
    "NominalLookupIn",
    "ScreeningIn",
    "ScreeningOutcome",
]


class CategoryChangeIn(BaseModel):
    model_config = STRICT

    category: CategoryCode
    reason: Reason


class LevelChangeIn(BaseModel):
    model_config = STRICT

    level: LevelCode
    reason: Reason


class ScreeningOutcome(enum.StrEnum):
    """What the monthly screening meeting decided."""

    LEVEL_2 = "level_2"
    LEVEL_3 = "level_3"
    #: Screened out of multi-agency management: the lead agency manages it at level 1.
    SCREENED_OUT = "screened_out"

    @property
    def level(self) -> Level:
        return {"level_2": Level.MULTI_AGENCY, "level_3": Level.SENIOR_MULTI_AGENCY}.get(
            self.value, Level.LEAD_AGENCY
        )


class ScreeningIn(BaseModel):
    model_config = STRICT

    outcome: ScreeningOutcome
    #: The screening meeting that decided (a meeting about this nominal).
    meeting_id: ResourceId | None = None
    reasons: Reason


class DeregistrationIn(BaseModel):
    model_config = STRICT

    reason: Reason


class ErasureIn(BaseModel):
    """The Responsible Authority's decision to erase a nominal's case data: a reason from the
    closed vocabulary (kept in clear, and in the audit log) and a note (sealed at rest, as other
    reasons are; never in the audit log or any notice). The note outlives the erasure, in the
    erasure's history row and in the RA's signed body kept as its evidence of origin, so it
    must not identify the person: the reference of the RA's own decision record, not a name."""

    model_config = STRICT

    reason: ErasureReason
    note: Reason


class NominalLookupIn(BaseModel):
    """Find a nominal by exactly one of its identifiers: a PNC id, an nDelius CRN or a ViSOR
    reference. Sent sealed in a POST body, so that the identifier is never in a URL."""

    model_config = STRICT

    pnc: Identifier | None = None
    crn: Identifier | None = None
    visor: Identifier | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> NominalLookupIn:
        if len(self.identifiers()) != 1:
            raise ValueError("name exactly one of pnc, crn or visor")
        return self

    def identifiers(self) -> dict[str, str]:
        """The identifiers given, by kind (``pnc``, ``crn``, ``visor``)."""
        given = {"pnc": self.pnc, "crn": self.crn, "visor": self.visor}
        return {kind: value for kind, value in given.items() if value is not None}

    @property
    def kind(self) -> str:
        [kind] = self.identifiers()
        return kind

    @property
    def value(self) -> str:
        [value] = self.identifiers().values()
        return value
