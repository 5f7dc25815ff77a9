"""Sources and cited items: how a record or minutes say where each piece of information came from.

A document lists its ``sources``; each says whether it is a third party (an informant, a victim,
a neighbour: never revealed beyond the agency that supplied it unless that agency released it).
Items of content (``content``, ``discussion``, ``conclusions``) cite the sources they rest on, so
that redaction can withhold exactly the items that would reveal a withheld source.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from pydantic import BaseModel, Field, model_validator

from gateway.contract.types import STRICT, AgencyId, Description, ItemRef, LongText, StrictBool

__all__ = ["CaveatCode", "ItemIn", "SourceIn", "SourceKind", "check_citations"]


class SourceKind(enum.StrEnum):
    INFORMANT = "informant"
    VICTIM = "victim"
    NEIGHBOUR = "neighbour"
    FAMILY_MEMBER = "family_member"
    MEMBER_OF_PUBLIC = "member_of_public"
    AGENCY = "agency"
    PUBLIC_RECORD = "public_record"
    OTHER = "other"


#: Kinds that are always third parties, whatever the sender says.
THIRD_PARTY_KINDS = frozenset(
    {
        SourceKind.INFORMANT,
        SourceKind.VICTIM,
        SourceKind.NEIGHBOUR,
        SourceKind.FAMILY_MEMBER,
        SourceKind.MEMBER_OF_PUBLIC,
    }
)


class CaveatCode(enum.StrEnum):
    """The handling caveats the redaction rules know (``policies/data/recipients.toml``)."""

    ORIGINATOR_ONLY = "originator-only"
    RESPONSIBLE_AUTHORITY_ONLY = "responsible-authority-only"
    NO_ONWARD_DISCLOSURE = "no-onward-disclosure"
    NOT_FOR_CHILD_PROTECTION_CONFERENCE = "not-for-child-protection-conference"


class SourceIn(BaseModel):
    model_config = STRICT

    id: ItemRef
    kind: SourceKind
    description: Description
    third_party: StrictBool
    #: The supplying agency released this third-party source to every recipient. Only the
    #: originator releases: the redaction does not count it for a source the document's author
    #: attributes to another agency (``originator_agency_id``).
    released: StrictBool = False
    #: In minutes: the agency that brought this source to the meeting (it alone sees it).
    originator_agency_id: AgencyId | None = None

    @model_validator(mode="after")
    def _third_party_kinds(self) -> SourceIn:
        if self.kind in THIRD_PARTY_KINDS and not self.third_party:
            raise ValueError(f"a {self.kind} source is a third party")
        if self.released and not self.third_party:
            raise ValueError("only a third-party source is released")
        return self


class ItemIn(BaseModel):
    """One item of content; ``source`` or ``sources`` name the sources it rests on."""

    model_config = STRICT

    id: ItemRef
    text: LongText
    source: ItemRef | None = None
    sources: tuple[ItemRef, ...] = Field(default=(), max_length=20)
    caveats: tuple[CaveatCode, ...] = Field(default=(), max_length=4)


def check_citations(sources: Iterable[SourceIn], *groups: Iterable[ItemIn]) -> None:
    """Source ids and item ids are unique, and every cited source is listed."""
    source_ids = [s.id for s in sources]
    if len(source_ids) != len(set(source_ids)):
        raise ValueError("each source id appears once")
    known = set(source_ids)
    item_ids: list[str] = []
    for group in groups:
        for item in group:
            item_ids.append(item.id)
            cited = {*item.sources, *([item.source] if item.source else [])}
            if not cited <= known:
                raise ValueError(f"item {item.id} cites a source that is not listed")
    if len(item_ids) != len(set(item_ids)):
        raise ValueError("each item id appears once")
