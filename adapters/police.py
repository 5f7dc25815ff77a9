"""Police (a police records system's nominal: PNC id, ViSOR reference, warning markers).

A nominal record becomes a MAPPA referral (the subject, identifiers, category, reasons and the
risk matrix) plus one information record per warning marker. Warning markers are mapped from an
explicit table; an unknown marker is refused rather than guessed. The adapter receives level
changes and meeting outcomes (conclusions and actions) and writes them onto the nominal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from adapters.sdk import Delivery, MappingRefused, Outbound, Receipt
from adapters.standin import JsonStore

__all__ = ["WARNING_MARKERS", "PoliceAdapter"]

#: PNC-style warning markers -> the wording shared (no detail of the underlying events).
WARNING_MARKERS = {
    "WE": "Weapons",
    "VI": "Violent",
    "SX": "Sexual offences",
    "ES": "Escaper",
    "CO": "Contagious",
    "MH": "Mental health",
    "SU": "Suicidal",
    "DR": "Drugs",
    "FI": "Firearms",
}
#: What an Idempotency-Key may hold; a PNC id's "/" is not among it.
_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9._:-]")
_RISK = {"L": "low", "M": "medium", "H": "high", "VH": "very_high"}
_GROUPS = {
    "CHILD": "children",
    "PUBLIC": "public",
    "KNOWN_ADULT": "known_adult",
    "STAFF": "staff",
    "SELF": "self",
    "PRISONERS": "prisoners",
}


@dataclass
class PoliceAdapter:
    agency_type: ClassVar[str] = "police"
    accepts: ClassVar[frozenset[str]] = frozenset({"level_change", "minutes", "record"})

    store: JsonStore | None = None

    def to_contract(self, record: Mapping[str, Any]) -> Sequence[Outbound]:
        person = record["person"]
        pnc = str(record.get("pnc_id") or "")
        if not pnc:
            raise MappingRefused("pnc_missing", "a police nominal without a PNC id")
        risks = []
        for entry in record.get("rosh", []):
            group, level = _GROUPS.get(entry["group"]), _RISK.get(entry["level"])
            if group is None or level is None:
                raise MappingRefused("unknown_risk_code", "unknown risk group or level code")
            risks.append({"group": group, "level": level})
        referral = {
            "kind": "mappa",
            "subject": {
                "family_name": person["surname"],
                "given_names": person["forenames"],
                "aliases": list(person.get("aliases", [])),
                "date_of_birth": person["dob"],
                "address": record.get("address"),
                "pnc_id": pnc,
                "visor_ref": record.get("visor_ref"),
            },
            "category": int(record["mappa_category"]),
            "reasons": record["referral_reason"],
            "risks": risks,
            "referrer_name": record["officer"]["name"],
            "referrer_contact": record["officer"]["contact"],
        }
        key = _NOT_IN_KEY.sub("_", pnc)
        calls = [Outbound("POST", "/v1/referrals", referral, f"police-referral-{key}")]
        for marker in record.get("warning_markers", []):
            code = str(marker["code"]).upper()
            if code not in WARNING_MARKERS:
                raise MappingRefused("unknown_warning_marker", "unknown warning marker code")
            body = {
                "kind": "intelligence",
                "summary": f"PNC warning marker: {WARNING_MARKERS[code]} ({code})",
                "caveats": [],
            }
            calls.append(
                Outbound(
                    "POST",
                    f"/v1/nominals/by-pnc/{pnc}/records",
                    body,
                    _NOT_IN_KEY.sub("_", f"police-marker-{key}-{code}-{marker.get('date', '')}"),
                )
            )
        return calls

    def from_contract(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if kind == "level_change":
            change: dict[str, Any] = {"mappa_level": int(body["level"])}
            if body.get("category") is not None:  # the gateway's level_change carries none
                change["mappa_category"] = body["category"]
            return change
        if kind == "minutes":
            return {
                "meeting_outcome": {
                    "meeting_id": body.get("meeting_id"),
                    "conclusions": body.get("conclusions"),
                    "actions": list(body.get("actions", [])),
                }
            }
        raise MappingRefused("kind_not_handled", "the police adapter does not apply this kind")

    def receive(self, delivery: Delivery) -> Receipt:
        update = self.from_contract(delivery.kind, delivery.body)
        key = str(delivery.body.get("nominal_id") or delivery.message_id)
        if self.store is not None:
            current = self.store.get("nominals", key) or {}
            self.store.apply_once(delivery.message_id, "nominals", key, {**current, **update})
        return Receipt(delivery.message_id, f"{delivery.kind}_recorded", (key,))
