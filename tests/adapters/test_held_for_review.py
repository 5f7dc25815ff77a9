"""A verified delivery the adapter cannot apply is kept for a person; so is one of a kind the
gateway sends that the adapter does not take; only a kind the gateway does not send is refused.

Once the receiver answers 2xx and remembers the ``jti``, the gateway marks the message delivered
and every redelivery is a duplicate: a delivery the adapter refused must then be on disk,
sealed as it came, for a person to read and apply again. A kind the gateway sends
(``GATEWAY_KINDS``) that the adapter does not list in ``accepts`` is held the same way (a 422
would have it dead-lettered and the agency never told); a kind the gateway does not send at all
(a newer gateway's) is answered 422, remembered nowhere, so that the gateway dead-letters it
where its operator sees it.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapters.childrens_services import ChildrensServicesAdapter
from adapters.housing import REVOCATION, HousingAdapter
from adapters.identity import AgencyIdentity
from adapters.police import PoliceAdapter
from adapters.probation import ProbationAdapter
from adapters.receiver import (
    ERASURE_KIND,
    ERASURE_NOTICE,
    HELD_FOR_REVIEW,
    KIND_NOT_HANDLED,
    DeliveryRefused,
    HeldDelivery,
    Receiver,
    SeenDeliveries,
)
from adapters.sdk import GATEWAY_KINDS, Adapter, Delivery, MappingRefused
from adapters.standin import JsonStore
from gateway.delivery.outbox import KINDS
from tests.adapters.support import StandInGateway, post_sealed
from tests.gateway.cases import scenario
from tests.gateway.cases.support import open_world, settings_for

SAMPLES = Path(__file__).parent / "samples"
NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
CS = "barnet-childrens-services"
UNKNOWN_REF = "FAM-30417"
NOMINAL = "0f6b1d2e-3c4a-4b5c-8d9e-0a1b2c3d4e5f"


def _flag(ref: str) -> dict[str, Any]:
    """A hazard flag as the gateway pushes it."""
    return {
        "flag_id": str(uuid.uuid4()),
        "hazard_flag": {
            "child_or_family_ref": ref,
            "flag": "HZD",
            "relationship": "uncle",
            "statement": "known to MAPPA",
            "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
        },
    }


def _cs(tmp_path: Path, identity: AgencyIdentity, gateway: StandInGateway) -> Receiver:
    """Children's services' receiver, its ids and held deliveries in ``tmp_path`` (the same
    files each time: a second one is the receiver restarted)."""
    ics = tmp_path / "ics.json"
    if not ics.exists():
        shutil.copyfile(SAMPLES / "ics_store.json", ics)
    return Receiver(
        identity,
        ChildrensServicesAdapter(JsonStore(ics)),
        gateway.ISSUER,
        gateway_keys=gateway.keys(),
        clock=lambda: NOW,
        seen=SeenDeliveries(tmp_path / "state" / "seen-deliveries.sqlite3"),
    )


async def test_a_refused_delivery_is_kept_for_a_person_and_applied_once_it_can_be(
    tmp_path: Path,
) -> None:
    """A hazard flag for a family the ICS does not hold yet: 200 ``held_for_review``, and kept
    on disk (0600), sealed as it came, with its id, kind, code and time, across a restart; a
    redelivery is a duplicate. Applied again before the family is in the ICS it stays held;
    once it is, the alert is written and the delivery released."""
    gateway, identity = StandInGateway(), AgencyIdentity.generate(CS)
    first = _cs(tmp_path, identity, gateway)
    body = _flag(UNKNOWN_REF)
    jti, sealed = gateway.push(identity, "hazard_flag", body, iat=NOW - dt.timedelta(minutes=5))
    answer = await post_sealed(first, sealed, kind="hazard_flag")
    assert answer.status_code == 200
    assert answer.json() == {"status": "accepted", "id": jti, "action": HELD_FOR_REVIEW}
    assert first.seen is not None
    first.seen.close()

    receiver = _cs(tmp_path, identity, gateway)  # restarted
    assert receiver.held_deliveries() == [
        HeldDelivery(
            jti,
            "hazard_flag",
            "ics_reference_unknown",
            int((NOW - dt.timedelta(minutes=5)).timestamp()),
            NOW,
            identity.encryption_key.kid or "",
            sealed,
        )
    ]
    path = tmp_path / "state" / "seen-deliveries.sqlite3"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = await post_sealed(receiver, sealed, kind="hazard_flag")
    assert again.json() == {"status": "duplicate", "id": jti}

    opened = receiver.open_held(jti)
    assert (opened.message_id, opened.kind, opened.body) == (jti, "hazard_flag", body)
    still = await receiver.reapply(jti)
    assert (still.action, still.notes) == (HELD_FOR_REVIEW, ("ics_reference_unknown",))
    assert [held.jti for held in receiver.held_deliveries()] == [jti]
    # an adapter that no longer takes the kind: refused with the code it is held under
    accepts = type(receiver.adapter).accepts
    receiver.adapter.accepts = frozenset(accepts - {"hazard_flag"})  # type: ignore[misc]
    with pytest.raises(DeliveryRefused) as refused:
        await receiver.reapply(jti)
    assert refused.value.code == "ics_reference_unknown"
    receiver.adapter.accepts = accepts  # type: ignore[misc]

    ics = JsonStore(tmp_path / "ics.json")
    ics.put("ics_records", UNKNOWN_REF, {"ref": UNKNOWN_REF, "people": [], "alerts": []})
    applied = await receiver.reapply(jti)
    assert applied.action == "hzd_alert_written"
    assert receiver.held_deliveries() == []
    [alert] = (ics.get("ics_records", UNKNOWN_REF) or {})["alerts"]
    assert (alert["code"], alert["message_id"]) == ("HZD", jti)
    replay = await post_sealed(receiver, sealed, kind="hazard_flag")
    assert replay.json() == {"status": "duplicate", "id": jti}
    with pytest.raises(LookupError):
        await receiver.reapply(jti)


async def test_a_held_delivery_dealt_with_by_hand_is_dismissed(tmp_path: Path) -> None:
    """Dismissed, it is no longer held, and its redelivery is still a duplicate."""
    gateway, identity = StandInGateway(), AgencyIdentity.generate(CS)
    receiver = _cs(tmp_path, identity, gateway)
    jti, sealed = gateway.push(identity, "hazard_flag", _flag(UNKNOWN_REF), iat=NOW)
    assert (await post_sealed(receiver, sealed)).json()["action"] == HELD_FOR_REVIEW
    await receiver.dismiss(jti)
    assert receiver.held_deliveries() == []
    assert (await post_sealed(receiver, sealed)).json()["status"] == "duplicate"


class _FullDisk(SeenDeliveries):
    def hold(self, held: HeldDelivery) -> None:
        raise sqlite3.OperationalError("database or disk is full")


async def test_a_delivery_not_kept_is_not_acknowledged(tmp_path: Path) -> None:
    """If the refused delivery cannot be kept, nothing is remembered and no 2xx is answered:
    the relay delivers it again."""
    gateway, identity = StandInGateway(), AgencyIdentity.generate(CS)
    shutil.copyfile(SAMPLES / "ics_store.json", tmp_path / "ics.json")
    seen = _FullDisk(tmp_path / "seen-deliveries.sqlite3")
    receiver = Receiver(
        identity,
        ChildrensServicesAdapter(JsonStore(tmp_path / "ics.json")),
        gateway.ISSUER,
        gateway_keys=gateway.keys(),
        clock=lambda: NOW,
        seen=seen,
    )
    jti, sealed = gateway.push(identity, "hazard_flag", _flag(UNKNOWN_REF), iat=NOW)
    answer = await post_sealed(receiver, sealed)
    assert answer.status_code == 500
    assert seen.action(jti) is None and receiver.receipts == {}


#: The shipped adapters.
SHIPPED: tuple[type[Adapter], ...] = (
    PoliceAdapter,
    ProbationAdapter,
    ChildrensServicesAdapter,
    HousingAdapter,
)


def _receiver(
    tmp_path: Path, adapter: Adapter, identity: AgencyIdentity, gateway: StandInGateway
) -> Receiver:
    return Receiver(
        identity,
        adapter,
        gateway.ISSUER,
        gateway_keys=gateway.keys(),
        clock=lambda: NOW,
        seen=SeenDeliveries(tmp_path / "state" / "seen-deliveries.sqlite3"),
    )


def test_the_sdk_knows_every_kind_the_gateway_sends() -> None:
    """The SDK's copy of the gateway's kinds is the gateway's own list."""
    assert GATEWAY_KINDS == KINDS


