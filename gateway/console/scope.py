"""An IG officer's review scope: the MAPPA areas whose audit entries the officer reads.

Each MAPPA area has its own Strategic Management Board and information governance function: an
officer of one area reads that area's disclosures and refusals, never another's. A scope is

- one or more **area codes**, as the area's agencies are registered with: the officer reads
  the entries of those areas (`gateway.audit.search.of_area`): made by one of their agencies,
  or about one of their nominals;
- **national**: the whole log, entries of no area included (console actions, administration,
  a refused client id no agency holds). A deliberate grant to the IG function that answers for
  the gateway itself, never a default;
- **none**: nothing. A new account's default, and every account migration 0021 found: the
  officer signs in, is told, and reads no entry until an operator sets a scope.

The scope is the gateway's own record (``ig_officers``), read again on every request, so a
change holds from the officer's next page. Nothing an identity provider says sets or widens it:
OIDC names the officer (issuer and subject), never the officer's areas.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.agencies import AREA_CODE, NATIONAL_WORD
from gateway.errors import ValidationFailed
from gateway.logs import get_logger
from gateway.store.models import Agency, IGOfficer

__all__ = ["NATIONAL", "NO_SCOPE", "ReviewScope", "known_scope"]

log = get_logger("gateway.console")


@dataclass(frozen=True, slots=True)
class ReviewScope:
    """National, or the areas (sorted, each once, each an area code), or neither: nothing."""

    national: bool = False
    areas: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.national and self.areas:
            raise ValueError("a national scope names no areas")
        if self.areas != tuple(sorted(set(self.areas))):
            raise ValueError("a scope's areas are sorted, each once")
        if not all(_is_area_code(area) for area in self.areas):
            raise ValueError("a scope's areas are area codes")

    @classmethod
    def of(cls, officer: IGOfficer) -> ReviewScope:
        """The scope stored for ``officer``. A stored value that is no scope (national and
        areas both, an area that is not a code, not a list) reads as none: never wider."""
        areas = officer.areas
        try:
            if not isinstance(areas, list) or not all(isinstance(a, str) for a in areas):
                raise ValueError("areas: not a list of text")
            return cls(bool(officer.national), tuple(sorted(set(areas))))
        except ValueError:
            log.warning("ig_officer_scope_unreadable", officer_id=officer.id)
            return NO_SCOPE

    @property
    def sees_nothing(self) -> bool:
        return not self.national and not self.areas

    @property
    def searched(self) -> tuple[str, ...] | None:
        """The areas a read covers (`gateway.audit.search.within`): None, the whole log."""
        return None if self.national else self.areas

    def as_detail(self) -> dict[str, object]:
        """The scope as audit entries record it."""
        return {"national": True} if self.national else {"areas": list(self.areas)}

    def describe(self) -> str:
        if self.national:
            return "national (every area)"
        return ", ".join(self.areas) if self.areas else "none"


NO_SCOPE: Final = ReviewScope()
NATIONAL: Final = ReviewScope(national=True)


def _is_area_code(value: str) -> bool:
    return AREA_CODE.fullmatch(value) is not None and value.casefold() != NATIONAL_WORD


async def known_scope(
    session: AsyncSession, *, national: bool = False, areas: Iterable[str] = ()
) -> ReviewScope:
    """The scope of ``national`` or ``areas``, each area the area of a registered agency (so a
    mistyped code is refused, not granted as an area that reads nothing); refused
    (`ValidationFailed`, naming the rule) otherwise. No area and not national: no scope."""
    wanted = sorted(set(areas))
    if national and wanted:
        raise ValidationFailed("scope: national, or areas, not both")
    for area in wanted:
        if area.casefold() == NATIONAL_WORD:
            raise ValidationFailed("scope: every area is the national scope, not an area code")
        if AREA_CODE.fullmatch(area) is None:
            raise ValidationFailed(
                "area: 1 to 64 letters, digits, space, '.', '_' or '-', as agencies are "
                "registered with"
            )
    if wanted:
        known = set(
            await session.scalars(select(Agency.area).where(Agency.area.in_(wanted)).distinct())
        )
        unknown = [area for area in wanted if area not in known]
        if unknown:
            raise ValidationFailed(
                f"area {unknown[0]!r}: no agency of the gateway is registered with this area "
                "(mappa-gateway agencies list shows theirs)"
            )
    return ReviewScope(national, tuple(wanted))
