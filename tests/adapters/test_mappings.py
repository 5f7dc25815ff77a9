"""The four adapters' mappings, against realistic sample records from each agency's system."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from adapters.childrens_services import ChildrensServicesAdapter
from adapters.housing import HousingAdapter
from adapters.police import PoliceAdapter
from adapters.probation import ProbationAdapter
from adapters.sdk import Adapter, Delivery, MappingRefused, discover, load_adapter
from adapters.standin import JsonStore
from gateway.contract import LevelChangeIn
from gateway.contract.referrals import ReferralIn
from tests.adapters.support import pnc_forms

SAMPLES = Path(__file__).parent / "samples"
GATEWAY = "https://gateway.test"
#: The police agency's secret for keyed Idempotency-Keys (AgencyIdentity.idempotency_secret).
POLICE_SECRET = bytes(range(32))


def police(secret: bytes = POLICE_SECRET) -> PoliceAdapter:
    return PoliceAdapter(idempotency_secret=secret)


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def store(tmp_path: Path, name: str) -> JsonStore:
    path = tmp_path / name
    shutil.copyfile(SAMPLES / name, path)
    return JsonStore(path)


def delivery(
    kind: str, body: dict[str, Any], mid: str = "7d0f5c1e-0000-4000-8000-000000000001"
) -> Delivery:
    return Delivery(mid, kind, body, GATEWAY)


def test_every_adapter_is_discovered_through_entry_points() -> None:
    """The four adapters are installed under mappa_gateway.adapters and meet the protocol."""
    assert {"police", "probation", "childrens_services", "housing"} <= set(discover())
    for name in ("police", "probation", "childrens_services", "housing"):
        assert isinstance(load_adapter(name), Adapter)


# -- police ---------------------------------------------------------------------------------


def test_police_nominal_becomes_a_valid_referral_and_marker_records() -> None:
    """PNC id, ViSOR ref, the risk matrix and markers map; the referral passes the contract."""
    calls = police().to_contract(sample("police_nominal.json"))
    referral = ReferralIn.model_validate(calls[0].body)
    assert referral.subject.pnc_id == "98/123456X" and referral.subject.visor_ref == "VR-0045123"
    assert referral.category == 1
    assert {(r.group.value, r.level.value) for r in referral.risks} == {
        ("children", "high"),
        ("public", "medium"),
    }
    markers = [c.body["summary"] for c in calls[1:]]
    assert markers == [
        "PNC warning marker: Sexual offences (SX)",
        "PNC warning marker: Violent (VI)",
    ]
    assert all(c.idempotency_key for c in calls)
    # The markers go on the nominal found by its PNC id: in a sealed lookup, not in the URL.
    for call in calls[1:]:
        assert call.lookup == {"pnc": "98/123456X"}
        assert call.path == "/v1/nominals/{nominal_id}/records"
        assert "123456" not in call.path + (call.idempotency_key or "")
    # Usable as Idempotency-Key headers (letters, digits, . _ : -): a PNC's "/" is replaced.
    nominal_id = "5f0c8f56-7d1e-4c55-9a1f-0b8f1d7d2a11"
    keys = [calls[0].idempotency_key] + [c.resolved(nominal_id)[1] for c in calls[1:]]
    assert all(re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", k or "") for k in keys), keys


def test_police_unknown_warning_marker_is_refused_not_guessed() -> None:
    """A marker code outside the table stops the translation."""
    record = sample("police_nominal.json")
    record["warning_markers"].append({"code": "ZZ"})
    with pytest.raises(MappingRefused) as caught:
        police().to_contract(record)
    assert caught.value.code == "unknown_warning_marker"


def test_police_referral_key_is_a_keyed_digest_with_no_pnc_in_any_form() -> None:
    """police-referral- and 64 hex of HMAC-SHA256 under the agency's secret: stable for the
    record (and for the PNC id however spaced or cased), another for another secret or another
    PNC id, and no spelling or plain hash of the PNC id in it."""
    record = sample("police_nominal.json")
    key = police().to_contract(record)[0].idempotency_key or ""
    assert re.fullmatch(r"police-referral-[0-9a-f]{64}", key), key
    for form in pnc_forms(record["pnc_id"]):
        assert form not in key, form
    assert police().to_contract(record)[0].idempotency_key == key  # a retry: the same key
    respelled = {**record, "pnc_id": " 98/123456x "}
    assert police().to_contract(respelled)[0].idempotency_key == key
    assert police(bytes(32)).to_contract(record)[0].idempotency_key != key
    other = {**record, "pnc_id": "98/123457Y"}
    assert police().to_contract(other)[0].idempotency_key != key


def test_police_without_a_secret_maps_nothing() -> None:
    """No idempotency secret: mapping refused (never a key made of the PNC id); a secret under
    256 bits is refused when the adapter is built."""
    with pytest.raises(MappingRefused) as caught:
        PoliceAdapter().to_contract(sample("police_nominal.json"))
    assert caught.value.code == "idempotency_secret_missing"
    with pytest.raises(ValueError, match="32 bytes"):
        PoliceAdapter(idempotency_secret=b"short")


def test_police_receives_level_change_and_meeting_outcome(tmp_path: Path) -> None:
    """Both land on the nominal in the police stand-in."""
    police = PoliceAdapter(JsonStore(tmp_path / "police.json"))
    police.receive(delivery("level_change", {"nominal_id": "n-1", "level": 2, "category": 1}))
    police.receive(
        delivery(
            "minutes",
            {
                "minutes": {
                    "nominal_id": "n-1",
                    "meeting_id": "m-1",
                    "discussion": [{"id": "d1", "text": "never copied"}],
                    "conclusions": [{"id": "k1", "text": "Level 2", "source": "s1"}],
                }
            },
            "7d0f5c1e-0000-4000-8000-000000000002",
        )
    )
    nominal = police.store.get("nominals", "n-1") if police.store else None
    assert nominal is not None and nominal["mappa_level"] == 2
    assert nominal["meeting_outcome"] == {
        "meeting_id": "m-1",
        "conclusions": [{"id": "k1", "text": "Level 2"}],
        "actions": [],
    }
    assert "never copied" not in json.dumps(nominal)


@pytest.mark.parametrize(
    "body",
    [
        {"nominal_id": "n-1", "meeting_id": "m-1", "conclusions": []},  # not the gateway's shape
        {"minutes": "Level 2"},  # minutes that are not an object
        {"minutes": {"nominal_id": "n-1", "conclusions": "Level 2"}},  # not a list of items
        {"minutes": {"nominal_id": "n-1", "actions": ["call the school"]}},  # items not objects
    ],
)
def test_police_minutes_not_in_the_gateway_shape_are_refused(
    tmp_path: Path, body: dict[str, Any]
) -> None:
    """A minutes body the gateway never sends is refused (held for a person), not guessed at."""
    police = PoliceAdapter(JsonStore(tmp_path / "police.json"))
    with pytest.raises(MappingRefused):
        police.receive(delivery("minutes", body))
    assert police.store is not None and police.store.all("nominals") == {}


# -- probation ------------------------------------------------------------------------------


def test_probation_active_mapp_registration_maps_to_category_and_level() -> None:
    """CRN, MAPP M1/M2 -> category 1, level 2; the deregistered legacy row is ignored."""
    assert ProbationAdapter().mapping(sample("ndelius_offender.json")) == {
        "crn": "X123456",
        "category": 1,
        "level": 2,
        "effective_date": "2026-04-01",
        "registration_id": "R-1002",
    }


def test_probation_level_goes_to_the_level_endpoint_of_the_nominal_found_by_crn() -> None:
    """The registration becomes a lookup by CRN (sealed, not in the URL or the key), then the
    existing level-change call with a body the contract accepts."""
    [call] = ProbationAdapter().to_contract(sample("ndelius_offender.json"))
    assert call.lookup == {"crn": "X123456"}
    assert call.path == "/v1/nominals/{nominal_id}/level"
    LevelChangeIn.model_validate(call.body)
    assert call.body == {
        "level": 2,
        "reason": "nDelius MAPP registration R-1002: level M2 from 2026-04-01",
    }
    nominal_id = "5f0c8f56-7d1e-4c55-9a1f-0b8f1d7d2a11"
    path, key = call.resolved(nominal_id)
    assert path == f"/v1/nominals/{nominal_id}/level"
    assert key == f"ndelius-{nominal_id}-R-1002-M2"
    assert "X123456" not in path + key


@pytest.mark.parametrize(
    ("category", "level", "code"),
    [
        ("M0", "M1", "legacy_category_unrecorded"),  # legacy: category never recorded
        ("X9", "M1", "legacy_not_mappa_eligible"),  # legacy: not MAPPA eligible
        ("M5", "M1", "unknown_category_code"),  # no such category
        ("M1", "M4", "unknown_level_code"),  # there is no level 4
        ("M4", "M0", "unknown_level_code"),  # a legacy level code
    ],
)
def test_probation_legacy_and_unknown_codes_are_refused(
    category: str, level: str, code: str
) -> None:
    """Legacy M0/X9 and anything unknown are refused with a stable code, never mapped."""
    record = {
        "crn": "X1",
        "registrations": [{"id": "R", "type": "MAPP", "category": category, "level": level}],
    }
    with pytest.raises(MappingRefused) as caught:
        ProbationAdapter().to_contract(record)
    assert caught.value.code == code


@pytest.mark.parametrize("category", [1, 2, 3, 4])
def test_probation_round_trips_every_category(category: int) -> None:
    """Contract -> nDelius -> contract is the identity for a system that knows M1-M4."""
    adapter = ProbationAdapter()
    back = adapter.from_contract("level_change", {"crn": "X1", "category": category, "level": 3})
    reg = {**back["registration"], "id": "R"}
    mapped = adapter.mapping({"crn": "X1", "registrations": [reg]})
    assert (mapped["category"], mapped["level"]) == (category, 3)


def test_partner_knowing_only_categories_1_to_3_never_shows_category_4_as_another() -> None:
    """Category 4 is withheld and said to be, not shown as 1, 2 or 3."""
    adapter = ProbationAdapter(known_categories=frozenset({1, 2, 3}))
    shown = adapter.from_contract("level_change", {"crn": "X1", "category": 4, "level": 3})
    assert shown["registration"]["category"] is None
    assert shown["registration"]["category_withheld"] == "not supported by this system"
    assert shown["registration"]["level"] == "M3"
    ok = adapter.from_contract("level_change", {"crn": "X1", "category": 3, "level": 1})
    assert ok["registration"]["category"] == "M3"


# -- children's services --------------------------------------------------------------------


def test_hazard_flag_writes_hzd_alert_without_details(tmp_path: Path) -> None:
    """Only the code, relationship, contact and review date reach the ICS record."""
    ics = store(tmp_path, "ics_store.json")
    body = {
        **sample("hazard_flag_delivery.json"),
        "offence": "must never be written",
        "intelligence": "nor this",
    }
    receipt = ChildrensServicesAdapter(ics).receive(delivery("hazard_flag", body))
    assert receipt.action == "hzd_alert_written"
    record = ics.get("ics_records", "FAM-20931")
    assert record is not None
    [alert] = record["alerts"]
    assert set(alert) == {
        "code",
        "relationship",
        "contact",
        "review_date",
        "message_id",
        "raised_on",
    }
    assert alert["code"] == "HZD"
    assert "never" not in json.dumps(record)


def test_hazard_flag_redelivered_is_written_once(tmp_path: Path) -> None:
    """The same message id twice leaves one alert."""
    ics = store(tmp_path, "ics_store.json")
    adapter = ChildrensServicesAdapter(ics)
    flag = delivery("hazard_flag", sample("hazard_flag_delivery.json"))
    adapter.receive(flag)
    adapter.receive(flag)
    record = ics.get("ics_records", "FAM-20931")
    assert record is not None and len(record["alerts"]) == 1


def test_hazard_flag_for_unknown_reference_is_held_not_misfiled(tmp_path: Path) -> None:
    """A reference the ICS does not hold is refused for review, never put on another record."""
    ics = store(tmp_path, "ics_store.json")
    body = {**sample("hazard_flag_delivery.json"), "child_or_family_ref": "FAM-00000"}
    with pytest.raises(MappingRefused) as caught:
        ChildrensServicesAdapter(ics).receive(delivery("hazard_flag", body))
    assert caught.value.code == "ics_reference_unknown"


def test_known_to_childrens_services_answers_yes_no_and_a_contact_only(tmp_path: Path) -> None:
    """The answer says known or not and whom to call; nothing about the child."""
    adapter = ChildrensServicesAdapter(store(tmp_path, "ics_store.json"))
    answer = adapter.known_to_childrens_services(
        {"family_name": "harlow", "date_of_birth": "2016-09-01"}
    )
    assert answer == {"known": True, "contact": "Barnet Conference & Review Team, 020 8359 0000"}
    assert adapter.known_to_childrens_services(
        {"family_name": "Nobody", "date_of_birth": "2000-01-01"}
    ) == {"known": False}


def test_written_report_is_sent_when_the_service_cannot_attend() -> None:
    """A written report becomes an information record addressed to the meeting."""
    [call] = ChildrensServicesAdapter().to_contract(
        {
            "type": "written_report",
            "id": "WR-1",
            "meeting_id": "m-1",
            "summary": "Case open; CP plan in place.",
        }
    )
    assert call.path == "/v1/meetings/m-1/reports"
    assert call.body["kind"] == "written_report"


# -- housing --------------------------------------------------------------------------------


def test_property_warning_marker_has_no_offence_detail(tmp_path: Path) -> None:
    """The marker on the property carries the code, a contact and a review date only."""
    housing = store(tmp_path, "housing_store.json")
    body = {
        "uprn": "200004512345",
        "contact": {"role": "mappa_unit", "telephone": "020 8200 0000"},
        "review_date": "2026-08-01",
        "offence": "must never be written",
    }
    receipt = HousingAdapter(housing).receive(delivery("warning_marker", body))
    assert receipt.action == "warning_marker_written"
    prop = housing.get("properties", "200004512345")
    assert prop is not None
    [marker] = prop["markers"]
    assert set(marker) == {"code", "contact", "review_date", "message_id"}
    assert "never" not in json.dumps(prop)


def test_tenancy_change_is_shared_as_an_information_record() -> None:
    """A new tenancy becomes a tenancy record with the new address."""
    [call] = HousingAdapter().to_contract(sample("housing_tenancy_change.json"))
    assert call.body["kind"] == "tenancy"
    assert call.body["address"] == "Flat 3, 22 Example Road, Barnet, EN4 9ZZ"
    assert call.idempotency_key == "housing-TEN-7781"


def test_housing_does_not_share_other_events() -> None:
    """Rent arrears and the like are not MAPPA information."""
    with pytest.raises(MappingRefused):
        HousingAdapter().to_contract({"event": "rent_arrears"})
