"""Agency public keys: checking a registered JWKS, and fetching one from a registered ``jwks_uri``.

An agency signs its client assertions with a key of its JWKS. Only EC P-256 keys (pinned to
``ES256``) and OKP Ed25519 keys (pinned to ``EdDSA``) may sign; a JWK holding private members is
refused outright. Encryption keys (``use`` = ``enc``) are kept for the sealing stage, and checked
here by that stage's own check (:func:`keys.public_key_from_jwk`): a key the gateway could never
encrypt to (an RSA1_5 alg, a curve off the allow-list) is refused when it is registered, not
when the first record for the agency is sealed. A refusal names the key (its kid, else its
place in the JWKS).

:class:`JwksFetcher` fetches a JWKS only from the URL registered for the agency (never from a
token header), and only if it passes :func:`gateway.partner_urls.check_partner_url`, with
httpx, an explicit SSL context, no redirects, a timeout and a size cap read as a stream, and
caches it. An unknown ``kid`` may force one refetch, at most every
``REFETCH_INTERVAL`` seconds per URL, so a rotation at the agency is picked up without letting
a stream of made-up kids hammer its endpoint.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

from gateway.partner_urls import PartnerUrlRefused, check_partner_url
from keys import KeysError, public_key_from_jwk

__all__ = [
    "KID_PATTERN",
    "JwksFetcher",
    "JwksUnavailable",
    "KeyRefused",
    "ParsedJwk",
    "parse_jwk",
    "parse_jwks",
]

#: What a ``kid`` may look like. Anything else (paths, SQL, shell) is refused before any lookup.
KID_PATTERN = re.compile(r"^[A-Za-z0-9._:+=-]{1,128}$")

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_SIG_ALGS = {("EC", "P-256"): frozenset({"ES256"}), ("OKP", "Ed25519"): frozenset({"EdDSA"})}
_MAX_KEYS = 20
#: A public JWK is a few hundred characters (RSA 4096: under 1,000); more is not a key.
_MAX_JWK_CHARS = 8192
#: A Content-Length the server declares: ASCII digits (``str.isdigit`` also passes "\u00b2",
#: which ``int`` refuses). Anything else is ignored: the body is still read under the cap.
_DECLARED_LENGTH = re.compile(r"[0-9]+")
REFETCH_INTERVAL = 30.0


class KeyRefused(ValueError):
    """A JWK or JWKS is malformed, private, or outside the allow-list."""


class JwksUnavailable(Exception):
    """The registered ``jwks_uri`` could not be fetched or did not hold a usable JWKS."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ParsedJwk:
    """A checked public JWK: its kid, its use, the algorithms pinned to it, the joserfc key."""

    kid: str
    use: str
    algs: frozenset[str]
    jwk: Mapping[str, Any]
    key: ECKey | OKPKey | RSAKey
    #: The RFC 7638 thumbprint of the key (a DPoP proof's ``jkt``).
    thumbprint: str


