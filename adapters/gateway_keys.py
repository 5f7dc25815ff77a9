"""The gateway's published keys, as a partner fetches them: seldom and bounded.

A delivery names the key it was signed with (the JWS ``kid``); the receiver
(:mod:`adapters.receiver`) verifies it against the keys the gateway publishes at
``/.well-known/jwks.json``, and so does the client (:class:`adapters.client.GatewayClient`) an
answer or a pulled message, whose request bodies it also encrypts to a key published there.
Anyone can send the receiver a JWE naming a ``kid`` of their choosing, so what such a request may
make it do is bounded here:

* the keys are fetched again only when a delivery names a ``kid`` not among those held, or
  the keys held are older than ``max_age`` (10 minutes by default: a key the gateway retired,
  after a compromise say, is not trusted for good; a failed fetch then is ``KeysUnavailable``,
  not a fall back on the stale keys), and at
  most once per ``refetch_every`` (30 s by default), one fetch at a time (an ``asyncio`` lock:
  requests that need the keys meanwhile wait for that fetch rather than starting their own);
* within ``refetch_every`` of a fetch that worked, a ``kid`` still unknown is simply not the
  gateway's (the receiver answers 400 ``bad_signature``); within ``refetch_every`` of one that
  failed (the gateway unreachable, not 200, too large, not a JWKS), :class:`KeysUnavailable` is
  raised again without fetching, saying when to try again (the receiver answers 503 with
  ``Retry-After``, which the relay honours, so a delivery signed by a key the gateway has just
  published is retried, not lost);
* each fetch is bounded: ``max_bytes`` of body (64 KiB), ``timeout`` seconds as a whole, no
  redirects, no proxy or certificate settings taken from the environment (``trust_env=False``),
  and TLS 1.2 or later against the system's CAs or the ``ca_file`` given. Given ``http`` (the
  client's own ``httpx`` client to the gateway), the fetch goes through it instead, trusting what
  the calls it carries trust, with the same size, time and redirect bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import re
import ssl
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from gateway.partner_urls import PartnerUrlRefused, check_partner_url

__all__ = [
    "MAX_JWKS_BYTES",
    "REFETCH_EVERY",
    "GatewayJwks",
    "KeysUnavailable",
    "check_jwks_url",
]

#: The largest JWKS read (the gateway's is a few keys, well under 4 KiB).
MAX_JWKS_BYTES = 65_536
#: The least time between two fetches of the gateway's keys.
REFETCH_EVERY = dt.timedelta(seconds=30)
#: How long keys held are trusted without a fetch: a key the gateway has retired (after a
#: compromise, with no overlap) is dropped within this time, as it is from its JWKS.
MAX_AGE = dt.timedelta(minutes=10)
_DECLARED_LENGTH = re.compile(r"[0-9]+")


def check_jwks_url(url: str) -> str:
    """``url`` if the gateway's keys may be fetched from it: ``https``, or plain ``http`` to this
    machine only (the development gateway), as :func:`gateway.partner_urls.check_partner_url`
    judges a URL the gateway calls; else :class:`ValueError`. Keys fetched in clear across a
    network could be swapped on the way, and every delivery then forged."""
    try:
        check_partner_url(url, development=True, http_loopback=True)
    except PartnerUrlRefused as exc:
        raise ValueError(f"jwks_url: {exc}") from exc
    return url


class KeysUnavailable(Exception):
    """The gateway's keys could not be fetched (now, or at a try less than ``refetch_every``
    ago); ``retry_after`` is when a fetch may be tried again, in whole seconds (1 or more)."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class GatewayJwks:
    """Fetches the gateway's JWKS from ``url``, at most once per ``refetch_every``."""

    url: str
    refetch_every: dt.timedelta = REFETCH_EVERY
    max_bytes: int = MAX_JWKS_BYTES
    #: Seconds for the whole fetch (connecting, the answer, its body).
    timeout: float = 5.0
    #: The CA file (PEM) the gateway's TLS certificate is checked against; the system's if None.
    ca_file: str | None = None
    #: For tests: the transport the fetch goes through.
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False)
    #: The client to fetch through (its TLS and transport settings, not those above); it is
    #: not closed here.
    http: httpx.AsyncClient | None = field(default=None, repr=False)
    #: Keys held (given, or fetched) are fetched again when a kid is asked for this long after
    #: they were had, so that a key the gateway has retired is not trusted for good.
    max_age: dt.timedelta = MAX_AGE
    #: The keys of the last fetch that worked.
    latest: KeySet | None = field(default=None, init=False, repr=False)
    _tried_at: dt.datetime | None = field(default=None, init=False, repr=False)
    #: When the keys held were had: the last fetch that worked, or the first ask for given ones.
    _had_at: dt.datetime | None = field(default=None, init=False, repr=False)
    _failure: str | None = field(default=None, init=False, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _verify: ssl.SSLContext | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        check_jwks_url(self.url)

    async def refresh(self, now: dt.datetime) -> KeySet:
        """The keys as fetched now, or as fetched less than ``refetch_every`` ago (no fetch
        then); :class:`KeysUnavailable` if that fetch failed."""
        async with self._lock:
            tried = self._tried_at
            if tried is not None and tried <= now < tried + self.refetch_every:
                if self._failure is not None or self.latest is None:
                    wait = (tried + self.refetch_every - now).total_seconds()
                    raise KeysUnavailable(self._failure or "no_keys", max(1, math.ceil(wait)))
                return self.latest
            self._tried_at = now
            try:
                async with asyncio.timeout(self.timeout):
                    self.latest = await self._fetch()
            except (KeysUnavailable, TimeoutError) as exc:
                self._failure = exc.reason if isinstance(exc, KeysUnavailable) else "timeout"
                seconds = max(1, math.ceil(self.refetch_every.total_seconds()))
                raise KeysUnavailable(self._failure, seconds) from exc
            self._failure = None
            self._had_at = now
            return self.latest

    async def keys_naming(self, kid: str, held: KeySet | None, now: dt.datetime) -> KeySet:
        """``held`` if it names ``kid`` and was had less than ``max_age`` ago, else the keys
        :meth:`refresh` gives (fetched again at most once per ``refetch_every``; a failed fetch
        is :class:`KeysUnavailable`, never a fall back on stale keys): the caller looks ``kid``
        up in them again, and one they do not name either is not the gateway's."""
        if self._had_at is None:
            self._had_at = now  # keys given before any fetch: their age counts from here
        fresh = now < self._had_at + self.max_age
        if fresh and held is not None and any(key.kid == kid for key in held.keys):
            return held
        return await self.refresh(now)

    def _context(self) -> ssl.SSLContext:
        if self._verify is None:
            self._verify = ssl.create_default_context(cafile=self.ca_file)
            self._verify.minimum_version = ssl.TLSVersion.TLSv1_2
        return self._verify

    async def _fetch(self) -> KeySet:
        body = bytearray()
        try:
            async with contextlib.AsyncExitStack() as stack:
                http = self.http
                if http is None:
                    http = await stack.enter_async_context(
                        httpx.AsyncClient(
                            verify=self._context(),
                            timeout=self.timeout,
                            follow_redirects=False,
                            trust_env=False,
                            transport=self.transport,
                        )
                    )
                answer = await stack.enter_async_context(
                    http.stream(
                        "GET",
                        self.url,
                        headers={"Accept": "application/json"},
                        follow_redirects=False,
                        timeout=self.timeout,
                    )
                )
                if answer.status_code != 200:
                    raise KeysUnavailable(f"jwks_http_{answer.status_code}", 1)
                declared = answer.headers.get("content-length", "")
                if _DECLARED_LENGTH.fullmatch(declared) and (
                    len(declared) > 18 or int(declared) > self.max_bytes
                ):
                    raise KeysUnavailable("jwks_too_large", 1)
                async for chunk in answer.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > self.max_bytes:
                        raise KeysUnavailable("jwks_too_large", 1)
        except httpx.HTTPError as exc:
            raise KeysUnavailable(f"jwks_fetch_{type(exc).__name__}", 1) from exc
        try:
            document = json.loads(bytes(body).decode("utf-8"))
            members: Any = document.get("keys") if isinstance(document, dict) else None
            if not isinstance(members, list):
                raise ValueError("not a JWKS")
            return KeySet.import_key_set({"keys": members})
        except (
            UnicodeDecodeError,
            ValueError,
            TypeError,
            KeyError,
            AttributeError,
            RecursionError,
            JoseError,
        ) as exc:
            raise KeysUnavailable("jwks_invalid", 1) from exc
