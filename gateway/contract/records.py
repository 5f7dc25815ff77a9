"""Information records: what an agency shares about a nominal (it keeps ownership)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from gateway.contract.referrals import RiskEntry
from gateway.contract.sources import CaveatCode, ItemIn, SourceIn, check_citations
from gateway.contract.types import STRICT, Description, Summary
from gateway.domain import RecordKind

__all__ = ["RecordIn", "WrittenReportIn"]


class RecordIn(BaseModel):
    model_config = STRICT

    kind: RecordKind
    summary: Summary
    content: tuple[ItemIn, ...] = Field(default=(), max_length=200)
    sources: tuple[SourceIn, ...] = Field(default=(), max_length=50)
    caveats: tuple[CaveatCode, ...] = Field(default=(), max_length=4)
    risk: tuple[RiskEntry, ...] = Field(default=(), max_length=6)
    offence: Summary | None = None
    sentence: Summary | None = None
    address: Description | None = None
    tenancy: Summary | None = None
    #: An intelligence grading (e.g. 3x5x2 or 5x5x5 codes).
    grading: str | None = Field(default=None, pattern=r"^[A-Za-z0-9 /x-]{1,20}$")

    @model_validator(mode="after")
    def _consistent(self) -> RecordIn:
        check_citations(self.sources, self.content)
        if any(s.originator_agency_id for s in self.sources):
            raise ValueError("a record's sources are its owner's: originator_agency_id is not set")
        groups = [r.group for r in self.risk]
        if len(groups) != len(set(groups)):
            raise ValueError("each group at risk appears once")
        return self

    @property
    def has_third_party_source(self) -> bool:
        return any(s.third_party for s in self.sources)


class WrittenReportIn(RecordIn):
    """A written report for a meeting the agency was invited to and cannot attend: a record of
    kind ``written_report`` (the kind may be left out), with its sources and caveats."""

    kind: Literal[RecordKind.WRITTEN_REPORT] = RecordKind.WRITTEN_REPORT
