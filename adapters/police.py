"""Police (a police records system's nominal: PNC id, ViSOR reference, warning markers).

A nominal record becomes a MAPPA referral (the subject, identifiers, category, reasons and the
risk matrix) plus one information record per warning marker, on the nominal the gateway finds by
the PNC id (a lookup: the PNC id is sealed in a body, never put in a URL or an Idempotency-Key).
Warning markers are mapped from an explicit table; an unknown marker is refused rather than
guessed.

The referral's Idempotency-Key is a keyed digest of the PNC id (HMAC-SHA256 under the agency's
``idempotency_secret``, :meth:`adapters.identity.AgencyIdentity.idempotency_secret`): the same
record gives the same key, so a retry is recognised, but the gateway, which remembers keys in
its ``idempotency_keys`` table and may log them, learns nothing of the PNC id, and cannot try
the few million possible PNC ids against it without the secret. Without a secret the adapter
refuses to map a nominal (it still receives deliveries).

The adapter receives level changes (``{"nominal_id", "old_level", "level", "changed_on"}``) and
meeting outcomes, which the gateway pushes as the participant's copy of the minutes
(``{"minutes": {"meeting_id", "nominal_id", "conclusions": [...], "actions": [...], ...}}``):
the meeting, its conclusions and its action points are written onto the nominal, nothing else
(the discussion and its sources stay in the gateway). It also receives the records other
agencies add on a nominal police lead (``{"record": {...}}``, redacted for police): each is kept
as a shared record of the nominal, by its id: its kind, owner, date, summary, marking and
caveats, nothing else (its content and sources stay in the gateway, read there when needed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from adapters.sdk import NOMINAL_ID, SUPERSEDED, Delivery, MappingRefused, Outbound, Receipt
from adapters.standin import JsonStore
from keys import keyed_digest

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
#: Domain tag of the referral's keyed Idempotency-Key.
_REFERRAL_KEY_TAG = "mappa-police-adapter/referral/v1"
#: What an Idempotency-Key may hold.
_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9._:-]")
#: What of the pushed minutes the police system records: the meeting, conclusions and actions.
_MEETING_FIELDS = ("meeting_id", "meeting_type", "held_on", "review_date")
_CONCLUSION_FIELDS = ("id", "text")
_ACTION_FIELDS = ("id", "owner_agency_id", "description", "due_date", "review_date", "status")
#: What of a record shared on a nominal the police system keeps.
_RECORD_FIELDS = (
    "id",
    "nominal_id",
    "kind",
    "owner_agency_id",
    "created_at",
    "summary",
    "marking",
    "caveats",
)
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
    #: The agency's secret for keyed Idempotency-Keys (32 bytes or more).
    idempotency_secret: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.idempotency_secret is not None and len(self.idempotency_secret) < 32:
            raise ValueError("the idempotency secret must be at least 32 bytes")

    def to_contract(self, record: Mapping[str, Any]) -> Sequence[Outbound]:
        person = record["person"]
        pnc = str(record.get("pnc_id") or "")
        if not pnc:
            raise MappingRefused("pnc_missing", "a police nominal without a PNC id")
        if not self.idempotency_secret:
            raise MappingRefused(
                "idempotency_secret_missing", "the adapter needs the agency's idempotency secret"
            )
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
        calls = [
            Outbound("POST", "/v1/referrals", referral, self._referral_key(pnc)),
        ]
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
                    f"/v1/nominals/{NOMINAL_ID}/records",
                    body,
                    f"police-marker-{NOMINAL_ID}-"
                    + _NOT_IN_KEY.sub("_", f"{code}-{marker.get('date', '')}"),
                    lookup={"pnc": pnc},
                )
            )
        return calls

    def _referral_key(self, pnc: str) -> str:
        """``police-referral-`` and the keyed digest of the PNC id as the police system writes
        it or not (spacing and case do not change the key)."""
        normalised = "".join(pnc.split()).upper()
        digest = keyed_digest(self.idempotency_secret or b"", _REFERRAL_KEY_TAG, normalised)
        return f"police-referral-{digest}"

    def from_contract(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if kind == "level_change":
            change: dict[str, Any] = {"mappa_level": int(body["level"])}
            if body.get("category") is not None:  # the gateway's level_change carries none
                change["mappa_category"] = body["category"]
            return change
        if kind == "minutes":
            minutes = body.get("minutes")
            if not isinstance(minutes, Mapping):
                raise MappingRefused("minutes_missing", "a minutes delivery carries its minutes")
            outcome: dict[str, Any] = _picked(minutes, _MEETING_FIELDS)
            outcome["conclusions"] = [
                _picked(item, _CONCLUSION_FIELDS) for item in _items(minutes, "conclusions")
            ]
            outcome["actions"] = [
                _picked(item, _ACTION_FIELDS) for item in _items(minutes, "actions")
            ]
            return {"meeting_outcome": outcome}
        if kind == "record":
            record = body.get("record")
            if not isinstance(record, Mapping) or not record.get("id"):
                raise MappingRefused("record_missing", "a record delivery carries its record")
            if not record.get("nominal_id"):
                raise MappingRefused("record_without_nominal", "a shared record names a nominal")
            return {"shared_record": _picked(record, _RECORD_FIELDS)}
        raise MappingRefused("kind_not_handled", "the police adapter does not apply this kind")

    def receive(self, delivery: Delivery) -> Receipt:
        """Write the level or the meeting outcome onto the nominal, unless the nominal holds
        one from a message signed later (then :data:`~adapters.sdk.SUPERSEDED`); keep a shared
        record by its id, likewise."""
        update = self.from_contract(delivery.kind, delivery.body)
        if "shared_record" in update:
            return self._keep_record(delivery, update["shared_record"])
        key = str(_nominal_of(delivery.body) or delivery.message_id)
        if self.store is not None:
            thing = f"nominals/{key}/{delivery.kind}"
            if self.store.superseded(thing, delivery.order):
                return Receipt(delivery.message_id, SUPERSEDED, (key,))
            current = self.store.get("nominals", key) or {}
            self.store.apply_once(
                delivery.message_id,
                "nominals",
                key,
                {**current, **update},
                latest=(thing, delivery.order),
            )
        return Receipt(delivery.message_id, f"{delivery.kind}_recorded", (key,))

    def _keep_record(self, delivery: Delivery, record: dict[str, Any]) -> Receipt:
        record_id, nominal = str(record["id"]), str(record["nominal_id"])
        if self.store is not None:
            thing = f"shared_records/{record_id}"
            if self.store.superseded(thing, delivery.order):
                return Receipt(delivery.message_id, SUPERSEDED, (nominal,))
            self.store.apply_once(
                delivery.message_id,
                "shared_records",
                record_id,
                {**record, "message_id": delivery.message_id},
                latest=(thing, delivery.order),
            )
        return Receipt(delivery.message_id, "record_recorded", (nominal, record_id))


def _picked(source: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    return {name: source[name] for name in fields if source.get(name) is not None}


def _items(minutes: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    """A list of items of the minutes (conclusions, actions); an item that is not an object
    refuses the delivery rather than being guessed at."""
    items = minutes.get(name) or []
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise MappingRefused("minutes_malformed", f"the minutes' {name} are not a list of items")
    return items


def _nominal_of(body: Mapping[str, Any]) -> str | None:
    """The nominal a delivery is about: at the top (level_change) or in the minutes."""
    minutes = body.get("minutes")
    found = minutes.get("nominal_id") if isinstance(minutes, Mapping) else body.get("nominal_id")
    return str(found) if found else None
