"""End to end: the gateway seals a hazard flag, the relay pushes it over TLS to the children's
services receiver on 127.0.0.1, which verifies, opens and writes HZD with no details.

And the receiver acts only on what the gateway signed: a captured delivery replayed under a
fresh ``Idempotency-Key`` is a duplicate, a ``MAPPA-Message-Kind`` header that disagrees with
the signed kind is refused, a body signed too long ago is refused; a genuine revocation works.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import shutil
import sqlite3
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import KeySet

from adapters.childrens_services import ChildrensServicesAdapter
from adapters.demo import demo_receiver, standin_path
from adapters.housing import REVOCATION, HousingAdapter
from adapters.identity import AgencyIdentity
from adapters.receiver import PUSH_MAX_AGE, Receiver, SeenDeliveries, serve
from adapters.standin import JsonStore
from gateway.agencies import add_agency
from gateway.delivery.endpoints import set_endpoint
from gateway.delivery.push import PushConfig
from gateway.delivery.relay import Relay
from gateway.flow import deliver
from gateway.flow.seal import agency_public_jwks
from gateway.state import GatewayState
from gateway.store.models import OutboxMessage
from tests.adapters.support import StandInGateway, encrypt_to, post_delivery, post_sealed
from tests.gateway.cases.conftest import world
from tests.gateway.cases.scenario import HOUSING, POLICE, at_level_2, level_2_meeting
from tests.gateway.cases.support import World
from tests.gateway.delivery.stub import free_port, make_pki
from tests.gateway.delivery.support import fast_config, until
from tests.support import header_flood

__all__ = ["world"]  # the case API's fixture, shared

SAMPLES = Path(__file__).parent / "samples"
ISSUER = "https://gateway.test"
CS = "barnet-childrens-services"
#: The test partners listen on the loopback, which only the development profile pushes to.
LOOPBACK = PushConfig(development=True)


@pytest.fixture
def state(app: FastAPI) -> GatewayState:
    gateway: GatewayState = app.state.gateway
    return gateway


@pytest.fixture
async def gateway_jwks(client: httpx.AsyncClient) -> KeySet:
    response = await client.get("/.well-known/jwks.json")
    return KeySet.import_key_set(response.json())


@pytest.fixture
async def receiver_setup(
    state: GatewayState, gateway_jwks: KeySet, tmp_path: Path
) -> AsyncIterator[tuple[Receiver, JsonStore, str, str]]:
    identity = AgencyIdentity.generate(CS)
    await add_agency(
        state.db,
        agency_id=CS,
        name="Barnet Children's Services",
        agency_type="childrens_services",
        role="duty_to_cooperate",
        area="barnet",
        scopes=["inbox:read"],
        jwks=identity.public_jwks(),
    )
    shutil.copyfile(SAMPLES / "ics_store.json", tmp_path / "ics.json")
    ics = JsonStore(tmp_path / "ics.json")
    receiver = Receiver(
        identity,
        ChildrensServicesAdapter(ics),
        ISSUER,
        gateway_keys=gateway_jwks,
        clock=state.clock,
        seen=SeenDeliveries(tmp_path / "seen-deliveries.sqlite3"),
    )
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        serve(
            receiver,
            port,
            ssl_certfile=str(pki.cert_file),
            ssl_keyfile=str(pki.key_file),
            started=started,
            stop=stop,
        )
    )
    await asyncio.wait_for(started.wait(), 10)
    url = f"https://127.0.0.1:{port}/mappa/deliveries"
    await set_endpoint(state.db, CS, url=url, ca_pem=pki.ca_pem, development=True)
    try:
        yield receiver, ics, url, pki.ca_pem
    finally:
        stop.set()
        await task


async def _seal_and_enqueue(state: GatewayState, body: dict[str, Any]) -> str:
    """Sealed and queued as a flow does (:func:`gateway.flow.deliver.prepare_push`)."""
    assert state.sealer is not None
    now = state.clock()
    async with state.db.write() as session:
        keys = await agency_public_jwks(session, CS, "enc", now)
        push = deliver.prepare_push(
            state.sealer,
            body,
            recipient_id=CS,
            keys=keys,
            kind="hazard_flag",
            nominal_ref=None,
            now=now,
        )
        return await deliver.enqueue(session, push, now=now)


async def test_serve_refuses_an_endless_header_block_as_it_arrives(
    receiver_setup: tuple[Receiver, JsonStore, str, str],
) -> None:
    """The receiver's serve() bounds the header block (h11 with 16 KiB), as the gateway does:
    the answer comes before 1 MiB has gone, and nothing was applied."""
    receiver, _, url, ca_pem = receiver_setup
    tls = ssl.create_default_context(cadata=ca_pem)
    port = int(url.split(":")[2].split("/")[0])
    sent, answer = await asyncio.to_thread(header_flood, port, "/mappa/deliveries", tls=tls)
    assert answer.startswith(b"HTTP/1.1 4"), answer[:80]
    assert sent <= 1024 * 1024
    assert receiver.receipts == {}


async def test_hazard_flag_arrives_as_hzd_with_no_details(
    state: GatewayState, receiver_setup: tuple[Receiver, JsonStore, str, str]
) -> None:
    """Sealed at the gateway, pushed over TLS, opened by the adapter: HZD, nothing else."""
    receiver, ics, _, _ = receiver_setup
    flag = json.loads((SAMPLES / "hazard_flag_delivery.json").read_text())
    mid = await _seal_and_enqueue(state, flag)
    relay = Relay(state.db, fast_config())
    try:

        async def delivered() -> bool:
            await relay.sweep()
            await relay.drain(5)
            async with state.db.read() as session:
                row = await session.get(OutboxMessage, mid)
                return row is not None and row.status == "delivered"

        await until(delivered)
    finally:
        await relay.stop()
    record = ics.get("ics_records", "FAM-20931")
    assert record is not None
    [alert] = record["alerts"]
    assert alert["code"] == "HZD" and alert["message_id"] == mid
    assert receiver.receipts[mid].action == "hzd_alert_written"


async def test_receiver_refuses_a_body_not_signed_by_the_gateway(
    receiver_setup: tuple[Receiver, JsonStore, str, str],
) -> None:
    """A JWE to the agency's key around a JWS by someone else is 400 and stores nothing."""
    from joserfc import jws
    from joserfc.jwk import ECKey

    receiver, _ics, url, ca_pem = receiver_setup
    forger = ECKey.generate_key("P-256", private=True)
    payload = json.dumps({"iss": ISSUER, "aud": CS, "iat": 0, "jti": "x" * 10, "body": {}})
    inner = jws.serialize_compact(
        {"alg": "ES256", "kid": "gateway-lookalike", "typ": "mappa-body+jwt"}, payload, forger
    )
    compact = encrypt_to(receiver.identity, inner)  # to its public key, named by its kid
    import ssl

    async with httpx.AsyncClient(verify=ssl.create_default_context(cadata=ca_pem)) as http:
        response = await http.post(
            url,
            content=compact,
            headers={
                "Content-Type": "application/jose",
                "Idempotency-Key": "7d0f5c1e-0000-4000-8000-00000000000f",
            },
        )
    assert response.status_code == 400 and response.json()["code"] == "bad_signature"
    assert receiver.receipts == {}


