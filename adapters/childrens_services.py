"""Children's services: the ICS ``HZD`` alert, "known to children's services", written reports.

A hazard flag delivery becomes an ``HZD`` alert on the child's or family's record in the ICS:
the alert code, the relationship, a contact, the review date and the message id. Nothing else is
copied, whatever the body holds: no offence, no intelligence, no third party. A flag for a
reference the ICS does not hold is kept for a person (``held_for_review``), never written onto
some other record. Deliveries may come out of order: of two about one flag (its ``flag_id``), the
record keeps the alert of the one signed last, and an older one is answered ``superseded``.

The adapter answers "known to children's services" queries from the ICS (yes/no and a team
contact, nothing about the child) and sends a written report as an information record when the
service cannot attend a meeting.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from adapters.sdk import SUPERSEDED, Delivery, MappingRefused, Outbound, Receipt
from adapters.standin import JsonStore

__all__ = ["HZD", "ChildrensServicesAdapter"]

HZD = "HZD"
#: The only fields of a hazard flag that reach the ICS.
_FLAG_FIELDS = ("relationship", "contact", "review_date")


@dataclass
class ChildrensServicesAdapter:
    agency_type: ClassVar[str] = "childrens_services"
    accepts: ClassVar[frozenset[str]] = frozenset({"hazard_flag", "minutes"})

    store: JsonStore | None = None

    def to_contract(self, record: Mapping[str, Any]) -> Sequence[Outbound]:
        """A written report for a meeting the service cannot attend."""
        if record.get("type") != "written_report":
            raise MappingRefused("record_type_not_shared", "only written reports are sent")
        body = {
            "kind": "written_report",
            "summary": record["summary"],
            "caveats": list(record.get("caveats", [])),
        }
        path = f"/v1/meetings/{record['meeting_id']}/reports"
        return [Outbound("POST", path, body, f"ics-report-{record['id']}")]

    def from_contract(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if kind != "hazard_flag":
            raise MappingRefused("kind_not_handled", "only hazard flags are written to the ICS")
        # The gateway sends {"flag_id", "hazard_flag": {...}}; a bare flag is accepted too.
        nested = body.get("hazard_flag")
        if isinstance(nested, Mapping):
            body = nested
        ref = body.get("child_or_family_ref")
        if not isinstance(ref, str) or not ref:
            raise MappingRefused("flag_without_reference", "a hazard flag names a child/family")
        alert = {"code": HZD, **{k: body[k] for k in _FLAG_FIELDS if body.get(k) is not None}}
        return {"ref": ref, "alert": alert}

    def receive(self, delivery: Delivery) -> Receipt:
        if delivery.kind != "hazard_flag":
            if self.store is not None:
                self.store.apply_once(
                    delivery.message_id, "inbox", delivery.message_id, {"kind": delivery.kind}
                )
            return Receipt(delivery.message_id, "filed")
        mapped = self.from_contract(delivery.kind, delivery.body)
        if self.store is None:
            return Receipt(delivery.message_id, "alert_mapped", (mapped["ref"],))
        record = self.store.get("ics_records", mapped["ref"])
        if record is None:
            raise MappingRefused("ics_reference_unknown", "no such child or family in the ICS")
        flag_id = delivery.body.get("flag_id")
        latest, replaced = None, None
        if isinstance(flag_id, str) and flag_id:  # one alert per flag: the latest signed
            latest = (f"hazard_flags/{flag_id}", delivery.order)
            held = self.store.latest(latest[0])
            if held is not None and held >= delivery.order:
                return Receipt(delivery.message_id, SUPERSEDED, (mapped["ref"],))
            replaced = held[1] if held is not None else None
        alert = {
            **mapped["alert"],
            "message_id": delivery.message_id,
            "raised_on": dt.date.today().isoformat(),
        }
        alerts = [
            a
            for a in record.get("alerts", [])
            if a.get("message_id") not in (delivery.message_id, replaced)
        ]
        record["alerts"] = [*alerts, alert]
        self.store.apply_once(
            delivery.message_id, "ics_records", mapped["ref"], record, latest=latest
        )
        return Receipt(delivery.message_id, "hzd_alert_written", (mapped["ref"],))

    def known_to_childrens_services(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """Whether a person matching ``query`` is known, and whom to contact; nothing more."""
        if self.store is None:
            return {"known": False}
        for record in self.store.all("ics_records").values():
            for person in record.get("people", []):
                if person.get("family_name", "").casefold() == str(
                    query.get("family_name", "")
                ).casefold() and person.get("date_of_birth") == query.get("date_of_birth"):
                    return {"known": True, "contact": record.get("team_contact")}
        return {"known": False}