@pytest.mark.parametrize("adapter", SHIPPED)
async def test_a_kind_the_gateway_sends_that_the_adapter_does_not_take_is_kept_for_a_person(
    tmp_path: Path, adapter: type[Adapter]
) -> None:
    """Every kind the gateway sends that the adapter does not list: 200 ``held_for_review``,
    code ``kind_not_handled`` (``erasure_notice`` for an erasure), sealed as it came; nothing
    written to the agency's system, never 422 (which would dead-letter it, the agency never
    told); a redelivery is a duplicate."""
    store = _stores(tmp_path)[adapter]
    before = store.path.read_text() if store.path.exists() else None
    gateway, identity = StandInGateway(), AgencyIdentity.generate("barnet-partner")
    receiver = _receiver(tmp_path, adapter(store), identity, gateway)  # type: ignore[call-arg]
    not_taken = sorted(GATEWAY_KINDS - adapter.accepts)
    assert not_taken  # every shipped adapter leaves some kind to a person
    held: dict[str, str] = {}
    for kind in not_taken:
        jti, sealed = gateway.push(identity, kind, {"nominal_id": NOMINAL}, iat=NOW)
        answer = await post_sealed(receiver, sealed, kind=kind)
        assert answer.status_code == 200, (kind, answer.text)
        assert answer.json() == {"status": "accepted", "id": jti, "action": HELD_FOR_REVIEW}
        again = await post_sealed(receiver, sealed, kind=kind)
        assert again.json() == {"status": "duplicate", "id": jti}
        held[jti] = kind
    codes = {
        jti: (kind, ERASURE_NOTICE if kind == ERASURE_KIND else KIND_NOT_HANDLED)
        for jti, kind in held.items()
    }
    assert {item.jti: (item.kind, item.code) for item in receiver.held_deliveries()} == codes
    # Handed to the adapter again, each is refused with the code it is held under (a person's
    # to deal with, then dismiss), and stays held as it was.
    for jti, (_, code) in codes.items():
        with pytest.raises(DeliveryRefused) as refused:
            await receiver.reapply(jti)
        assert refused.value.code == code
    assert {item.jti: (item.kind, item.code) for item in receiver.held_deliveries()} == codes
    assert (store.path.read_text() if store.path.exists() else None) == before