async def test_conformance_passes_against_the_reference_receiver(
    state: GatewayState, receiver_setup: tuple[Receiver, JsonStore, str, str]
) -> None:
    """The mock agency receiver meets every check of ``mappa-gateway conformance``."""
    from gateway.delivery.conformance import run_conformance

    receiver, _ics, url, ca_pem = receiver_setup
    assert state.sealer is not None
    async with state.db.read() as session:
        keys = await agency_public_jwks(session, CS, "enc", state.clock())
    checks = await run_conformance(
        agency_id=CS,
        url=url,
        ca_pem=ca_pem,
        recipient_keys=keys,
        sealer=state.sealer,
        config=LOOPBACK,
    )
    assert {c.name: c.passed for c in checks} == {
        "sealed_delivery": True,
        "idempotent_redelivery": True,
        "replay_new_key_not_reapplied": True,
        "kind_mismatch_refused": True,
        "stale_refused": True,
        "bad_signature_refused": True,
        "plain_json_refused": True,
        "missing_idempotency_key_refused": True,
        "backpressure": True,
    }
    assert len(receiver.receipts) == 1  # the redelivery and the replay were applied once


async def test_conformance_fails_a_partner_that_accepts_anything(
    state: GatewayState, tmp_path: Path
) -> None:
    """An endpoint that answers 200 to a forged signature and to plain JSON fails those checks."""
    from gateway.delivery.conformance import run_conformance
    from tests.gateway.delivery.stub import PartnerStub

    identity = AgencyIdentity.generate("lax-partner")
    pki = make_pki(tmp_path / "pki")
    stub = await PartnerStub(pki=pki).start()
    assert state.sealer is not None
    try:
        checks = await run_conformance(
            agency_id="lax-partner",
            url=stub.url,
            ca_pem=pki.ca_pem,
            recipient_keys=identity.public_jwks()["keys"],
            sealer=state.sealer,
            config=LOOPBACK,
        )
    finally:
        await stub.stop()
    failed = {c.name for c in checks if not c.passed}
    assert failed == {
        "replay_new_key_not_reapplied",
        "kind_mismatch_refused",
        "stale_refused",
        "bad_signature_refused",
        "plain_json_refused",
        "missing_idempotency_key_refused",
    }