def parse_jwk(data: Mapping[str, Any]) -> ParsedJwk:
    """Check one public JWK (signing or encryption) and import it.

    Cached by the key's canonical JSON: a DPoP key or a registered key arrives on every request,
    and importing it (and its thumbprint) costs more than the signature it then checks. Only
    keys that pass are cached; a refused one is refused afresh each time."""
    if not isinstance(data, Mapping):
        raise KeyRefused("a JWK must be an object")
    try:
        canonical = json.dumps(dict(data), sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise KeyRefused("a JWK must be a JSON object") from exc
    if len(canonical) > _MAX_JWK_CHARS:
        raise KeyRefused("the JWK is too large")
    return _parse_canonical(canonical)


@functools.lru_cache(maxsize=1024)
def _parse_canonical(canonical: str) -> ParsedJwk:
    return _parse_jwk(json.loads(canonical))


def _parse_jwk(data: Mapping[str, Any]) -> ParsedJwk:
    if _PRIVATE_MEMBERS.intersection(data):
        raise KeyRefused("the JWK holds private key members; register public keys only")
    use = data.get("use", "sig")
    if use not in ("sig", "enc"):
        raise KeyRefused("use must be 'sig' or 'enc'")
    if use == "sig":
        algs = _SIG_ALGS.get((str(data.get("kty")), str(data.get("crv"))))
        if algs is None:
            raise KeyRefused("signing keys must be EC P-256 (ES256) or OKP Ed25519 (EdDSA)")
        alg = data.get("alg")
        if alg is not None and (not isinstance(alg, str) or alg not in algs):
            raise KeyRefused("the JWK's alg does not match its key type")
    else:
        # The seal stage's own check, so that no key is registered the gateway cannot seal to.
        try:
            algs = public_key_from_jwk(data, use="enc").algs
        except KeysError as exc:
            reason = exc.reason.removeprefix("jwk: ")
            raise KeyRefused(f"the gateway cannot encrypt to this key: {reason}") from exc
    try:
        key = import_key(dict(data))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise KeyRefused("the JWK does not parse") from exc
    if not isinstance(key, (ECKey, OKPKey, RSAKey)) or key.is_private:
        raise KeyRefused("the JWK is not a public EC, OKP or RSA key")
    thumbprint = key.thumbprint()
    kid = data.get("kid")
    if kid is None:
        kid = thumbprint
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        raise KeyRefused("kid must be 1-128 characters of A-Z a-z 0-9 . _ : + = -")
    public = {**key.as_dict(private=False), "kid": kid, "use": use}
    if use == "sig":
        public["alg"] = next(iter(algs))
    # Read-only: one parsed key is shared by every request that presents it.
    return ParsedJwk(
        kid=kid, use=use, algs=algs, jwk=MappingProxyType(public), key=key, thumbprint=thumbprint
    )


def parse_jwks(jwks: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[ParsedJwk]:
    """Check a whole JWKS: every member valid, kids unique, at least one signing key."""
    if isinstance(jwks, Mapping):
        members: Any = jwks.get("keys")
    elif isinstance(jwks, (str, bytes)) or not isinstance(jwks, Iterable):
        raise KeyRefused("a JWKS is an object with a non-empty 'keys' array")
    else:
        members = list(jwks)
    if not isinstance(members, list) or not members:
        raise KeyRefused("a JWKS is an object with a non-empty 'keys' array")
    if len(members) > _MAX_KEYS:
        raise KeyRefused(f"a JWKS may hold at most {_MAX_KEYS} keys")
    parsed = []
    for position, member in enumerate(members, start=1):
        try:
            parsed.append(parse_jwk(member))
        except KeyRefused as exc:
            raise KeyRefused(f"key {_named(member, position)}: {exc}") from exc
    kids = [p.kid for p in parsed]
    if len(set(kids)) != len(kids):
        raise KeyRefused("two keys share a kid")
    if not any(p.use == "sig" for p in parsed):
        raise KeyRefused("the JWKS has no signing key")
    return parsed


def _named(member: object, position: int) -> str:
    """How a refusal names a JWKS member: its kid when it has a well-formed one (safe to print),
    else its position."""
    kid = member.get("kid") if isinstance(member, Mapping) else None
    if isinstance(kid, str) and KID_PATTERN.fullmatch(kid):
        return repr(kid)
    return f"#{position}"


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class JwksFetcher:
    """Fetches and caches agency JWKS from their registered URLs."""

    def __init__(
        self,
        *,
        max_bytes: int,
        cache_seconds: float,
        timeout: float,
        ca_file: Path | None = None,
        allow_http: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        refetch_interval: float = REFETCH_INTERVAL,
    ) -> None:
        self.max_bytes = max_bytes
        self.cache_seconds = cache_seconds
        self.allow_http = allow_http
        self._timeout = httpx.Timeout(timeout)
        self._verify = _ssl_context(ca_file)
        self._transport = transport
        self.refetch_interval = refetch_interval
        self._total = timeout
        self._cache: dict[str, tuple[float, list[ParsedJwk]]] = {}
        self._last_fetch: dict[str, float] = {}
        #: A failed fetch, remembered for ``refetch_interval``: (when, the refusal).
        self._failed: dict[str, tuple[float, JwksUnavailable]] = {}
        #: The fetch under way for each URL: whoever else needs it waits for that one.
        self._inflight: dict[str, asyncio.Future[list[ParsedJwk]]] = {}

    async def keys(self, uri: str, *, refresh: bool = False) -> list[ParsedJwk]:
        """The checked keys at ``uri``, from the cache when fresh.

        ``refresh`` asks for a refetch (an unknown kid); it is honoured at most every
        ``refetch_interval`` seconds per URL. Requests need no credentials to get here, so the
        partner's host is spared: one fetch per URL at a time (others wait for it), a failure
        answered from memory for ``refetch_interval``, and each fetch bounded as a whole.
        """
        clock = time.monotonic()
        cached = self._cache.get(uri)
        recently = clock - self._last_fetch.get(uri, -1e9) < self.refetch_interval
        if cached is not None and clock - cached[0] < self.cache_seconds:
            if not refresh or recently:
                return cached[1]
        failed = self._failed.get(uri)
        if failed is not None and clock - failed[0] < self.refetch_interval:
            if cached is not None and clock - cached[0] < self.cache_seconds:
                return cached[1]  # a failed refresh keeps the keys still fresh
            raise JwksUnavailable(failed[1].reason)
        running = self._inflight.get(uri)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[list[ParsedJwk]] = asyncio.get_running_loop().create_future()
        self._inflight[uri] = future
        self._last_fetch[uri] = clock
        try:
            async with asyncio.timeout(self._total):
                parsed = await self._fetch(uri)
        except TimeoutError:
            refusal = JwksUnavailable("jwks_fetch_deadline")
            self._settle_failed(uri, future, clock, refusal)
            raise refusal from None
        except JwksUnavailable as refusal:
            self._settle_failed(uri, future, clock, refusal)
            raise
        except BaseException:  # cancelled: not remembered, the waiters are refused this once
            self._settle(uri, future, JwksUnavailable("jwks_fetch_cancelled"))
            raise
        self._cache[uri] = (clock, parsed)
        self._failed.pop(uri, None)
        future.set_result(parsed)
        del self._inflight[uri]
        return parsed

    def _settle_failed(
        self,
        uri: str,
        future: asyncio.Future[list[ParsedJwk]],
        clock: float,
        refusal: JwksUnavailable,
    ) -> None:
        self._failed[uri] = (clock, refusal)
        self._settle(uri, future, refusal)

    def _settle(
        self, uri: str, future: asyncio.Future[list[ParsedJwk]], refusal: JwksUnavailable
    ) -> None:
        future.set_exception(refusal)
        future.exception()  # retrieved: no "never retrieved" warning if nobody waits
        del self._inflight[uri]

    async def _fetch(self, uri: str) -> list[ParsedJwk]:
        try:  # registration checked it too; a row stored before that check is checked here
            check_partner_url(uri, development=self.allow_http, http_loopback=self.allow_http)
        except PartnerUrlRefused as exc:
            raise JwksUnavailable("jwks_uri_refused") from exc
        body = bytearray()
        try:
            async with httpx.AsyncClient(
                verify=self._verify,
                timeout=self._timeout,
                follow_redirects=False,
                transport=self._transport,
                trust_env=False,
            ) as client:
                async with client.stream("GET", uri, headers={"Accept": "application/json"}) as r:
                    if r.status_code != 200:
                        raise JwksUnavailable(f"jwks_http_{r.status_code}")
                    declared = r.headers.get("content-length", "")
                    if _DECLARED_LENGTH.fullmatch(declared) and (
                        len(declared) > 18 or int(declared) > self.max_bytes
                    ):
                        raise JwksUnavailable("jwks_too_large")
                    async for chunk in r.aiter_bytes():
                        body.extend(chunk)
                        if len(body) > self.max_bytes:
                            raise JwksUnavailable("jwks_too_large")
        except httpx.HTTPError as exc:
            raise JwksUnavailable(f"jwks_fetch_{type(exc).__name__}") from exc
        try:
            document = json.loads(bytes(body).decode("utf-8"))
            return parse_jwks(document)
        except (UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
            raise JwksUnavailable("jwks_invalid") from exc
