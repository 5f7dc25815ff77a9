"""What anyone can send the receiver: it holds the agency's *public* encryption key's JWE, so
its contents are hostile until the gateway's signature holds. Each is refused with a 4xx (never
a 500), and nothing is stored."""

from __future__ import annotations

import base64
import datetime as dt

import httpx
import pytest

from adapters.childrens_services import ChildrensServicesAdapter
from adapters.client import GatewayClient
from adapters.compact import MalformedSignature
from adapters.identity import AgencyIdentity
from adapters.receiver import Receiver
from tests.adapters.support import StandInGateway, encrypt_to, post_sealed

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
