"""Push one sealed message to a partner's registered endpoint, and say what happened.

Transport policy, all of it here:

* TLS with an SSL context that trusts **only** the partner's registered CA (``endpoint_ca_pem``),
  never the system store; an optional client certificate (mutual TLS) from the settings;
* ``POST`` with ``Content-Type: application/jose``, ``Idempotency-Key`` = the message id and
  ``MAPPA-Message-Kind``; the body is the JWE sealed at enqueue, never anything in clear (the
  kind and a message id, ``jti``, are signed inside it: a partner acts on those, not on the
  headers, and answers a ``jti`` it already applied with a 2xx ``duplicate``);
* redirects are not followed (a 3xx is a failure), proxies from the environment are ignored;
* connect, read and overall deadlines, and at most ``max_response_bytes`` of an answer read;
* only a 2xx is an acknowledgement. Everything else is a :class:`PushResult` with a stable code,
  and every httpx transport error is mapped to one (:data:`TRANSPORT_CODES`).

Each push judges the stored endpoint as its registration did
(:func:`gateway.partner_urls.check_partner_url`), so a row written before a check was tightened,
or edited in the database, is refused (``endpoint_invalid``) before any connection: no link-local
or metadata address, no credentials, the loopback in the development profile only. Plain
``http://`` endpoints are refused unless the development-only ``unsafe_plain_http`` allowance is
on and the endpoint is on the loopback interface (a test against a plain-http stub; the demo's
stand-in systems serve https with their own development CAs).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import re
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from gateway.contract.envelope import JOSE_MEDIA_TYPE
from gateway.logs import get_logger
from gateway.partner_urls import PartnerUrlRefused, check_partner_url

__all__ = [
    "TRANSPORT_CODES",
    "Endpoint",
    "PushConfig",
    "PushResult",
    "Pusher",
    "partner_ssl_context",
    "transport_code",
]

log = get_logger("gateway.delivery")

#: httpx transport errors and the code each becomes (most specific first).
TRANSPORT_CODES: tuple[tuple[type[httpx.TransportError], str], ...] = (
    (httpx.ConnectTimeout, "connect_timeout"),
    (httpx.ReadTimeout, "read_timeout"),
    (httpx.WriteTimeout, "write_timeout"),
    (httpx.PoolTimeout, "pool_timeout"),
    (httpx.TimeoutException, "timeout"),
    (httpx.ConnectError, "connect_failed"),
    (httpx.ReadError, "connection_reset"),
    (httpx.WriteError, "connection_reset"),
    (httpx.CloseError, "connection_reset"),
    (httpx.NetworkError, "network_error"),
    (httpx.RemoteProtocolError, "protocol_error"),
    (httpx.LocalProtocolError, "protocol_error"),
    (httpx.ProtocolError, "protocol_error"),
    (httpx.ProxyError, "proxy_error"),
    (httpx.UnsupportedProtocol, "endpoint_invalid"),
    (httpx.TransportError, "transport_error"),
)

#: Retry-After in seconds: ASCII digits (``str.isdigit`` also passes "\u00b2", which ``float``
#: refuses), at most nine (over thirty years; the backoff's cap bounds the wait anyway).
_DELAY_SECONDS = re.compile(r"[0-9]{1,9}")
#: The longest ``Retry-After`` taken from a partner, in either form (the nine digits' most).
_MAX_RETRY_AFTER = 999_999_999.0


def transport_code(exc: httpx.TransportError) -> str:
    """The stable code of an httpx transport error (TLS failures are told apart)."""
    if isinstance(exc, httpx.ConnectError) and isinstance(exc.__context__, ssl.SSLError):
        return "tls_failed"
    if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return "tls_failed"
    for cls, code in TRANSPORT_CODES:
        if isinstance(exc, cls):
            return code
    return "transport_error"  # pragma: no cover - TransportError is the last row


@dataclass(frozen=True, slots=True)
class PushConfig:
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    #: The whole exchange, however slowly a partner trickles bytes.
    total_timeout: float = 20.0
    max_response_bytes: int = 65_536
    #: Connections to one partner at once (what one slow partner can tie up).
    partner_concurrency: int = 4
    client_cert_file: str | None = None
    client_key_file: str | None = None
    #: Development only: allow ``http://`` to a loopback endpoint (tests with plain stubs).
    unsafe_plain_http: bool = False
    #: The development profile: a loopback endpoint may be pushed to, as it may be registered
    #: (:func:`gateway.partner_urls.check_partner_url`).
    development: bool = False
    user_agent: str = "mappa-gateway-relay"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to reach one partner (from its ``Agency`` row)."""

    agency_id: str
    url: str
    ca_pem: str | None

    @property
    def fingerprint(self) -> str:
        material = f"{self.url}\n{self.ca_pem or ''}".encode()
        return hashlib.sha256(material).hexdigest()


@dataclass(frozen=True, slots=True)
class PushResult:
    ok: bool
    code: str
    status: int | None = None
    #: Seconds the partner asked us to wait (``Retry-After`` on 429/503), capped by the caller.
    retry_after: float | None = None
    elapsed: float = 0.0


def partner_ssl_context(
    ca_pem: str, *, client_cert_file: str | None = None, client_key_file: str | None = None
) -> ssl.SSLContext:
    """A client context that trusts only ``ca_pem`` (never the system store), checks the host
    name, speaks TLS 1.2 or later, and presents the client certificate when given."""
    if not ca_pem:
        raise ValueError("no CA registered for the endpoint")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert_file:
        context.load_cert_chain(client_cert_file, client_key_file)
    return context


