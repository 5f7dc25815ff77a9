"""Pure ASGI middleware: request context, header and body limits, response hardening.

:class:`EdgeMiddleware` runs first on every request. It

- gives the request an id (a well-formed ``X-Request-ID`` from the caller is kept, anything else
  replaced), binds it to structlog's contextvars and returns it in ``X-Request-ID``;
- refuses header blocks over the limit (431) and header values with control characters (400);
- refuses a body whose ``Content-Length`` is over the limit (413) before reading any of it, and
  stops a body without one as soon as the limit is crossed (413), so memory stays bounded;
- logs one line per request: method, route, status, duration; never the query string or body.
"""

from __future__ import annotations

import re
import time
import traceback
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import (
    BadHeader,
    GatewayError,
    HeadersTooLarge,
    InternalError,
    KeysUnavailable,
    PayloadTooLarge,
)
from gateway.http.metrics import method_label
from gateway.http.problems import gateway_problem
from gateway.logs import get_logger
from keys import KekUnavailable, KeyStoreError, KeyUnknown, ProfileRefused

__all__ = ["EdgeMiddleware"]

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{8,64}$")
_BAD_HEADER_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
]

log = get_logger("gateway.http")

#: What loading one of the gateway's own key rings raises when the key store is broken: answered
#: 503 ``keys_unavailable`` here, in one place, whatever route or stage asked for the ring.
KEY_STORE_FAILURES = (KeyStoreError, KeyUnknown, KekUnavailable, ProfileRefused)


def _frames(exc: BaseException) -> list[str]:
    frames = traceback.extract_tb(exc.__traceback__)
    return [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}:{f.name}" for f in frames[-8:]]


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = self._request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status_holder: dict[str, int] = {}
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.append(rid_header)
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        try:
            self._check_headers(scope)
            receive = self._limited_receive(scope, receive)
            await self.app(scope, receive, send_wrapper)
        except GatewayError as exc:
            if "status" in status_holder:
                raise
            await self._problem(exc, request_id, send_wrapper)
        except KEY_STORE_FAILURES as exc:
            # The gateway's key store did not load a ring (a damaged or foreign key file, no
            # current key, the KEK): 503, the gateway's fault. The reason names the file, never
            # its content.
            log.error("keys_unavailable", key_error=exc.code, reason=exc.reason[:300])
            if "status" not in status_holder:
                await self._problem(KeysUnavailable(), request_id, send_wrapper)
        except Exception as exc:
            # A bug. Log where it happened (type, file, line), never the message or locals:
            # either may hold case data. The caller gets an opaque 500.
            log.error("unhandled_exception", exc_type=type(exc).__name__, frames=_frames(exc))
            if "status" not in status_holder:
                await self._problem(InternalError(), request_id, send_wrapper)
        finally:
            route = scope.get("route")
            log.info(
                "request",
                method=method_label(scope),
                route=getattr(route, "path", None),
                status=status_holder.get("status"),
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()

    @staticmethod
    def _request_id(scope: Scope) -> str:
        for name, value in scope.get("headers", []):
            if name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
                return str(value.decode())
        return uuid.uuid4().hex

    def _check_headers(self, scope: Scope) -> None:
        total = 0
        for name, value in scope.get("headers", []):
            total += len(name) + len(value) + 4
            if _BAD_HEADER_BYTES.search(value) or _BAD_HEADER_BYTES.search(name):
                raise BadHeader("A header contains control characters")
        if total > self.max_header_bytes:
            raise HeadersTooLarge()
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit() or len(value) > 18:
                    raise BadHeader("Content-Length is not a number")
                if int(value) > self.max_body_bytes:
                    raise PayloadTooLarge()

    def _limited_receive(self, scope: Scope, receive: Receive) -> Receive:
        limit = self.max_body_bytes
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge()
            return message

        return limited

    @staticmethod
    async def _problem(exc: GatewayError, request_id: str, send: Any) -> None:
        response = gateway_problem(exc, request_id)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})
