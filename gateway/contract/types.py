"""Field types shared by the contract's models."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from gateway.domain import Category, Level
from policies.flag_values import CHILD_OR_FAMILY_REF

__all__ = [
    "AGENCY_ID",
    "EARLIEST_BIRTH_DATE",
    "EARLIEST_CASE_DATE",
    "MEETING_YEARS_AHEAD",
    "PLANNED_YEARS_AHEAD",
    "RESOURCE_ID",
    "STRICT",
    "AgencyId",
    "BirthDate",
    "CategoryCode",
    "ChildOrFamilyRef",
    "DateWindow",
    "Description",
    "Identifier",
    "IsoDate",
    "ItemRef",
    "LevelCode",
    "LongText",
    "MeetingDate",
    "OfficerRef",
    "OptionalAddress",
    "PlannedDate",
    "PurposeCode",
    "Reason",
    "ResourceId",
    "ShortText",
    "StrictBool",
    "Summary",
    "control_character_in",
    "is_resource_id",
]

#: Every inbound model: unknown fields are an error; values are not silently re-typed.
STRICT = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date(value: object) -> dt.date:
    """Only an ISO 8601 calendar date as text: never a number, a datetime or a loose format."""
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("a date is text of the form YYYY-MM-DD")
    return dt.date.fromisoformat(value)


CategoryCode = Annotated[
    Category,
    BeforeValidator(Category.parse),
    PlainSerializer(int, return_type=int),
    Field(description="MAPPA category 1-4; the nDelius codes M1-M4 are accepted"),
]
LevelCode = Annotated[
    Level,
    BeforeValidator(Level.parse),
    PlainSerializer(int, return_type=int),
    Field(description="MAPPA level 1-3; the nDelius codes M1-M3 are accepted"),
]
# -- the dates a partner may send (docs/api.md, "Conventions"): one window per meaning ---------
#: No one alive and managed was born before 1900; no one is born after today.
EARLIEST_BIRTH_DATE = dt.date(1900, 1, 1)
#: MAPPA began in 2001: no meeting, review, due or end date of a case comes before it.
EARLIEST_CASE_DATE = dt.date(2001, 1, 1)
#: A meeting is recorded once held or convened: at most a year ahead.
MEETING_YEARS_AHEAD = 1
#: Review, due and end dates plan ahead: at most five years.
PLANNED_YEARS_AHEAD = 5


def _years_after(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February, in a year that has none
        return day.replace(year=day.year + years, day=28)


@dataclass(frozen=True, slots=True)
class DateWindow:
    """Dates from ``earliest`` to ``years_ahead`` years after today (UTC), both included; any
    other is refused (422 ``validation_failed``, error type ``date_out_of_range``)."""

    earliest: dt.date
    years_ahead: int

    def latest(self, today: dt.date | None = None) -> dt.date:
        return _years_after(today or dt.datetime.now(dt.UTC).date(), self.years_ahead)

    def __call__(self, value: dt.date) -> dt.date:
        if not self.earliest <= value <= self.latest():
            raise PydanticCustomError(
                "date_out_of_range", "the date is outside the window this field accepts"
            )
        return value


BIRTH_DATES = DateWindow(EARLIEST_BIRTH_DATE, 0)
MEETING_DATES = DateWindow(EARLIEST_CASE_DATE, MEETING_YEARS_AHEAD)
PLANNED_DATES = DateWindow(EARLIEST_CASE_DATE, PLANNED_YEARS_AHEAD)

#: Any date: text YYYY-MM-DD, within the widest window (a field without a narrower one is still
#: bounded, so no date a partner sends is near the calendar's ends).
IsoDate = Annotated[
    dt.date,
    BeforeValidator(_iso_date),
    AfterValidator(DateWindow(EARLIEST_BIRTH_DATE, PLANNED_YEARS_AHEAD)),
    PlainSerializer(lambda d: d.isoformat(), return_type=str),
    Field(description="An ISO 8601 calendar date, YYYY-MM-DD"),
]
BirthDate = Annotated[
    IsoDate,
    AfterValidator(BIRTH_DATES),
    Field(description="A date of birth, YYYY-MM-DD: from 1900-01-01 to today"),
]
MeetingDate = Annotated[
    IsoDate,
    AfterValidator(MEETING_DATES),
    Field(description="The day a meeting is held, YYYY-MM-DD: from 2001-01-01 to a year ahead"),
]
PlannedDate = Annotated[
    IsoDate,
    AfterValidator(PLANNED_DATES),
    Field(description="A review, due or end date, YYYY-MM-DD: from 2001-01-01 to 5 years ahead"),
]
#: An agency id, as onboarding registers it (also the OAuth client id).
AGENCY_ID = r"^[a-z0-9][a-z0-9._-]{1,63}$"
AgencyId = Annotated[str, StringConstraints(pattern=AGENCY_ID)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9/._-]{1,40}$")]
#: A gateway id (a UUID), as the gateway issued it.
RESOURCE_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
ResourceId = Annotated[str, StringConstraints(pattern=RESOURCE_ID)]
_RESOURCE_ID = re.compile(RESOURCE_ID)


def is_resource_id(value: str) -> bool:
    """Whether ``value`` is a gateway id as issued. Only such an id is ever looked up or
    recorded: a path or query may carry anything, a trailing newline or a NUL (which
    PostgreSQL cannot store) included."""
    return _RESOURCE_ID.fullmatch(value) is not None


#: A child's or family's reference in the children's services system: letter codes and a number
#: (``ICS-FAM-55821``), never a description (policies.flag_values).
ChildOrFamilyRef = Annotated[
    str,
    StringConstraints(pattern=CHILD_OR_FAMILY_REF),
    Field(description="Up to two upper-case codes of 1-4 letters and a number: ICS-FAM-55821"),
]
#: An id the sender gives an item or a source inside one document (cited by other items).
ItemRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")]
PurposeCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,63}$")]

# -- free text: what a partner types ------------------------------------------------------------
#: C0 control characters (U+0000 to U+001F). None has a place in a case record, and NUL cannot
#: be stored at all: PostgreSQL's text refuses it, so a NUL that got past the contract would be
#: a 500 on the production backend (and accepted on SQLite).
_CONTROL = re.compile(r"[\x00-\x1f]")
#: The same, less the three that lay out text of several lines: tab, line feed, carriage return
#: (a partner's system on Windows ends its lines with CR LF).
_CONTROL_IN_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
#: C0, DEL and the C1 controls (U+0080 to U+009F): what a terminal obeys when it prints text
#: (U+009B is a CSI, like ESC [), for what an operator's command prints.
_CONTROL_OR_C1 = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def control_character_in(text: str, *, lines: bool = False, c1: bool = False) -> bool:
    """Whether ``text`` holds a C0 control character (other than tab, LF and CR if ``lines``),
    or with ``c1`` any C0, DEL or C1 control (one line of text)."""
    if c1:
        return _CONTROL_OR_C1.search(text) is not None
    return (_CONTROL_IN_LINES if lines else _CONTROL).search(text) is not None


def _one_line(value: str) -> str:
    if control_character_in(value):
        raise PydanticCustomError(
            "control_character", "one line of text, without control characters"
        )
    return value


def _multi_line(value: str) -> str:
    if control_character_in(value, lines=True):
        raise PydanticCustomError(
            "control_character", "text without control characters other than tab and line breaks"
        )
    return value


# Every type of free text below refuses a C0 control character (422 ``validation_failed``, error
# type ``control_character``); text of several lines may hold tab, LF and CR. Lone surrogates,
# which no store can encode, are refused by pydantic itself (``string_unicode``).

#: Names, a contact: one line.
ShortText = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_one_line)
]
#: An officer's identifier (a meeting's chair): one line, no longer than the ``MAPPA-Officer``
#: header's 64 characters, which is the width of the store's officer columns (PostgreSQL refuses
#: a longer value where SQLite would keep it).
OfficerRef = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_one_line)
]
#: A description (a source, a recipient) or an address: a few lines.
Description = Annotated[
    str, StringConstraints(min_length=1, max_length=500), AfterValidator(_multi_line)
]
#: An address that may be left empty.
OptionalAddress = Annotated[str, StringConstraints(max_length=500), AfterValidator(_multi_line)]
#: A record's summary and its other short texts, an action's description: paragraphs.
Summary = Annotated[
    str, StringConstraints(min_length=1, max_length=2000), AfterValidator(_multi_line)
]
#: Why a decision was made: paragraphs.
Reason = Summary
#: Referral reasons, minutes items, a risk management plan.
LongText = Annotated[
    str, StringConstraints(min_length=1, max_length=10_000), AfterValidator(_multi_line)
]
