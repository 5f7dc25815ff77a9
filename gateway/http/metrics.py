"""Prometheus metrics of one gateway process: requests, refusals, failures, audit lag.

Labels are route *templates* (``/v1/audit/proof/inclusion``, never a concrete path), methods,
status codes and problem codes: a fixed, small set. No label or value ever carries an id of a
nominal, a record, an officer or an agency, nor anything from a query string or a body.

`MetricsMiddleware` sits outside every other middleware, so it also counts what the edge refuses
(413, 431, 400). It reads the ``code`` of a problem+json response from the first bytes of its
body, which the gateway writes itself (`gateway.http.problems`), and counts it as a refusal (4xx)
or a failure (5xx). The audit and outbox gauges are refreshed from the store when ``/metrics`` is
scraped. The outbox relay's metrics are defined with the relay (`gateway.delivery.metrics`).
"""

from __future__ import annotations

import json
import re
import time
from typing import Final

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.delivery.metrics import RelayMetrics

__all__ = ["GatewayMetrics", "MetricsMiddleware", "method_label"]

_CODE: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PEEK: Final = 4096
UNMATCHED: Final = "<unmatched>"
#: The methods a label or log line names; any other token a client sends (the HTTP parser takes
#: any) is ``OTHER``, so a caller can neither add a time series per made-up method nor write its
#: own text into the metrics and logs.
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER: Final = "OTHER"


def method_label(scope: Scope) -> str:
    """The request's method as metrics and logs name it: one of :data:`METHODS`, else OTHER."""
    method = scope.get("method")
    return method if method in METHODS else OTHER


class GatewayMetrics(RelayMetrics):
    """The process's registry and its metrics (one registry per app, so tests stay apart): the
    outbox relay's, which a relay run inside the process counts into, and the API's."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = Counter(
            "mappa_gateway_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "mappa_gateway_request_duration_seconds",
            "Time to the end of the response, by route template",
            ["route"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "mappa_gateway_refusals",
            "Requests refused (4xx problem responses) by problem code",
            ["code"],
            registry=self.registry,
        )
        self.failures = Counter(
            "mappa_gateway_failures",
            "Requests failed (5xx problem responses) by problem code",
            ["code"],
            registry=self.registry,
        )
        self.audit_unsequenced = Gauge(
            "mappa_gateway_audit_unsequenced_entries",
            "Audit entries written but not yet in a signed checkpoint",
            registry=self.registry,
        )
        self.audit_oldest_age = Gauge(
            "mappa_gateway_audit_oldest_unsequenced_age_seconds",
            "Age of the oldest audit entry not yet in a signed checkpoint (0 when none)",
            registry=self.registry,
        )
        self.audit_tree_size = Gauge(
            "mappa_gateway_audit_tree_size",
            "Entries covered by the latest signed audit checkpoint",
            registry=self.registry,
        )
        self.audit_integrity_alert = Gauge(
            "mappa_gateway_audit_integrity_alert",
            "Whether this process's audit sequencer is refusing to sign because the log no "
            "longer matches its signed checkpoint or the checkpoint witness: 1 yes, 0 no (log "
            "event audit_integrity_alert)",
            registry=self.registry,
        )
        self.audit_witness_unwritable = Gauge(
            "mappa_gateway_audit_witness_unwritable",
            "Whether this process's audit sequencer could not write its last checkpoint to the "
            "checkpoint witness file (MAPPA_AUDIT_CHECKPOINT_FILE): 1 yes, 0 no (log event "
            "audit_checkpoint_witness_unwritable)",
            registry=self.registry,
        )
        self.audit_integrity_refusals = Gauge(
            "mappa_gateway_audit_integrity_refusals",
            "Audit sequencer steps this process refused for integrity since it started",
            registry=self.registry,
        )
        self.client_cert_ignored = Counter(
            "mappa_gateway_client_cert_ignored",
            "Client-Cert headers dropped because the peer is not a trusted proxy (a proxy left "
            "out of MAPPA_TRUSTED_PROXIES, or a forged header)",
            registry=self.registry,
        )


def _problem_code(body: bytes) -> str:
    try:
        code = json.loads(body.decode("utf-8")).get("code")
    except (UnicodeDecodeError, ValueError, AttributeError):
        return "unparsed"
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "other"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen: dict[str, object] = {"status": 500, "problem": False}
        peek = bytearray()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        seen["problem"] = value.startswith(b"application/problem+json")
            elif message["type"] == "http.response.body" and seen["problem"]:
                if len(peek) < _PEEK:
                    peek.extend(message.get("body", b"")[: _PEEK - len(peek)])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            status = int(str(seen["status"]))
            self.metrics.requests.labels(route, method_label(scope), str(status)).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - started)
            if seen["problem"]:
                code = _problem_code(bytes(peek))
                (self.metrics.failures if status >= 500 else self.metrics.refusals).labels(
                    code
                ).inc()