def _retry_after(value: str | None) -> float | None:
    """Seconds from a partner's ``Retry-After`` (delay or HTTP date), within
    ``[0, _MAX_RETRY_AFTER]``; None for anything else. A date the datetime library cannot hold
    (a year of eleven digits, a zone offset of days) is anything else, never an exception."""
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return min(float(value), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000": UTC, not this host's local time
            when = when.replace(tzinfo=dt.UTC)
        seconds = when.timestamp() - time.time()
    except (OverflowError, IndexError, ValueError, TypeError, OSError):
        return None
    return min(max(0.0, seconds), _MAX_RETRY_AFTER)


class Pusher:
    """One httpx client per partner endpoint (its own CA, its own connection limit)."""

    def __init__(self, config: PushConfig) -> None:
        self.config = config
        self._clients: dict[str, tuple[str, httpx.AsyncClient]] = {}

    def _ssl_context(self, endpoint: Endpoint) -> ssl.SSLContext:
        return partner_ssl_context(
            endpoint.ca_pem or "",
            client_cert_file=self.config.client_cert_file,
            client_key_file=self.config.client_key_file,
        )

    def _check(self, endpoint: Endpoint) -> str | None:
        """Why ``endpoint`` may not be pushed to, judged at each push as at its registration
        (a row stored before a check was tightened, or edited in the database, is caught)."""
        config = self.config
        try:
            parts = check_partner_url(
                endpoint.url,
                development=config.development or config.unsafe_plain_http,
                http_loopback=config.unsafe_plain_http,
            )
        except PartnerUrlRefused:
            return "endpoint_invalid"
        if parts.scheme == "https" and not endpoint.ca_pem:
            return "endpoint_ca_missing"
        return None

    async def _client(self, endpoint: Endpoint) -> httpx.AsyncClient:
        known = self._clients.get(endpoint.agency_id)
        if known is not None and known[0] == endpoint.fingerprint:
            return known[1]
        client = self._new_client(endpoint)
        # replaced before any await: a delivery starting meanwhile takes this client, never
        # builds a second one (which one of them would then have leaked)
        self._clients[endpoint.agency_id] = (endpoint.fingerprint, client)
        if known is not None:  # the endpoint or its CA changed: the old client goes
            await known[1].aclose()
        return client

    def _new_client(self, endpoint: Endpoint) -> httpx.AsyncClient:
        # the parsed scheme, as _check judged it: "HTTPS://" is https too, never unverified
        verify: ssl.SSLContext | bool = (
            self._ssl_context(endpoint) if urlsplit(endpoint.url).scheme == "https" else False
        )
        if verify is False:
            log.warning("unsafe_plain_http_delivery", agency_id=endpoint.agency_id)
        config = self.config
        client = httpx.AsyncClient(
            verify=verify,
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(
                connect=config.connect_timeout,
                read=config.read_timeout,
                write=config.read_timeout,
                pool=config.total_timeout,
            ),
            limits=httpx.Limits(
                max_connections=config.partner_concurrency,
                max_keepalive_connections=config.partner_concurrency,
            ),
            headers={"User-Agent": config.user_agent},
        )
        return client

    async def push(
        self, endpoint: Endpoint, *, message_id: str, kind: str, body: str
    ) -> PushResult:
        """POST one sealed message; never raises for anything the partner or network does.

        An exception nothing here foresaw (an answer some library chokes on) is the partner's
        failure too, ``partner_error``, logged by its type alone: the relay settles the row and
        retries it with backoff, then dead-letters it, as it does any other failure."""
        started = time.perf_counter()
        refused = self._check(endpoint)
        if refused is not None:
            return PushResult(False, refused)
        try:
            client = await self._client(endpoint)
        except (ValueError, ssl.SSLError, OSError):
            return PushResult(False, "endpoint_ca_invalid")
        try:
            return await self._exchange(client, endpoint, message_id, kind, body, started)
        except Exception as exc:  # whatever the answer did, the row is settled
            log.warning(
                "relay_push_unexpected_error",
                agency_id=endpoint.agency_id,
                message_id=message_id,
                error=type(exc).__name__,
            )
            return PushResult(False, "partner_error", elapsed=time.perf_counter() - started)

    async def _exchange(
        self,
        client: httpx.AsyncClient,
        endpoint: Endpoint,
        message_id: str,
        kind: str,
        body: str,
        started: float,
    ) -> PushResult:
        headers = {
            "Content-Type": JOSE_MEDIA_TYPE,
            "Idempotency-Key": message_id,
            "MAPPA-Message-Kind": kind,
        }
        try:
            async with asyncio.timeout(self.config.total_timeout):
                async with client.stream(
                    "POST", endpoint.url, content=body.encode("ascii"), headers=headers
                ) as response:
                    size = 0
                    async for chunk in response.aiter_raw():
                        size += len(chunk)
                        if size > self.config.max_response_bytes:
                            return PushResult(
                                False,
                                "response_too_large",
                                response.status_code,
                                elapsed=time.perf_counter() - started,
                            )
        except TimeoutError:
            return PushResult(False, "timeout", elapsed=time.perf_counter() - started)
        except httpx.TransportError as exc:
            return PushResult(False, transport_code(exc), elapsed=time.perf_counter() - started)
        elapsed = time.perf_counter() - started
        status = response.status_code
        if 200 <= status < 300:
            return PushResult(True, "delivered", status, elapsed=elapsed)
        if 300 <= status < 400:
            return PushResult(False, "redirect_refused", status, elapsed=elapsed)
        retry_after = (
            _retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
        )
        code = "rate_limited" if status == 429 else f"http_{status // 100}xx"
        return PushResult(False, code, status, retry_after, elapsed)

    async def aclose(self) -> None:
        clients = [client for _, client in self._clients.values()]
        self._clients.clear()
        for client in clients:
            await client.aclose()