# -- the receiver acts only on what the gateway signed ----------------------------------------

UPRN = "200004512345"
MARKER = "warning_marker"


def _housing(
    world: World,
    tmp_path: Path,
    *,
    seen: SeenDeliveries | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> tuple[Receiver, JsonStore]:
    """Housing's receiver and stand-in system, holding the property the markers are for."""
    store = JsonStore(tmp_path / "housing.json")
    if store.get("properties", UPRN) is None:
        store.put("properties", UPRN, {"uprn": UPRN, "address": "1 Demo Close", "markers": []})
    receiver = Receiver(
        world[HOUSING].identity,
        HousingAdapter(store),
        ISSUER,
        clock=clock or world.clock,
        seen=seen if seen is not None else SeenDeliveries.in_memory(),
    )
    return receiver, store


async def _trust_gateway(world: World, receiver: Receiver) -> Receiver:
    response = await world.http.get("/.well-known/jwks.json")
    receiver.gateway_keys = KeySet.import_key_set(response.json())
    return receiver


async def _raise_marker(world: World) -> tuple[str, OutboxMessage]:
    """Police raise a property warning marker for housing (which attended the meeting, so it
    may know of the nominal); the marker id and its outbox row."""
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id, {HOUSING: "attended"})
    answer = await world[POLICE].post(
        "/v1/warning-markers",
        {
            "nominal_id": nominal_id,
            "recipient_agency_id": HOUSING,
            "uprn": UPRN,
            "marker": "PWM",
            "contact": {"role": "mappa_unit", "telephone": "020 8000 0000"},
            "review_date": "2027-02-23",
        },
    )
    [row] = [r for r in await world.outbox(HOUSING) if r.kind == MARKER]
    return str(answer["id"]), row


def _markers(store: JsonStore) -> list[str]:
    prop = store.get("properties", UPRN)
    assert prop is not None
    return [str(m["marker_id"]) for m in prop["markers"]]


async def test_a_push_signs_its_kind_and_its_message_id(world: World) -> None:
    """The gateway signs the kind and the message id (``jti``, the outbox id) with the body."""
    _, row = await _raise_marker(world)
    signed, _ = await world[HOUSING].client.open(row.body)  # the gateway's signature checked
    assert (signed.kind, signed.jti) == (MARKER, row.id)


