"""Housing: a property warning marker for an address, and tenancy or address changes shared.

A warning-marker delivery becomes a ``PWM`` marker on the property record, found by UPRN (or,
failing that, by the exact address held): the marker, a contact and a review date (and the
gateway's marker id), with no offence detail whatever the body holds. A
``warning_marker_revocation`` removes the marker with that id from the property, and the id is
remembered as revoked: a marker with that id delivered late (deliveries may come out of order)
is not written (``superseded``), nor is one signed before the marker held with its id. Tenancy
changes from the housing system are shared as information records (``tenancy`` for a new or
ended tenancy, ``address`` for a move). Minutes and records delivered to housing are filed (their
kind and message id, for an officer to read them in the gateway), never copied onto a property.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from adapters.sdk import SUPERSEDED, Delivery, MappingRefused, Outbound, Receipt
from adapters.standin import JsonStore

__all__ = ["PWM", "REVOCATION", "HousingAdapter"]

PWM = "PWM"
REVOCATION = "warning_marker_revocation"
_MARKER_FIELDS = ("contact", "review_date")
_EVENTS = {"tenancy_start": "tenancy", "tenancy_end": "tenancy", "address_change": "address"}
#: Kinds filed for a housing officer (the kind and message id only: what they say is read in the
#: gateway), never copied onto a property.
_FILED = frozenset({"minutes", "record"})


@dataclass
class HousingAdapter:
    agency_type: ClassVar[str] = "housing"
    accepts: ClassVar[frozenset[str]] = frozenset({"warning_marker", REVOCATION, *_FILED})

    store: JsonStore | None = None

    def to_contract(self, record: Mapping[str, Any]) -> Sequence[Outbound]:
        kind = _EVENTS.get(str(record.get("event")))
        if kind is None:
            raise MappingRefused("event_not_shared", "only tenancy and address changes are shared")
        body: dict[str, Any] = {
            "kind": kind,
            "summary": f"{record['event'].replace('_', ' ')} on {record['date']}",
            "caveats": [],
        }
        if kind == "tenancy":
            body["tenancy"] = f"{record['tenancy_type']} ({record['event']}, {record['date']})"
        body["address"] = record["address"]
        path = f"/v1/nominals/{record['nominal_id']}/records"
        return [Outbound("POST", path, body, f"housing-{record['id']}")]

    def from_contract(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if kind not in ("warning_marker", REVOCATION):
            raise MappingRefused("kind_not_handled", "housing applies warning markers only")
        uprn, address = body.get("uprn"), body.get("address")
        if not uprn and not address:
            raise MappingRefused("marker_without_property", "a marker names a property")
        marker_id = body.get("marker_id")
        if kind == REVOCATION:
            if not marker_id:
                raise MappingRefused("revocation_without_marker", "a revocation names its marker")
            return {"uprn": uprn, "address": address, "revoke": str(marker_id)}
        marker = {"code": PWM, **{k: body[k] for k in _MARKER_FIELDS if body.get(k) is not None}}
        if marker_id:
            marker["marker_id"] = str(marker_id)
        return {"uprn": uprn, "address": address, "marker": marker}

    def _property_key(self, uprn: Any, address: Any) -> str | None:
        assert self.store is not None
        properties = self.store.all("properties")
        if uprn and str(uprn) in properties:
            return str(uprn)
        for key, prop in properties.items():
            if address and prop.get("address") == address:
                return key
        return None

    def receive(self, delivery: Delivery) -> Receipt:
        if delivery.kind in _FILED:
            if self.store is not None:
                self.store.apply_once(
                    delivery.message_id, "inbox", delivery.message_id, {"kind": delivery.kind}
                )
            return Receipt(delivery.message_id, "filed")
        mapped = self.from_contract(delivery.kind, delivery.body)
        if self.store is None:
            return Receipt(delivery.message_id, "marker_mapped")
        key = self._property_key(mapped["uprn"], mapped["address"])
        if key is None:
            raise MappingRefused("property_unknown", "no such property in the housing system")
        prop = self.store.get("properties", key) or {}
        if "revoke" in mapped:
            # Final, whatever came before or comes after: the marker id is remembered as
            # revoked, so a marker with that id delivered late is never written.
            revoked = mapped["revoke"]
            kept = [m for m in prop.get("markers", []) if m.get("marker_id") != revoked]
            removed = len(prop.get("markers", [])) - len(kept)
            prop["markers"] = kept
            self.store.put("revoked_markers", revoked, {"message_id": delivery.message_id})
            self.store.apply_once(delivery.message_id, "properties", key, prop)
            action = "warning_marker_removed" if removed else "warning_marker_absent"
            return Receipt(delivery.message_id, action, (key,))
        marker = {**mapped["marker"], "message_id": delivery.message_id}
        marker_id = marker.get("marker_id")
        latest = None
        if marker_id:  # one marker per id: the latest signed, and none once revoked
            latest = (f"markers/{marker_id}", delivery.order)
            revoked = self.store.get("revoked_markers", str(marker_id)) is not None
            if revoked or self.store.superseded(*latest):
                return Receipt(delivery.message_id, SUPERSEDED, (key,))
        others = [
            m
            for m in prop.get("markers", [])
            if m.get("message_id") != delivery.message_id
            and not (marker_id and m.get("marker_id") == marker_id)
        ]
        prop["markers"] = [*others, marker]
        self.store.apply_once(delivery.message_id, "properties", key, prop, latest=latest)
        return Receipt(delivery.message_id, "warning_marker_written", (key,))
