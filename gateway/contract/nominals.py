"""Changes to a nominal that only the Responsible Authority makes."""

from __future__ import annotations

import enum

from pydantic import BaseModel

from gateway.contract.types import STRICT, CategoryCode, LevelCode, Reason, ResourceId
from gateway.domain import Level

__all__ = [
    "CategoryChangeIn",
    "DeregistrationIn",
    "LevelChangeIn",
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
