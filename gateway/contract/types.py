"""Field types shared by the contract's models."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, ConfigDict, Field, PlainSerializer, StringConstraints

from gateway.domain import Category, Level

__all__ = [
    "STRICT",
    "AgencyId",
    "CategoryCode",
    "Identifier",
    "LevelCode",
    "ShortText",
]

#: Every inbound model: unknown fields are an error; values are not silently re-typed.
STRICT = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

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
AgencyId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9/._-]{1,40}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
