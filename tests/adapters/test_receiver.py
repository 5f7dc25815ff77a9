"""End to end: the gateway seals a hazard flag, the relay pushes it over TLS to the children's
services receiver on 127.0.0.1, which verifies, opens and writes HZD with no details."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import KeySet

from adapters.childrens_services import ChildrensServicesAdapter
from adapters.identity import AgencyIdentity
from adapters.receiver import Receiver, serve
from adapters.standin import JsonStore
from gateway.agencies import add_agency
from gateway.delivery import enqueue
from gateway.delivery.endpoints import set_endpoint
from gateway.delivery.relay import Relay
from gateway.flow.seal import agency_public_jwks
from gateway.state import GatewayState
from gateway.store.models import Agency, OutboxMessage
from tests.gateway.delivery.stub import free_port, make_pki
from tests.gateway.delivery.support import fast_config, until

SAMPLES = Path(__file__).parent / "samples"
ISSUER = "https://gateway.test"
CS = "barnet-childrens-services"


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
    receiver = Receiver(identity, ChildrensServicesAdapter(ics), ISSUER, gateway_keys=gateway_jwks)
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
    await set_endpoint(state.db, CS, url=url, ca_pem=pki.ca_pem)
    try:
        yield receiver, ics, url, pki.ca_pem
    finally:
        stop.set()
        await task


async def _seal_and_enqueue(state: GatewayState, body: dict[str, Any]) -> str:
    assert state.sealer is not None
    now = state.clock()
    async with state.db.write() as session:
        recipient = await session.get(Agency, CS)
        assert recipient is not None
        keys = await agency_public_jwks(session, CS, "enc", now)
        jwe, _ = state.sealer.seal(body, recipient=recipient, recipient_keys=keys, now=now)
        return await enqueue(session, recipient_agency_id=CS, kind="hazard_flag", body=jwe)


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
    from joserfc import jwe, jws
    from joserfc.jwk import ECKey

    receiver, _ics, url, ca_pem = receiver_setup
    forger = ECKey.generate_key("P-256", private=True)
    payload = json.dumps({"iss": ISSUER, "aud": CS, "iat": 0, "jti": "x" * 10, "body": {}})
    inner = jws.serialize_compact(
        {"alg": "ES256", "kid": "gateway-lookalike", "typ": "mappa-body+jwt"}, payload, forger
    )
    enc = receiver.identity.encryption_key
    public = ECKey.import_key(enc.as_dict(private=False))
    compact = jwe.encrypt_compact(
        {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT"}, inner, public
    )
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
        agency_id=CS, url=url, ca_pem=ca_pem, recipient_keys=keys, sealer=state.sealer
    )
    assert {c.name: c.passed for c in checks} == {
        "sealed_delivery": True,
        "idempotent_redelivery": True,
        "bad_signature_refused": True,
        "plain_json_refused": True,
        "missing_idempotency_key_refused": True,
        "backpressure": True,
    }
    assert len(receiver.receipts) == 1  # the redelivery was applied once


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
        )
    finally:
        await stub.stop()
    failed = {c.name for c in checks if not c.passed}
    assert failed == {
        "bad_signature_refused",
        "plain_json_refused",
        "missing_idempotency_key_refused",
    }
