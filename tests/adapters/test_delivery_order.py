"""Deliveries arrive at least once and in any order; the adapters keep what was signed last.

The relay pushes several messages to a partner at once and retries a failed one while later ones
go out, so a partner can receive an older message after a newer one about the same thing. Each
adapter keeps, per thing it holds, the signed ``iat`` (then the message id, for two signed in the
same second) of the message it applied, and answers an older one ``superseded`` (a 2xx, so the
relay does not retry it) without applying it; a revoked marker's id is remembered, so the marker
delivered after its revocation is never written."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest

from adapters.childrens_services import ChildrensServicesAdapter
from adapters.housing import REVOCATION, HousingAdapter
from adapters.identity import AgencyIdentity
from adapters.police import PoliceAdapter
from adapters.probation import ProbationAdapter
from adapters.receiver import Receiver, SeenDeliveries
from adapters.sdk import SUPERSEDED, Adapter
from adapters.standin import JsonStore
from tests.adapters.support import StandInGateway, post_sealed

SAMPLES = Path(__file__).parent / "samples"
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
NOMINAL = "0f6b1d2e-3c4a-4b5c-8d9e-0a1b2c3d4e5f"
UPRN = "200004512345"
MARKER_ID = "5a0c7d1e-2b3f-4c5d-9e8f-7a6b5c4d3e2f"


def _receiver(adapter: Adapter, gateway: StandInGateway) -> Receiver:
    return Receiver(
        AgencyIdentity.generate("barnet-partner"),
        adapter,
        gateway.ISSUER,
        gateway_keys=gateway.keys(),
        clock=lambda: NOW,
        seen=SeenDeliveries.in_memory(),
    )


def _level(old: int, new: int) -> dict[str, Any]:
    return {"nominal_id": NOMINAL, "old_level": old, "level": new, "changed_on": "2025-06-01"}


def _older_then_newer(
    gateway: StandInGateway, receiver: Receiver, kind: str, older: Any, newer: Any
) -> tuple[str, str]:
    """Two deliveries of ``kind``, signed two hours and one hour ago."""
    hour = dt.timedelta(hours=1)
    _, first = gateway.push(receiver.identity, kind, older, iat=NOW - 2 * hour)
    _, second = gateway.push(receiver.identity, kind, newer, iat=NOW - hour)
    return first, second


def _police_level(store: JsonStore) -> object:
    nominal = store.get("nominals", NOMINAL)
    return None if nominal is None else nominal["mappa_level"]


def _probation_level(store: JsonStore) -> object:
    registration = store.get("registrations", NOMINAL)
    return None if registration is None else registration["level"]


#: Each adapter that holds a nominal's level, and how to read the level it holds.
LEVEL_HOLDERS = [
    pytest.param(PoliceAdapter, _police_level, 3, id="police"),  # the nominal's mappa_level
    pytest.param(ProbationAdapter, _probation_level, "M3", id="probation"),  # the MAPP level
]


@pytest.mark.parametrize(("adapter", "level_of", "level_3"), LEVEL_HOLDERS)
async def test_an_older_level_change_delivered_late_is_superseded(
    tmp_path: Path, adapter: Any, level_of: Any, level_3: object
) -> None:
    """Level 1->2 (signed first) arriving after 2->3: answered ``superseded``, the level
    stays 3."""
    gateway, store = StandInGateway(), JsonStore(tmp_path / "store.json")
    receiver = _receiver(adapter(store), gateway)
    older, newer = _older_then_newer(gateway, receiver, "level_change", _level(1, 2), _level(2, 3))
    assert (await post_sealed(receiver, newer)).json()["status"] == "accepted"
    late = await post_sealed(receiver, older)
    assert late.status_code == 200 and late.json()["action"] == SUPERSEDED
    assert level_of(store) == level_3


@pytest.mark.parametrize(("adapter", "level_of", "level_3"), LEVEL_HOLDERS)
async def test_two_level_changes_signed_in_one_second_settle_the_same_either_way(
    tmp_path: Path, adapter: Any, level_of: Any, level_3: object
) -> None:
    """Equal ``iat``: the message with the greater id is held, in whichever order they come."""
    gateway = StandInGateway()
    low, high = "00000000-0000-4000-8000-000000000001", "ffffffff-0000-4000-8000-000000000002"
    outcomes = []
    for order in ((low, high), (high, low)):
        store = JsonStore(tmp_path / f"{order[0]}.json")
        receiver = _receiver(adapter(store), gateway)
        sealed = {
            low: gateway.push(receiver.identity, "level_change", _level(1, 2), iat=NOW, jti=low),
            high: gateway.push(receiver.identity, "level_change", _level(2, 3), iat=NOW, jti=high),
        }
        for jti in order:
            assert (await post_sealed(receiver, sealed[jti][1])).status_code == 200
        outcomes.append(level_of(store))
    assert outcomes == [level_3, level_3]


def _housing_store(tmp_path: Path) -> JsonStore:
    shutil.copyfile(SAMPLES / "housing_store.json", tmp_path / "housing.json")
    return JsonStore(tmp_path / "housing.json")


def _marker(review_date: str = "2025-12-01") -> dict[str, Any]:
    return {
        "marker_id": MARKER_ID,
        "uprn": UPRN,
        "marker": "PWM",
        "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
        "review_date": review_date,
    }


def _markers(store: JsonStore) -> list[dict[str, Any]]:
    prop = store.get("properties", UPRN)
    assert prop is not None
    return list(prop["markers"])


async def test_a_marker_delivered_after_its_revocation_is_never_written(tmp_path: Path) -> None:
    """The revocation first (nothing to remove), then its marker: the marker is ``superseded``
    and the property holds no marker."""
    gateway, store = StandInGateway(), _housing_store(tmp_path)
    receiver = _receiver(HousingAdapter(store), gateway)
    _, marker = gateway.push(
        receiver.identity, "warning_marker", _marker(), iat=NOW - dt.timedelta(hours=2)
    )
    revocation = {"marker_id": MARKER_ID, "uprn": UPRN, "marker": "PWM", "revoked": True}
    _, revoke = gateway.push(
        receiver.identity, REVOCATION, revocation, iat=NOW - dt.timedelta(hours=1)
    )
    first = await post_sealed(receiver, revoke)
    assert first.json()["action"] == "warning_marker_absent"
    late = await post_sealed(receiver, marker)
    assert late.status_code == 200 and late.json()["action"] == SUPERSEDED
    assert _markers(store) == []


async def test_an_older_marker_does_not_replace_a_newer_one_with_its_id(tmp_path: Path) -> None:
    """Two deliveries of one marker id: the property holds the one signed last, once."""
    gateway, store = StandInGateway(), _housing_store(tmp_path)
    receiver = _receiver(HousingAdapter(store), gateway)
    older, newer = _older_then_newer(
        gateway, receiver, "warning_marker", _marker("2025-12-01"), _marker("2026-06-01")
    )
    assert (await post_sealed(receiver, newer)).json()["action"] == "warning_marker_written"
    assert (await post_sealed(receiver, older)).json()["action"] == SUPERSEDED
    assert [m["review_date"] for m in _markers(store)] == ["2026-06-01"]


async def test_an_older_hazard_flag_does_not_replace_a_newer_one(tmp_path: Path) -> None:
    """Two deliveries of one flag id: the ICS record holds the alert signed last, once."""
    shutil.copyfile(SAMPLES / "ics_store.json", tmp_path / "ics.json")
    gateway, store = StandInGateway(), JsonStore(tmp_path / "ics.json")
    receiver = _receiver(ChildrensServicesAdapter(store), gateway)

    def flag(contact: str) -> dict[str, Any]:
        return {
            "flag_id": "flag-1",
            "hazard_flag": {"child_or_family_ref": "FAM-20931", "flag": "HZD", "contact": contact},
        }

    older, newer = _older_then_newer(gateway, receiver, "hazard_flag", flag("old"), flag("new"))
    assert (await post_sealed(receiver, newer)).json()["action"] == "hzd_alert_written"
    assert (await post_sealed(receiver, older)).json()["action"] == SUPERSEDED
    record = store.get("ics_records", "FAM-20931")
    assert record is not None
    assert [a["contact"] for a in record["alerts"]] == ["new"]
