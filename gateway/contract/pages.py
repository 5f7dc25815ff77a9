"""The sealed answers of the case API's lists: what a page carries, for the OpenAPI document.

A list answers one JSON object sealed to the caller: the items under the list's own name (each
already shaped by its view model), and ``next_cursor`` while more follow (pass it back as
``?cursor=``; treat it as opaque). The items a caller may not know of are left out, never
counted; a page may be short with a cursor after it (see ``gateway.cases.paging``). These
models forbid anything else, and the tests open each list's real answer against them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from gateway.contract.contributors import ContributorDecisionEntry, ContributorDecisionWithReasons
from gateway.contract.markers import WarningMarkerEntry
from gateway.contract.views import Level1EntryView, RecordView

__all__ = [
    "ContributorDecisionsPage",
    "Level1Page",
    "RecordsPage",
    "ReportsList",
    "WarningMarkersPage",
]

_PAGE = ConfigDict(extra="forbid", frozen=True)
_NEXT = Field(
    default=None,
    description="Present while more items follow: pass it back as ?cursor= (opaque).",
)


class RecordsPage(BaseModel):
    """``GET /v1/nominals/{id}/records``: the records the caller may see, oldest first."""

    model_config = _PAGE

    records: list[RecordView]
    next_cursor: str | None = _NEXT


class ReportsList(BaseModel):
    """``GET /v1/meetings/{id}/reports``: the meeting's written reports the caller may see
    (all of them: a meeting has few)."""

    model_config = _PAGE

    reports: list[RecordView]


class WarningMarkersPage(BaseModel):
    """``GET /v1/nominals/{id}/warning-markers``: the markers raised on the nominal."""

    model_config = _PAGE

    warning_markers: list[WarningMarkerEntry]
    next_cursor: str | None = _NEXT


class ContributorDecisionsPage(BaseModel):
    """``GET /v1/nominals/{id}/contributors``: the s.325(4A)(c) decisions, with their reasons
    for the Responsible Authority, without them (and only its own) for a contributor."""

    model_config = _PAGE

    contributor_decisions: list[ContributorDecisionWithReasons | ContributorDecisionEntry]
    next_cursor: str | None = _NEXT


class Level1Page(BaseModel):
    """``GET /v1/level-1-list``: this month's level 1 nominals of the caller's area, minimal
    fields."""

    model_config = _PAGE

    entries: list[Level1EntryView]
    area: str
    next_cursor: str | None = _NEXT
