"""Field types shared by the contract's models."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StringConstraints,
)

from gateway.domain import Category, Level

__all__ = [
    "RESOURCE_ID",
    "STRICT",
    "AgencyId",
    "CategoryCode",
    "Identifier",
    "IsoDate",
    "ItemRef",
    "LevelCode",
    "LongText",
    "PurposeCode",
    "Reason",
    "ResourceId",
    "ShortText",
    "StrictBool",
]

#: Every inbound model: unknown fields are an error; values are not silently re-typed.
STRICT = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date(value: object) -> dt.date:
    """Only an ISO 8601 calendar date as text: never a number, a datetime or a loose format."""
    if not isinstance(value, str) or not _ISO_DATE.match(value):
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
IsoDate = Annotated[
    dt.date,
    BeforeValidator(_iso_date),
    PlainSerializer(lambda d: d.isoformat(), return_type=str),
    Field(description="An ISO 8601 calendar date, YYYY-MM-DD"),
]
AgencyId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9/._-]{1,40}$")]
#: A gateway id (a UUID), as the gateway issued it.
RESOURCE_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
ResourceId = Annotated[str, StringConstraints(pattern=RESOURCE_ID)]
#: An id the sender gives an item or a source inside one document (cited by other items).
ItemRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")]
PurposeCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,63}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
