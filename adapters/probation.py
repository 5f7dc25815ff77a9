"""Probation (nDelius-style registrations) <-> the gateway's nominal category and level.

nDelius records MAPPA as a registration of register type ``MAPP`` with a category code
(``M1``-``M4``) and a level code (``M1``-``M3``) against a CRN. Legacy codes are mapped
explicitly or refused, never guessed: ``M0`` (category not recorded) and ``X9`` (not MAPPA
eligible / closed) are refused with a stable code for a person to resolve.

A MAPP registration reaches the gateway as a change of the nominal's level: the adapter asks
the gateway for the nominal by its CRN or, failing that, by the PNC id nDelius holds (a nominal
the police referred is known by its PNC id), with ``POST /v1/nominals/lookup`` (the identifier
sealed in the body, never in a URL or an Idempotency-Key), then changes the level with
``POST /v1/nominals/{id}/level``. The category code is checked (a legacy code stops the update)
but not sent: a change of category is the Responsible Authority's own decision, made through
``/category``.

A partner system that knows only categories 1-3 (``known_categories={1, 2, 3}``) degrades
safely: a category 4 is shown as *withheld: not supported by this system*, never as another
category.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from adapters.sdk import NOMINAL_ID, SUPERSEDED, Delivery, MappingRefused, Outbound, Receipt
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
#: What an Idempotency-Key may hold.
_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9._:-]")
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

    def mapping(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A CRN's active MAPP registration as the contract's category and level."""
        crn = str(record.get("crn", ""))
        if not crn:
            raise MappingRefused("crn_missing", "the offender has no CRN")
        reg = self.registration(record)
        return {
            "crn": crn,
            "category": category_from(str(reg.get("category", ""))),
            "level": level_from(str(reg.get("level", ""))),
            "effective_date": reg.get("date"),
            "registration_id": str(reg.get("id", "")),
        }

    def to_contract(self, record: Mapping[str, Any]) -> Sequence[Outbound]:
        """A CRN's active MAPP registration -> the nominal (looked up by CRN) at its level."""
        mapped = self.mapping(record)
        registration = mapped["registration_id"]
        if not registration:
            raise MappingRefused("registration_id_missing", "the MAPP registration has no id")
        reason = f"nDelius MAPP registration {registration}: level M{mapped['level']}"
        if mapped["effective_date"]:
            reason += f" from {mapped['effective_date']}"
        key = _NOT_IN_KEY.sub("_", f"{registration}-M{mapped['level']}")
        return [
            Outbound(
                "POST",
                f"/v1/nominals/{NOMINAL_ID}/level",
                {"level": mapped["level"], "reason": reason},
                f"ndelius-{NOMINAL_ID}-{key}",
                lookup=_identifiers(mapped["crn"], record.get("pnc")),
            )
        ]

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
        thing = f"registrations/{key}"
        if self.store.superseded(thing, delivery.order):  # a later level is held
            return Receipt(delivery.message_id, SUPERSEDED, (key,))
        registration = record["registration"]
        if "category" not in registration:  # a level change alone: the category stays
            registration = {**(self.store.get("registrations", key) or {}), **registration}
        self.store.apply_once(
            delivery.message_id,
            "registrations",
            key,
            registration,
            latest=(thing, delivery.order),
        )
        return Receipt(delivery.message_id, "registration_updated", (key,))


def _identifiers(crn: str, pnc: object) -> dict[str, str]:
    """What the nominal is looked up by: the CRN, then the PNC id if nDelius holds one."""
    found = {"crn": crn}
    if isinstance(pnc, str) and pnc.strip():
        found["pnc"] = pnc.strip()
    return found