@pytest.mark.parametrize("adapter", SHIPPED)
async def test_a_kind_the_gateway_does_not_send_is_refused_before_anything_is_applied(
    tmp_path: Path, adapter: type[Adapter]
) -> None:
    """422 ``kind_not_accepted`` (a newer gateway's kind): nothing written, nothing remembered,
    nothing held, so the relay retries it and the gateway dead-letters it for its operator;
    again the same."""
    gateway, identity = StandInGateway(), AgencyIdentity.generate("barnet-partner")
    store = JsonStore(tmp_path / "store.json")
    before = store.path.read_text()
    receiver = _receiver(tmp_path, adapter(store), identity, gateway)  # type: ignore[call-arg]
    kind = "kind_of_a_newer_gateway"
    assert kind not in GATEWAY_KINDS
    jti, sealed = gateway.push(identity, kind, {"nominal_id": NOMINAL, "level": 2}, iat=NOW)
    for _ in range(2):
        answer = await post_sealed(receiver, sealed, kind=kind)
        assert answer.status_code == 422 and answer.json() == {"code": "kind_not_accepted"}
    assert store.path.read_text() == before
    assert receiver.seen is not None and receiver.seen.action(jti) is None
    assert receiver.held_deliveries() == [] and receiver.receipts == {}


async def test_nothing_a_whole_case_sends_a_shipped_adapter_is_refused(
    sqlite_url: str,
    gateway_keys: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Every kind the gateway queues for Barnet's police, probation, children's services and
    housing in a whole case (a level change to meeting participants among them) reaches that
    agency's shipped adapter or is kept for a person: none is answered 422 and dead-lettered."""
    monkeypatch.chdir(tmp_path)
    shipped: dict[str, type[Adapter]] = {
        scenario.POLICE: PoliceAdapter,
        scenario.PROBATION: ProbationAdapter,
        scenario.CS: ChildrensServicesAdapter,
        scenario.HOUSING: HousingAdapter,
    }
    async with open_world(settings_for(sqlite_url, gateway_keys)) as world:
        await scenario.onboard_barnet(world)
        await scenario.whole_case(world)
        sent = {(row.recipient_agency_id, row.kind) for row in await world.outbox()}
    assert {kind for _, kind in sent} <= GATEWAY_KINDS
    not_taken = sorted(
        (agency, kind)
        for agency, kind in sent
        if agency in shipped and kind not in shipped[agency].accepts
    )
    assert (scenario.CS, "level_change") in not_taken  # what the regression refused
    gateway = StandInGateway()
    for agency, kind in not_taken:
        identity = AgencyIdentity.generate(agency)
        store = _stores(tmp_path / agency)[shipped[agency]]
        adapter: Adapter = shipped[agency](store)  # type: ignore[call-arg]
        receiver = _receiver(tmp_path / agency, adapter, identity, gateway)
        jti, sealed = gateway.push(identity, kind, {"nominal_id": NOMINAL}, iat=NOW)
        answer = await post_sealed(receiver, sealed, kind=kind)
        assert answer.status_code == 200, (agency, kind, answer.text)
        assert answer.json() == {"status": "accepted", "id": jti, "action": HELD_FOR_REVIEW}
        assert receiver.seen is not None
        receiver.seen.close()


#: A body of each kind as the gateway pushes it, that the adapters taking it can apply.
BODIES: dict[str, dict[str, Any]] = {
    "level_change": {
        "nominal_id": NOMINAL,
        "old_level": 1,
        "level": 2,
        "changed_on": "2026-12-01",
    },
    "minutes": {
        "minutes": {
            "meeting_id": str(uuid.uuid4()),
            "nominal_id": NOMINAL,
            "meeting_type": "level_2",
            "held_on": "2026-12-01",
            "conclusions": [{"id": "c1", "text": "Refer to the approved premises."}],
            "actions": [],
        }
    },
    "record": {
        "record": {
            "id": str(uuid.uuid4()),
            "nominal_id": NOMINAL,
            "kind": "risk_assessment",
            "owner_agency_id": "barnet-probation",
            "created_at": "2026-12-01T09:00:00Z",
            "summary": "Risk to children raised.",
            "caveats": [],
        }
    },
    "hazard_flag": _flag("FAM-20931"),
    "warning_marker": {
        "marker_id": str(uuid.uuid4()),
        "uprn": "200004512345",
        "marker": "PWM",
        "review_date": "2027-03-01",
    },
    REVOCATION: {
        "marker_id": str(uuid.uuid4()),
        "uprn": "200004512345",
        "marker": "PWM",
        "revoked": True,
    },
}


def _stores(tmp_path: Path) -> dict[type[Adapter], JsonStore]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SAMPLES / "ics_store.json", tmp_path / "ics.json")
    shutil.copyfile(SAMPLES / "housing_store.json", tmp_path / "housing.json")
    return {
        PoliceAdapter: JsonStore(tmp_path / "police.json"),
        ProbationAdapter: JsonStore(tmp_path / "probation.json"),
        ChildrensServicesAdapter: JsonStore(tmp_path / "ics.json"),
        HousingAdapter: JsonStore(tmp_path / "housing.json"),
    }