async def test_a_replay_under_a_fresh_key_is_not_applied_again(
    world: World, tmp_path: Path
) -> None:
    """Marker delivered, then genuinely revoked: the captured marker, re-posted under a fresh
    Idempotency-Key, is acknowledged as a duplicate (the relay stops) and does not come back."""
    receiver, store = _housing(world, tmp_path)
    await _trust_gateway(world, receiver)
    marker_id, row = await _raise_marker(world)
    first = await post_delivery(receiver, row)
    assert first.status_code == 200 and first.json()["action"] == "warning_marker_written"
    await world[POLICE].post(
        f"/v1/warning-markers/{marker_id}/revocation", {"reason": "review_completed"}
    )
    [revocation] = [r for r in await world.outbox(HOUSING) if r.kind == REVOCATION]
    removed = await post_delivery(receiver, revocation)
    assert removed.status_code == 200 and removed.json()["action"] == "warning_marker_removed"
    assert _markers(store) == []

    for key in (str(uuid.uuid4()), str(uuid.uuid4()), row.id):
        replay = await post_delivery(receiver, row, key=key)
        assert replay.status_code == 200
        assert replay.json() == {"status": "duplicate", "id": row.id}
    assert _markers(store) == []  # the revoked marker was not written again
    assert set(receiver.receipts) == {row.id, revocation.id}


async def test_a_header_kind_that_disagrees_with_the_signed_kind_is_refused(
    world: World, tmp_path: Path
) -> None:
    """A captured warning marker re-posted as ``warning_marker_revocation`` is 400 and removes
    nothing, before the genuine delivery (nothing applied, the genuine one then still applies)
    and after it (the marker stays)."""
    receiver, store = _housing(world, tmp_path)
    await _trust_gateway(world, receiver)
    marker_id, row = await _raise_marker(world)

    early = await post_delivery(receiver, row, key=str(uuid.uuid4()), kind=REVOCATION)
    assert early.status_code == 400 and early.json() == {"code": "kind_mismatch"}
    assert receiver.receipts == {} and _markers(store) == []

    genuine = await post_delivery(receiver, row)
    assert genuine.status_code == 200 and genuine.json()["action"] == "warning_marker_written"
    assert _markers(store) == [marker_id]

    swapped = await post_delivery(receiver, row, key=str(uuid.uuid4()), kind=REVOCATION)
    assert swapped.status_code == 400 and swapped.json() == {"code": "kind_mismatch"}
    assert _markers(store) == [marker_id]
    assert [r.kind for r in await world.outbox(HOUSING)] == [MARKER]  # nothing was revoked


async def test_a_stale_signed_push_is_refused(world: World, tmp_path: Path) -> None:
    """A body signed longer ago than the push window is 400 ``stale`` and applied nowhere; one
    already applied is still a duplicate then (acknowledged, not refused); one dated ahead of
    the receiver's clock is refused too."""
    marker_id, row = await _raise_marker(world)
    late = PUSH_MAX_AGE + dt.timedelta(minutes=1)
    receiver, store = _housing(world, tmp_path, clock=lambda: world.clock.now + late)
    await _trust_gateway(world, receiver)
    stale = await post_delivery(receiver, row)
    assert stale.status_code == 400 and stale.json() == {"code": "stale"}
    assert receiver.receipts == {} and _markers(store) == []

    early, _ = _housing(world, tmp_path, clock=lambda: world.clock.now - dt.timedelta(hours=1))
    await _trust_gateway(world, early)
    ahead = await post_delivery(early, row)
    assert ahead.status_code == 400 and ahead.json() == {"code": "stale"}

    seen = SeenDeliveries.in_memory()
    current, _ = _housing(world, tmp_path, seen=seen)
    assert (await post_delivery(await _trust_gateway(world, current), row)).status_code == 200
    assert _markers(store) == [marker_id]
    later, _ = _housing(world, tmp_path, seen=seen, clock=lambda: world.clock.now + late)
    again = await post_delivery(await _trust_gateway(world, later), row)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"


