"""``mappa-gateway conformance --adapter DIR``: run a partner's adapter client against the contract.

Where :mod:`gateway.delivery.conformance` checks the partner's webhook (the gateway pushing to
it), this checks the partner's side of the calls it makes: its
:class:`~adapters.identity.AgencyIdentity` (the ``private-jwks.json`` that ``mappa-gateway
partner init`` wrote) driving its :class:`~adapters.client.GatewayClient` (or the partner's own
subclass) against a running gateway, through ``POST /v1/conformance/echo`` (a sealed write that
stores no case data). Each check is pass or fail with a line saying why:

1. ``token_private_key_jwt_dpop``: a token from ``private_key_jwt`` with a DPoP proof, of type
   ``DPoP`` and bound to the client's DPoP key (``cnf.jkt``);
2. ``sealed_request_and_response``: a body signed by the agency and encrypted to the gateway is
   accepted, and the sealed answer is opened (the gateway's signature verified);
3. ``idempotent_redelivery``: the same body with the same ``Idempotency-Key`` gets the original
   answer, and the same key with another body is refused (422), not silently accepted;
4. ``bad_signature_refused``: an answer encrypted to the agency but signed by a key the gateway
   never published is refused by the client;
5. ``backpressure``: a 503 with ``Retry-After`` is waited out and the call sent again with the
   same ``Idempotency-Key`` (the first answer is injected here, before the gateway).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from joserfc import jwe, jws
from joserfc.jwk import ECKey

from adapters.client import ContextHeaders, GatewayClient, GatewayResponseError, Opened
from adapters.identity import AgencyIdentity
from gateway.contract.envelope import BODY_TYP, SignedBody
from gateway.delivery.conformance import Check

__all__ = [
    "ECHO_PATH",
    "ClientFactory",
    "Throttle",
    "forged_answer",
    "run_adapter_conformance",
]

ECHO_PATH = "/v1/conformance/echo"
#: What the backpressure check asks the client to wait (seconds).
RETRY_AFTER = 1
#: The context a conformance run states: information sharing under s.325(4), for the
#: purpose of checking the adapter (a purpose allowed for that basis).
DEFAULT_CONTEXT = ContextHeaders("CJA2003-s325-4", "risk-management", "conformance")

ClientFactory = Callable[[AgencyIdentity, str, httpx.AsyncClient], GatewayClient]


@dataclass
class Throttle(httpx.AsyncBaseTransport):
    """A transport that answers the next request to ``path`` with 503 and ``Retry-After`` (the
    gateway never sees it), then passes everything through, noting what the client resent."""

    inner: httpx.AsyncBaseTransport
    path: str = ECHO_PATH
    armed: bool = False
    throttled_at: float | None = None
    throttled_key: str | None = None
    resent: list[tuple[float, str | None]] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == self.path and self.armed:
            self.armed = False
            self.throttled_at = time.monotonic()
            self.throttled_key = request.headers.get("idempotency-key")
            return httpx.Response(
                503,
                headers={"Retry-After": str(RETRY_AFTER), "Content-Type": "application/json"},
                content=b'{"code": "unavailable"}',
                request=request,
            )
        if request.url.path == self.path and self.throttled_at is not None:
            self.resent.append((time.monotonic(), request.headers.get("idempotency-key")))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def forged_answer(identity: AgencyIdentity, issuer: str, gateway_kid: str) -> str:
    """An answer addressed to the agency and encrypted to its key, naming the gateway's signing
    key id, but signed by a key the gateway never published."""
    stranger = ECKey.generate_key("P-256", private=True)
    signed = SignedBody.wrap(
        {"conformance": "forged"},
        iss=issuer.rstrip("/"),
        aud=identity.agency_id,
        now=dt.datetime.now(dt.UTC),
    )
    inner = jws.serialize_compact(
        {"alg": "ES256", "kid": gateway_kid, "typ": BODY_TYP}, signed.model_dump_json(), stranger
    )
    key = ECKey.import_key(identity.encryption_key.as_dict(private=False))
    return jwe.encrypt_compact(
        {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", "kid": key.kid}, inner, key
    )


#: What a refusal's code usually means on the adapter's side.
_HINTS = {
    "invalid_client": "the client assertion is not signed by a key registered for the agency",
    "invalid_dpop_proof": "the request carries no valid DPoP proof",
    "invalid_token": "the access token is not a DPoP-bound token of this gateway",
    "unsupported_media_type": "the body is not application/jose",
    "unreadable_body": "the body is not a JWS inside a JWE sealed to the gateway",
    "idempotency_key_missing": "a write carries no Idempotency-Key",
    "invalid_context": "the MAPPA-Legal-Basis, MAPPA-Purpose or MAPPA-Officer header is wrong",
}


def _refusal(exc: Exception) -> str:
    if isinstance(exc, GatewayResponseError):
        hint = _HINTS.get(exc.code or "")
        return f"refused {exc.status} {exc.code or str(exc)}" + (f": {hint}" if hint else "")
    return f"{type(exc).__name__}: {str(exc)[:120]}"


def _claims(token: str) -> dict[str, object]:
    part = token.split(".")[1]
    value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value if isinstance(value, dict) else {}


async def _token(client: GatewayClient) -> Check:
    name = "token_private_key_jwt_dpop"
    try:
        token = await client.token()
    except (GatewayResponseError, httpx.HTTPError) as exc:
        return Check(name, False, f"no token: {_refusal(exc)}")
    cnf = _claims(token).get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if jkt != client.dpop_key.thumbprint():
        return Check(name, False, "the token is not bound to the client's DPoP key")
    return Check(name, True, "DPoP-bound at+jwt")


async def _sealed(
    client: GatewayClient, context: ContextHeaders, body: dict[str, str], key: str
) -> tuple[Check, str | None]:
    name = "sealed_request_and_response"
    try:
        answer = await client.call("POST", ECHO_PATH, context, body=body, idempotency_key=key)
    except Exception as exc:
        return Check(name, False, _refusal(exc)), None
    if not isinstance(answer, Opened) or answer.body.get("status") != "echoed":
        return Check(name, False, "the sealed answer was not opened"), None
    return Check(name, True, "sealed body accepted, sealed answer opened"), str(answer.body["id"])


async def _redelivery(
    client: GatewayClient,
    context: ContextHeaders,
    body: dict[str, str],
    key: str,
    first_id: str | None,
) -> Check:
    name = "idempotent_redelivery"
    if first_id is None:
        return Check(name, False, "not run: no sealed call succeeded")
    try:
        again = await client.call("POST", ECHO_PATH, context, body=body, idempotency_key=key)
    except Exception as exc:
        return Check(name, False, f"the same key and body: {_refusal(exc)}")
    if not isinstance(again, Opened) or again.body.get("id") != first_id:
        return Check(name, False, "the same key and body did not get the original answer")
    other = {**body, "nonce": uuid.uuid4().hex}
    try:
        await client.call("POST", ECHO_PATH, context, body=other, idempotency_key=key)
    except GatewayResponseError as exc:
        if exc.status == 422:
            return Check(name, True, "original answer replayed; key reuse refused (422)")
        return Check(name, False, f"key reuse with another body: {_refusal(exc)}")
    except Exception as exc:
        return Check(name, False, f"key reuse with another body: {_refusal(exc)}")
    return Check(name, False, "the client accepted an answer to a reused key with another body")


async def _bad_signature(client: GatewayClient, identity: AgencyIdentity, issuer: str) -> Check:
    name = "bad_signature_refused"
    try:
        keys = await client.gateway_keys()
        kid = next((str(k.kid) for k in keys.keys if k.get("use") == "sig"), "gateway")
        forged = forged_answer(identity, issuer, kid)
        await client.open(forged)
    except Exception as exc:
        return Check(name, True, f"refused ({type(exc).__name__})")
    return Check(name, False, "the client accepted an answer signed by an unknown key")


async def _backpressure(
    client: GatewayClient, throttle: Throttle, context: ContextHeaders
) -> Check:
    name = "backpressure"
    key = str(uuid.uuid4())
    throttle.armed = True
    try:
        await client.call(
            "POST",
            ECHO_PATH,
            context,
            body={"conformance": "backpressure", "nonce": uuid.uuid4().hex},
            idempotency_key=key,
        )
    except Exception as exc:
        return Check(name, False, f"gave up on 503 Retry-After: {RETRY_AFTER} ({_refusal(exc)})")
    finally:
        throttle.armed = False
    if throttle.throttled_at is None or not throttle.resent:
        return Check(name, False, "the call never went through the throttle")
    at, resent_key = throttle.resent[0]
    waited = at - throttle.throttled_at
    if resent_key != throttle.throttled_key:
        return Check(name, False, "the retry did not carry the same Idempotency-Key")
    if waited < RETRY_AFTER * 0.9:
        return Check(name, False, f"retried after {waited:.2f}s, before Retry-After")
    return Check(name, True, f"waited out Retry-After: {RETRY_AFTER}, same Idempotency-Key")


async def run_adapter_conformance(
    identity: AgencyIdentity,
    issuer: str,
    *,
    client_factory: ClientFactory = GatewayClient,
    transport: httpx.AsyncBaseTransport | None = None,
    context: ContextHeaders = DEFAULT_CONTEXT,
    verify: str | bool = True,
) -> list[Check]:
    """Run every check against the gateway at ``issuer`` with the partner's client."""
    throttle = Throttle(transport or httpx.AsyncHTTPTransport(verify=verify))
    async with httpx.AsyncClient(transport=throttle, timeout=10.0) as http:
        client = client_factory(identity, issuer, http)
        checks = [await _token(client)]
        body = {"conformance": "echo", "nonce": uuid.uuid4().hex}
        key = str(uuid.uuid4())
        sealed, first_id = await _sealed(client, context, body, key)
        checks.append(sealed)
        checks.append(await _redelivery(client, context, body, key, first_id))
        checks.append(await _bad_signature(client, identity, issuer))
        checks.append(await _backpressure(client, throttle, context))
    return checks