def test_each_adapter_takes_every_kind_it_accepts(tmp_path: Path) -> None:
    """What ``accepts`` lists, ``receive`` applies or files: it never answers a kind it lists
    ``kind_not_handled`` (which would hold every such delivery)."""
    for adapter_class, store in _stores(tmp_path).items():
        adapter: Adapter = adapter_class(store)  # type: ignore[call-arg]
        for kind in sorted(adapter.accepts):
            delivery = Delivery(str(uuid.uuid4()), kind, BODIES[kind], StandInGateway.ISSUER, 1)
            try:
                receipt = adapter.receive(delivery)
            except MappingRefused as exc:
                pytest.fail(f"{adapter_class.__name__} refused {kind}: {exc.code}")
            assert receipt.message_id == delivery.message_id


async def test_police_keep_a_record_shared_on_a_nominal_they_lead(tmp_path: Path) -> None:
    """A pushed record reaches the police system as a shared record of the nominal: its
    reference, kind, owner, summary and caveats, not its content."""
    gateway, identity = StandInGateway(), AgencyIdentity.generate("barnet-police")
    store = JsonStore(tmp_path / "police.json")
    receiver = Receiver(
        identity,
        PoliceAdapter(store),
        gateway.ISSUER,
        gateway_keys=gateway.keys(),
        clock=lambda: NOW,
        seen=SeenDeliveries(tmp_path / "seen-deliveries.sqlite3"),
    )
    shared = {**BODIES["record"]["record"], "content": [{"id": "i1", "text": "SENTINEL"}]}
    jti, sealed = gateway.push(identity, "record", {"record": shared}, iat=NOW)
    answer = await post_sealed(receiver, sealed, kind="record")
    assert answer.status_code == 200 and answer.json()["action"] == "record_recorded"
    kept = store.get("shared_records", shared["id"])
    assert kept is not None and kept["summary"] == shared["summary"] and kept["message_id"] == jti
    assert "SENTINEL" not in store.path.read_text()