async def test_the_ids_applied_survive_a_restart(world: World, tmp_path: Path) -> None:
    """The applied ids are kept on disk: after a restart the replay is still a duplicate."""
    path = tmp_path / "state" / "seen-deliveries.sqlite3"
    marker_id, row = await _raise_marker(world)
    before, store = _housing(world, tmp_path, seen=SeenDeliveries(path))
    assert (await post_delivery(await _trust_gateway(world, before), row)).status_code == 200
    assert _markers(store) == [marker_id]
    before.seen.close()
    prop = store.get("properties", UPRN)
    assert prop is not None
    store.put("properties", UPRN, {**prop, "markers": []})  # taken off by hand since

    after, _ = _housing(world, tmp_path, seen=SeenDeliveries(path))
    replay = await post_delivery(await _trust_gateway(world, after), row, key=str(uuid.uuid4()))
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert _markers(store) == [] and after.receipts == {}


async def test_a_receiver_is_not_built_to_forget_what_it_applied(tmp_path: Path) -> None:
    """A receiver needs a durable store of the ids it applied (memory only when a test says so
    in so many words); the demo's receivers keep theirs beside their stand-in systems, so a
    push replayed after a restart is a duplicate, and not applied again."""
    gateway = StandInGateway()
    identity = AgencyIdentity.generate(HOUSING)
    with pytest.raises(ValueError, match="SeenDeliveries"):
        Receiver(identity, HousingAdapter(), gateway.ISSUER, gateway_keys=gateway.keys())
    with pytest.raises(TypeError):
        SeenDeliveries()  # type: ignore[call-arg]
    assert not SeenDeliveries.in_memory().durable

    identity.save(tmp_path / "agencies" / HOUSING)
    now = dt.datetime.now(dt.UTC)
    body = {"marker_id": str(uuid.uuid4()), "uprn": "200004512345", "marker": "PWM"}
    _, sealed = gateway.push(identity, MARKER, body, iat=now - dt.timedelta(minutes=1))
    before = demo_receiver(tmp_path, HOUSING, gateway.ISSUER)
    before.gateway_keys = gateway.keys()
    first = await post_sealed(before, sealed, kind=MARKER)
    assert first.status_code == 200 and first.json()["action"] == "warning_marker_written"
    assert before.seen is not None and before.seen.durable
    before.seen.close()
    store = JsonStore(standin_path(tmp_path, HOUSING))
    prop = store.get("properties", "200004512345")
    assert prop is not None
    store.put("properties", "200004512345", {**prop, "markers": []})  # taken off by hand since

    after = demo_receiver(tmp_path, HOUSING, gateway.ISSUER)  # the demo restarted
    after.gateway_keys = gateway.keys()
    replay = await post_sealed(after, sealed, kind=MARKER)
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert (store.get("properties", "200004512345") or {})["markers"] == []


class _CountingSeen(SeenDeliveries):
    """A store that counts its prunings."""

    prunings = 0

    def forget_before(self, iat: int) -> None:
        self.prunings += 1
        super().forget_before(iat)


async def _push_marker(world: World, receiver: Receiver) -> httpx.Response:
    """A new warning marker for housing, sealed by the gateway now, posted as the relay would."""
    assert world.state.sealer is not None
    now = world.clock.now
    async with world.state.db.read() as session:
        keys = await agency_public_jwks(session, HOUSING, "enc", now)
    body = {
        "marker_id": str(uuid.uuid4()),
        "uprn": UPRN,
        "marker": "PWM",
        "contact": {"role": "mappa_unit", "telephone": "020 8359 0000"},
    }
    push = deliver.prepare_push(
        world.state.sealer,
        body,
        recipient_id=HOUSING,
        keys=keys,
        kind=MARKER,
        nominal_ref=None,
        now=now,
    )
    row = OutboxMessage(id=push.message_id, kind=MARKER, body=push.sealed.jwe)  # not stored
    return await post_delivery(receiver, row)


