"""What anyone can send the receiver: it holds the agency's *public* encryption key's JWE, so
its contents are hostile until the gateway's signature holds. Each is refused with a 4xx (never
a 500), and nothing is stored."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest

from adapters.childrens_services import ChildrensServicesAdapter
from adapters.client import GatewayClient
from adapters.compact import MalformedSignature
from adapters.identity import AgencyIdentity
from adapters.receiver import MAX_BODY, Receiver, SeenDeliveries, serve
from tests.adapters.support import StandInGateway, encrypt_to, post_sealed
from tests.gateway.delivery.stub import free_port
from tests.support import body_flood

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
AGENCY = "barnet-childrens-services"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


#: A JWS-shaped plaintext whose protected header is no JSON object (or no usable one).
HOSTILE_HEADERS = [
    pytest.param(_b64(b"[]") + ".e30.AAAA", id="header-is-a-list"),
    pytest.param(_b64(b'"x"') + ".e30.AAAA", id="header-is-a-string"),
    pytest.param(_b64(b"7") + ".e30.AAAA", id="header-is-a-number"),
    pytest.param(_b64(b'{"kid": 7}') + ".e30.AAAA", id="kid-is-not-a-string"),
    pytest.param(_b64(b'{"kid": ["a"]}') + ".e30.AAAA", id="kid-is-a-list"),
    pytest.param(_b64(b"[" * 1000 + b"]" * 1000) + ".e30.AAAA", id="deeply-nested"),
    pytest.param(_b64(b"\xff\xfe") + ".e30.AAAA", id="header-not-utf8"),
    pytest.param("!!!!.e30.AAAA", id="header-not-base64"),
]


def _receiver(gateway: StandInGateway) -> Receiver:
    return Receiver(
        AgencyIdentity.generate(AGENCY),
        ChildrensServicesAdapter(),
        gateway.ISSUER,
        gateway_keys=gateway.keys(),
        clock=lambda: NOW,
        seen=SeenDeliveries.in_memory(),
    )


@pytest.mark.parametrize("plaintext", HOSTILE_HEADERS)
async def test_a_jws_header_that_is_no_json_object_is_a_bad_signature(plaintext: str) -> None:
    """A JWE (to the public key) around a JWS whose header is a list, a string, a nested array
    or names a kid that is not a string: 400 ``bad_signature``, not a 500."""
    receiver = _receiver(StandInGateway())
    response = await post_sealed(receiver, encrypt_to(receiver.identity, plaintext))
    assert response.status_code == 400 and response.json() == {"code": "bad_signature"}
    assert list(receiver.receipts) == []


@pytest.mark.parametrize("plaintext", HOSTILE_HEADERS)
async def test_the_client_refuses_an_answer_whose_jws_header_is_no_json_object(
    plaintext: str,
) -> None:
    """The client opens answers with the same check: MalformedSignature, not AttributeError."""
    gateway = StandInGateway()
    identity = AgencyIdentity.generate(AGENCY)
    async with httpx.AsyncClient() as http:
        client = GatewayClient(identity, gateway.ISSUER, http)
        client._gateway_keys = gateway.keys()
        with pytest.raises(MalformedSignature):
            await client.open(encrypt_to(identity, plaintext))


@pytest.mark.parametrize("typ", ["at+jwt", "JWT", ""])
async def test_a_delivery_the_gateway_signed_as_another_type_is_a_bad_signature(typ: str) -> None:
    """The gateway's token-signing and payload-signing keys look alike in its JWKS: a JWS it
    signed as anything but a body (an access token, say) is 400 ``bad_signature``, not applied,
    though its signature holds; the client refuses such an answer too."""
    gateway = StandInGateway()
    receiver = _receiver(gateway)
    body = {"flag_id": "f-1", "flag": "HZD"}
    _, sealed = gateway.push(receiver.identity, "hazard_flag", body, iat=NOW, typ=typ)
    response = await post_sealed(receiver, sealed)
    assert response.status_code == 400 and response.json() == {"code": "bad_signature"}
    assert list(receiver.receipts) == []
    async with httpx.AsyncClient() as http:
        client = GatewayClient(receiver.identity, gateway.ISSUER, http)
        client._gateway_keys = gateway.keys()
        with pytest.raises(MalformedSignature):
            await client.open(sealed)


class _CountedBody:
    """A body of ``total`` bytes streamed 64 KiB at a time (the last chunk what is left),
    counting what the server pulled."""

    CHUNK = 65536

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            size = min(self.CHUNK, self.total - self.pulled)
            self.pulled += size
            yield b"A" * size


async def _post_streamed(receiver: Receiver, body: _CountedBody, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=receiver.app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://partner.test") as http:
        return await http.post(
            "/mappa/deliveries",
            content=body,
            headers={
                "Content-Type": "application/jose",
                "Idempotency-Key": "7d0f5c1e-0000-4000-8000-00000000000f",
                **headers,
            },
        )


async def test_a_chunked_body_over_the_limit_is_cut_off_as_it_crosses_it() -> None:
    """A 64 MiB chunked body (no Content-Length) is 413 once the limit has been read, not after
    all of it was buffered."""
    receiver = _receiver(StandInGateway())
    body = _CountedBody(64 * 1024 * 1024)
    response = await _post_streamed(receiver, body)
    assert response.status_code == 413 and response.json() == {"code": "payload_too_large"}
    assert body.pulled <= MAX_BODY + body.CHUNK
    assert list(receiver.receipts) == []


@pytest.mark.parametrize("declared", [str(MAX_BODY + 1), "9" * 30])
async def test_a_declared_length_over_the_limit_is_refused_before_reading(declared: str) -> None:
    """A Content-Length over the limit is 413 before a byte of the body is read."""
    receiver = _receiver(StandInGateway())
    body = _CountedBody(64 * 1024 * 1024)
    response = await _post_streamed(receiver, body, **{"Content-Length": declared})
    assert response.status_code == 413 and response.json() == {"code": "payload_too_large"}
    assert body.pulled == 0


async def test_a_body_at_the_limit_is_read_and_judged() -> None:
    """A body of exactly the limit is read whole (and refused for what it is, not its size)."""
    receiver = _receiver(StandInGateway())
    body = _CountedBody(MAX_BODY)
    response = await _post_streamed(receiver, body)
    assert response.status_code == 400 and response.json() == {"code": "bad_signature"}
    assert body.pulled == MAX_BODY


async def test_serve_answers_a_chunked_flood_before_it_is_all_sent() -> None:
    """Over a real socket (uvicorn, h11): a chunked body that never ends is answered 413 while
    the sender is still a few MiB in (socket buffers), not once 64 MiB have been read."""
    receiver = _receiver(StandInGateway())
    port = free_port()
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(receiver, port, started=started, stop=stop))
    try:
        await asyncio.wait_for(started.wait(), 10)
        headers = {
            "Content-Type": "application/jose",
            "Idempotency-Key": "7d0f5c1e-0000-4000-8000-00000000000f",
        }
        sent, answer = await asyncio.to_thread(
            body_flood, port, "/mappa/deliveries", headers=headers
        )
    finally:
        stop.set()
        await task
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    assert sent <= 16 * 1024 * 1024


async def _list_received(receiver: Receiver) -> httpx.Response:
    transport = httpx.ASGITransport(app=receiver.app())
    async with httpx.AsyncClient(transport=transport, base_url="https://partner.test") as http:
        return await http.get("/mappa/received")


async def test_the_received_list_is_off_unless_asked_for_and_bounded() -> None:
    """``GET /mappa/received`` (unauthenticated) is not served by default; served when asked
    for (the demo), it lists the last ``max_receipts`` deliveries, and no more are kept."""
    gateway = StandInGateway()
    receiver = _receiver(gateway)
    assert (await _list_received(receiver)).status_code == 404
    receiver.list_received, receiver.max_receipts = True, 3
    flag = {"flag_id": "f", "hazard_flag": {"child_or_family_ref": "FAM-1", "flag": "HZD"}}
    ids = []
    for _ in range(5):
        jti, sealed = gateway.push(receiver.identity, "hazard_flag", flag, iat=NOW)
        assert (await post_sealed(receiver, sealed)).status_code == 200
        ids.append(jti)
    assert list(receiver.receipts) == ids[2:]
    listed = await _list_received(receiver)
    assert [r["id"] for r in listed.json()] == ids[2:]
