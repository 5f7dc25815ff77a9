"""Probation (nDelius-style registrations) <-> the gateway's nominal category and level.

nDelius records MAPPA as a registration of register type ``MAPP`` with a category code
(``M1``-``M4``) and a level code (``M1``-``M3``) against a CRN. Legacy codes are mapped
explicitly or refused, never guessed: ``M0`` (category not recorded) and ``X9`` (not MAPPA
eligible / closed) are refused with a stable code for a person to resolve.

A partner system that knows only categories 1-3 (``known_categories={1, 2, 3}``) degrades
safely: a category 4 is shown as *withheld: not supported by this system*, never as another
category.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from adapters.sdk import Delivery, MappingRefused, Outbound, Receipt
from adapters.standin import JsonStore

__all__ = [
    "CATEGORY_CODES",
    "LEGACY_REFUSED",
    "LEVEL_CODES",
    "ProbationAdapter",
    "category_from",
    "level_from",
]

CATEGORY_CODES = {"M1": 1, "M2": 2, "M3": 3, "M4": 4}
LEVEL_CODES = {"M1": 1, "M2": 2, "M3": 3}
#: Legacy category codes and why each is refused.
LEGACY_REFUSED = {
    "M0": "legacy_category_unrecorded",
    "X9": "legacy_not_mappa_eligible",
}


def category_from(code: str) -> int:
    code = code.strip().upper()
    if code in CATEGORY_CODES:
        return CATEGORY_CODES[code]
    if code in LEGACY_REFUSED:
        raise MappingRefused(LEGACY_REFUSED[code], f"category code {code} is legacy: review it")
    raise MappingRefused("unknown_category_code", "unknown MAPPA category code")


def level_from(code: str) -> int:
    code = code.strip().upper()
    if code in LEVEL_CODES:
        return LEVEL_CODES[code]
    raise MappingRefused("unknown_level_code", "unknown MAPPA level code")


@dataclass
class ProbationAdapter:
    agency_type: ClassVar[str] = "probation"
    accepts: ClassVar[frozenset[str]] = frozenset({"level_change", "minutes", "record"})

    store: JsonStore | None = None
    #: The categories this partner system can display.
    known_categories: frozenset[int] = field(default_factory=lambda: frozenset({1, 2, 3, 4}))

    def registration(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        active = [
            r
            for r in record.get("registrations", [])
            if r.get("type") == "MAPP" and not r.get("deregistered")
        ]
        if len(active) != 1:
            raise MappingRefused("mapp_registration_ambiguous", "need exactly one active MAPP")
        chosen: Mapping[str, Any] = active[0]
        return chosen

    def to_contract(self, record: Mapping[str, Any]) -> Sequence[Outbound]:
        """A CRN's active MAPP registration -> a change of the nominal's category and level."""
        crn = str(record.get("crn", ""))
        if not crn:
            raise MappingRefused("crn_missing", "the offender has no CRN")
        reg = self.registration(record)
        body = {
            "crn": crn,
            "category": category_from(str(reg.get("category", ""))),
            "level": level_from(str(reg.get("level", ""))),
            "effective_date": reg.get("date"),
        }
        return [Outbound("POST", "/v1/nominals/by-crn/level", body, f"ndelius-{crn}-{reg['id']}")]

    def from_contract(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Category and level -> an nDelius MAPP registration this system can show.

        The gateway's ``level_change`` carries the level alone (no category): the registration
        then keeps the category it has."""
        level = int(body["level"])
        if level not in LEVEL_CODES.values():
            raise MappingRefused("unknown_level", "level out of range")
        reg: dict[str, Any] = {"type": "MAPP", "level": f"M{level}"}
        if body.get("category") is None:
            return {
                "crn": body.get("crn"),
                "nominal_id": body.get("nominal_id"),
                "registration": reg,
            }
        category = int(body["category"])
        if category in self.known_categories and category in CATEGORY_CODES.values():
            reg["category"] = f"M{category}"
        else:
            # Never another category: shown as withheld, flagged for a person.
            reg["category"] = None
            reg["category_withheld"] = "not supported by this system"
        return {"crn": body.get("crn"), "registration": reg}

    def receive(self, delivery: Delivery) -> Receipt:
        if delivery.kind != "level_change" or self.store is None:
            if self.store is not None:
                self.store.apply_once(
                    delivery.message_id, "documents", delivery.message_id, {"kind": delivery.kind}
                )
            return Receipt(delivery.message_id, "filed")
        record = self.from_contract(delivery.kind, delivery.body)
        key = str(record.get("crn") or record.get("nominal_id") or delivery.message_id)
        registration = record["registration"]
        if "category" not in registration:  # a level change alone: the category stays
            registration = {**(self.store.get("registrations", key) or {}), **registration}
        self.store.apply_once(delivery.message_id, "registrations", key, registration)
        return Receipt(delivery.message_id, "registration_updated", (key,))
