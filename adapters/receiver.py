"""A mock agency system's push endpoint: verify, open and store what the gateway delivers.

``POST /mappa/deliveries`` with ``Content-Type: application/jose`` and ``Idempotency-Key``:

1. a key already seen answers 200 ``duplicate`` at once (the relay may deliver twice; the
   partner applies once);
2. the JWE is decrypted with the agency's encryption key and the JWS inside verified against the
   gateway's published signing keys (``ES256`` only); the signed body must come from the gateway
   (``iss``) and be addressed to this agency (``aud``). Anything else is 400 ``bad_signature`` and
   nothing is stored. Freshness is *not* required: a retried delivery may be hours old, and the
   Idempotency-Key plus the body's ``jti`` are what stop a replay;
3. the adapter applies it (:meth:`adapters.sdk.Adapter.receive`), then 200 ``accepted``.

The receiver is a Starlette app, served on 127.0.0.1 by :func:`serve` (uvicorn) for the demo and
the tests; ``GET /mappa/received`` lists what was applied (ids and kinds only).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.identity import AgencyIdentity
from adapters.sdk import Adapter, Delivery, MappingRefused, Receipt
from gateway.contract.envelope import JOSE_MEDIA_TYPE, SignedBody

__all__ = ["DeliveryRefused", "Receiver", "open_delivery", "serve"]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SIGN = JWSRegistry(algorithms=["ES256"])
_ENC = jwe.JWERegistry(algorithms=["ECDH-ES+A256KW", "A256GCM"])
MAX_BODY = 1_048_576


class DeliveryRefused(ValueError):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def open_delivery(
    compact: str, identity: AgencyIdentity, gateway_keys: KeySet, issuer: str
) -> SignedBody:
    """Decrypt with the agency's key, verify the gateway's signature and the addressing."""
    try:
        decrypted = jwe.decrypt_compact(compact, identity.encryption_key, registry=_ENC)
        inner = (decrypted.plaintext or b"").decode("ascii")
        header = json.loads(base64.urlsafe_b64decode(inner.split(".")[0] + "=="))
        key = gateway_keys.get_by_kid(str(header.get("kid", "")))
        verified = jws.deserialize_compact(inner, key, registry=_SIGN)
        signed = SignedBody.model_validate_json(verified.payload)
    except (JoseError, ValueError, UnicodeDecodeError, IndexError) as exc:
        raise DeliveryRefused("bad_signature") from exc
    if signed.iss != issuer.rstrip("/") or signed.aud != identity.agency_id:
        raise DeliveryRefused("misaddressed")
    return signed


@dataclass
class Receiver:
    identity: AgencyIdentity
    adapter: Adapter
    issuer: str
    #: The gateway's public signing keys; fetched from ``jwks_url`` when not given.
    gateway_keys: KeySet | None = None
    jwks_url: str | None = None
    receipts: dict[str, Receipt] = field(default_factory=dict)
    #: Called after each applied delivery (the demo prints a line).
    on_receipt: Callable[[Delivery, Receipt], None] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def keys(self, refresh: bool = False) -> KeySet:
        if self.gateway_keys is None or (refresh and self.jwks_url):
            if not self.jwks_url:
                raise DeliveryRefused("gateway_keys_unknown")
            async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as http:
                response = await http.get(self.jwks_url)
                response.raise_for_status()
            self.gateway_keys = KeySet.import_key_set(response.json())
        return self.gateway_keys

    async def handle(self, request: Request) -> JSONResponse:
        if request.headers.get("content-type", "").split(";")[0].strip() != JOSE_MEDIA_TYPE:
            return JSONResponse({"code": "unsupported_media_type"}, status_code=415)
        key = request.headers.get("idempotency-key", "")
        if not _UUID.match(key):
            return JSONResponse({"code": "idempotency_key_required"}, status_code=400)
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return JSONResponse({"code": "payload_too_large"}, status_code=413)
        async with self._lock:  # one delivery at a time: the dedupe check and the write agree
            if key in self.receipts:
                return JSONResponse({"status": "duplicate", "id": key})
            try:
                compact = raw.decode("ascii").strip()
                try:
                    signed = open_delivery(compact, self.identity, await self.keys(), self.issuer)
                except DeliveryRefused:
                    signed = open_delivery(
                        compact, self.identity, await self.keys(refresh=True), self.issuer
                    )
                delivery = Delivery(
                    key, request.headers.get("mappa-message-kind", ""), signed.body, signed.iss
                )
                receipt = self.adapter.receive(delivery)
            except (DeliveryRefused, UnicodeDecodeError) as exc:
                code = exc.code if isinstance(exc, DeliveryRefused) else "bad_signature"
                return JSONResponse({"code": code}, status_code=400)
            except MappingRefused as exc:
                # Verified but not applicable: accepted for a person to look at, not retried.
                receipt = Receipt(key, "held_for_review", notes=(exc.code,))
            self.receipts[key] = receipt
        if self.on_receipt is not None:
            self.on_receipt(delivery, receipt)
        return JSONResponse({"status": "accepted", "id": key, "action": receipt.action})

    async def received(self, request: Request) -> JSONResponse:
        return JSONResponse(
            [{"id": r.message_id, "action": r.action} for r in self.receipts.values()]
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/mappa/deliveries", self.handle, methods=["POST"]),
                Route("/mappa/received", self.received, methods=["GET"]),
            ]
        )


def _server_class() -> Any:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """Leaves signals to the caller (several receivers share one process)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer


async def serve(
    receiver: Receiver,
    port: int,
    *,
    host: str = "127.0.0.1",
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    started: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``receiver`` until ``stop`` is set (or for ever)."""
    import uvicorn

    _Server = _server_class()
    config = uvicorn.Config(
        receiver.app(),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        lifespan="off",
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # uvicorn has no started event: poll it for up to 10 s
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    if started is not None:
        started.set()
    if stop is None:
        await task
        return
    await stop.wait()
    server.should_exit = True
    await task