async def test_the_applied_ids_are_pruned_at_most_once_per_interval(
    world: World, tmp_path: Path
) -> None:
    """Ids kept past their retention (twice the push window) are dropped at the first delivery
    applied, then at the first one ``prune_every`` or more after the last pruning (or after the
    clock went back), never on every delivery; ids within their retention stay."""
    seen = _CountingSeen(tmp_path / "seen-deliveries.sqlite3")
    receiver, _ = _housing(world, tmp_path, seen=seen)
    receiver.prune_every = dt.timedelta(minutes=10)
    await _trust_gateway(world, receiver)

    def expired() -> str:
        jti = str(uuid.uuid4())
        issued = world.clock.now - 2 * PUSH_MAX_AGE - dt.timedelta(seconds=1)
        seen.remember(jti, iat=int(issued.timestamp()), action="warning_marker_written")
        return jti

    old = expired()
    assert (await _push_marker(world, receiver)).status_code == 200
    assert (seen.prunings, seen.action(old)) == (1, None)
    old = expired()
    for minutes in (5, 4.9):  # 9.9 minutes after the pruning
        world.clock.advance(minutes=minutes)
        assert (await _push_marker(world, receiver)).status_code == 200
    assert (seen.prunings, seen.action(old)) == (1, "warning_marker_written")
    world.clock.advance(minutes=0.1)
    assert (await _push_marker(world, receiver)).status_code == 200
    assert (seen.prunings, seen.action(old)) == (2, None)
    world.clock.advance(minutes=-1)  # the clock set back: prune again, then wait from there
    for _ in range(2):
        assert (await _push_marker(world, receiver)).status_code == 200
    assert seen.prunings == 3
    assert len(receiver.receipts) == 6
    assert all(seen.action(jti) == "warning_marker_written" for jti in receiver.receipts)


def _columns(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [row[1] for row in db.execute("PRAGMA table_info(seen_deliveries)")]


def test_the_store_keeps_each_id_with_its_iat_and_action_only(tmp_path: Path) -> None:
    """What is read (the action of a duplicate, the ``iat`` pruning goes by), nothing else."""
    path = tmp_path / "seen.sqlite3"
    SeenDeliveries(path).close()
    assert _columns(path) == ["jti", "iat", "action"]


def test_a_store_file_of_the_first_version_is_used_as_it_is(tmp_path: Path) -> None:
    """A file written when the store also kept each id's kind and when it was seen (never
    read) still dedupes, remembers and prunes, its columns untouched."""
    path = tmp_path / "seen.sqlite3"
    first = ["jti", "iat", "kind", "action", "seen_at"]
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE seen_deliveries (jti TEXT PRIMARY KEY, iat INTEGER NOT NULL, "
            "kind TEXT NOT NULL, action TEXT NOT NULL, seen_at INTEGER NOT NULL)"
        )
        db.execute(
            "INSERT INTO seen_deliveries VALUES ('jti-applied-earlier', 100, 'warning_marker', "
            "'warning_marker_written', 100)"
        )
        db.commit()
    seen = SeenDeliveries(path)
    assert seen.action("jti-applied-earlier") == "warning_marker_written"
    seen.remember("jti-applied-now", iat=300, action="warning_marker_removed")
    seen.remember("jti-applied-now", iat=300, action="warning_marker_written")  # kept once
    assert seen.action("jti-applied-now") == "warning_marker_removed"
    seen.forget_before(200)
    assert seen.action("jti-applied-earlier") is None
    seen.close()
    assert _columns(path) == first
    reopened = SeenDeliveries(path)
    assert reopened.action("jti-applied-now") == "warning_marker_removed"
    reopened.close()


async def test_a_body_that_signs_no_kind_is_refused(
    state: GatewayState, receiver_setup: tuple[Receiver, JsonStore, str, str]
) -> None:
    """A body the gateway signed without a kind (an answer, say) is never applied as a push."""
    receiver, _ics, _url, _ca = receiver_setup
    assert state.sealer is not None
    now = state.clock()
    async with state.db.read() as session:
        keys = await agency_public_jwks(session, CS, "enc", now)
    flag = json.loads((SAMPLES / "hazard_flag_delivery.json").read_text())
    answer = deliver.seal_answer(state.sealer, flag, recipient_id=CS, keys=keys, now=now)
    row = OutboxMessage(id=str(uuid.uuid4()), kind="hazard_flag", body=answer.jwe)  # not stored
    response = await post_delivery(receiver, row)
    assert response.status_code == 400 and response.json() == {"code": "kind_not_signed"}
    assert receiver.receipts == {}