@pytest.mark.parametrize(
    "adapter", [PoliceAdapter, ProbationAdapter, ChildrensServicesAdapter, HousingAdapter]
)
async def test_an_erasure_notice_is_kept_for_a_person_by_every_shipped_adapter(
    tmp_path: Path, adapter: type[Adapter]
) -> None:
    """The gateway erased a nominal's case data and tells each agency that held it: no shipped
    adapter takes ``erasure`` itself, so the receiver keeps the notice for a person (200
    ``held_for_review``, code ``erasure_notice``, on disk across a restart), never refuses it
    (a 422 would have it dead-lettered and the agency never told); nothing is written to the
    agency's system, and a redelivery is a duplicate."""
    assert ERASURE_KIND not in adapter.accepts
    gateway = StandInGateway()
    identity = AgencyIdentity.generate("barnet-partner")
    store = _stores(tmp_path)[adapter]
    before = store.path.read_text() if store.path.exists() else None

    def receiver() -> Receiver:
        return Receiver(
            identity,
            adapter(store),  # type: ignore[call-arg]
            gateway.ISSUER,
            gateway_keys=gateway.keys(),
            clock=lambda: NOW,
            seen=SeenDeliveries(tmp_path / "state" / "seen-deliveries.sqlite3"),
        )

    body = {"nominal_id": NOMINAL, "reason": "retention_period_ended"}
    jti, sealed = gateway.push(identity, ERASURE_KIND, body, iat=NOW)
    first = receiver()
    answer = await post_sealed(first, sealed, kind=ERASURE_KIND)
    assert answer.status_code == 200
    assert answer.json() == {"status": "accepted", "id": jti, "action": HELD_FOR_REVIEW}
    assert first.seen is not None
    first.seen.close()

    restarted = receiver()
    [held] = restarted.held_deliveries()
    assert (held.jti, held.kind, held.code) == (jti, ERASURE_KIND, ERASURE_NOTICE)
    assert restarted.open_held(jti).body == body
    assert (store.path.read_text() if store.path.exists() else None) == before
    again = await post_sealed(restarted, sealed, kind=ERASURE_KIND)
    assert again.json() == {"status": "duplicate", "id": jti}
    await restarted.dismiss(jti)  # the person acted on it under the agency's own rules
    assert restarted.held_deliveries() == []
