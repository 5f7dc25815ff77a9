"""Test helpers for agency authentication: an agency that signs, a clock, a raw JWS forger."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from joserfc.jwk import ECKey, OKPKey
from joserfc.jws import JWSRegistry
from sqlalchemy import func, select

from gateway.store import Database
from gateway.store.models import AuditEntry, IssuedToken, UsedJti

if TYPE_CHECKING:
    from fastapi import FastAPI

    from gateway.settings import Settings

ISSUER = "https://gateway.test"
TOKEN_URL = ISSUER + "/oauth/token"
WHOAMI_URL = ISSUER + "/v1/whoami"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
T0 = dt.datetime(2026, 11, 23, 9, 0, 0, tzinfo=dt.UTC)
CONTEXT = {
    "MAPPA-Legal-Basis": "cja2003-s325",
    "MAPPA-Purpose": "risk-management",
    "MAPPA-Officer": "PC-4521",
}


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class Raw:
    """A claim sent as exactly this JSON text: ``Raw("1e400")`` is a number no float
    serialises to (the parser reads it as infinity)."""

    text: str


def _claims_json(claims: dict[str, Any]) -> str:
    raw = {name: value.text for name, value in claims.items() if isinstance(value, Raw)}
    marked = {name: f"\x00raw:{name}" if name in raw else v for name, v in claims.items()}
    text = json.dumps(marked)
    for name, literal in raw.items():
        text = text.replace(json.dumps(f"\x00raw:{name}"), literal)
    return text


def forge(header: dict[str, Any], claims: dict[str, Any] | str, key: Any = None) -> str:
    """A compact JWS with exactly this header, signed with ``key`` by ``header['alg']``.

    With no key the signature is empty (``alg: none``); a bytes key is an HMAC secret. A claim
    given as :class:`Raw` is written as its text, unquoted.
    """
    payload = claims if isinstance(claims, str) else _claims_json(claims)
    signing_input = f"{b64(json.dumps(header))}.{b64(payload)}"
    if key is None:
        return signing_input + "."
    if isinstance(key, bytes):
        digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[header["alg"]]
        return signing_input + "." + b64(hmac.new(key, signing_input.encode(), digest).digest())
    alg = JWSRegistry.algorithms[header["alg"]]
    return signing_input + "." + b64(alg.sign(signing_input.encode(), key))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    @property
    def ts(self) -> int:
        return int(self.now.timestamp())


@dataclass
class AgencyClient:
    """An agency case system: its client id, its signing key and its DPoP key."""

    client_id: str
    key: ECKey | OKPKey
    clock: Clock
    dpop_key: ECKey | OKPKey = field(default_factory=lambda: ECKey.generate_key("P-256"))

    @property
    def alg(self) -> str:
        return "ES256" if isinstance(self.key, ECKey) else "EdDSA"

    @property
    def kid(self) -> str:
        return self.key.thumbprint()

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [{**self.key.as_dict(private=False), "kid": self.kid, "use": "sig"}]}

    def assertion_claims(self, **overrides: Any) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": ISSUER,
            "iat": self.clock.ts,
            "exp": self.clock.ts + 60,
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not DROP}

    def assertion(self, header: dict[str, Any] | None = None, **overrides: Any) -> str:
        head = {"alg": self.alg, "kid": self.kid, "typ": "JWT"}
        head.update(header or {})
        head = {k: v for k, v in head.items() if v is not DROP}
        return forge(head, self.assertion_claims(**overrides), self.key)

    def proof(
        self,
        htm: str = "POST",
        htu: str = TOKEN_URL,
        *,
        token: str | None = None,
        key: ECKey | OKPKey | None = None,
        header: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        dpop_key = key or self.dpop_key
        alg = "ES256" if isinstance(dpop_key, ECKey) else "EdDSA"
        head: dict[str, Any] = {
            "typ": "dpop+jwt",
            "alg": alg,
            "jwk": dpop_key.as_dict(private=False),
        }
        head.update(header or {})
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": htm,
            "htu": htu,
            "iat": self.clock.ts,
        }
        if token is not None:
            claims["ath"] = b64(hashlib.sha256(token.encode()).digest())
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not DROP}
        return forge({k: v for k, v in head.items() if v is not DROP}, claims, dpop_key)

    def form(self, assertion: str | None = None, **extra: str) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion if assertion is not None else self.assertion(),
            **extra,
        }

    async def token_response(
        self,
        client: httpx.AsyncClient,
        *,
        assertion: str | None = None,
        proof: str | object | None = None,
        **extra: str,
    ) -> httpx.Response:
        headers = {}
        if proof is not DROP:
            headers["DPoP"] = str(proof) if proof is not None else self.proof()
        return await client.post(
            "/oauth/token", data=self.form(assertion, **extra), headers=headers
        )

    async def token(self, client: httpx.AsyncClient) -> str:
        response = await self.token_response(client)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def resource_headers(
        self, token: str, *, url: str = WHOAMI_URL, method: str = "GET", **proof: Any
    ) -> dict[str, str]:
        return {
            "Authorization": f"DPoP {token}",
            "DPoP": self.proof(method, url, token=token, **proof),
            **CONTEXT,
        }


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


#: Pass as a claim or header value to leave it out.
DROP: Any = _Drop()


@dataclass
class Ledger:
    """What the store holds: issued tokens, spent jtis, audit entries."""

    db: Database

    async def count(self, model: Any) -> int:
        async with self.db.read() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)

    async def issued(self) -> int:
        return await self.count(IssuedToken)

    async def jtis(self) -> int:
        return await self.count(UsedJti)

    async def audit(self, operation: str, outcome: str) -> list[AuditEntry]:
        async with self.db.read() as session:
            rows = await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.operation == operation, AuditEntry.outcome == outcome)
                .order_by(AuditEntry.id)
            )
            return list(rows)

    async def refusals(self) -> list[AuditEntry]:
        return await self.audit("authentication", "refused")


async def assert_refused(
    response: httpx.Response,
    ledger: Ledger,
    *,
    code: str,
    reason: str | None = None,
    status: int = 401,
    agency_id: str | None = None,
    issued: int = 0,
    jtis: int = 0,
    challenge: str = "DPoP ",
) -> AuditEntry:
    """The request was refused, nothing new was issued or spent, and the refusal is audited (a
    401 challenges with ``challenge``)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert response.headers["content-type"].startswith("application/problem+json")
    if status == 401:
        assert response.headers["www-authenticate"].startswith(challenge)
    assert await ledger.issued() == issued
    assert await ledger.jtis() == jtis
    refusals = await ledger.refusals()
    assert refusals, "the refusal was not audited"
    last = refusals[-1]
    if reason is not None:
        assert last.reason_code == reason
    assert last.agency_id == agency_id
    assert last.request_id == response.headers["x-request-id"]
    return last


@contextlib.asynccontextmanager
async def running_app(settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    """The gateway app for ``settings``, started (its lifespan entered), on ``clock``."""
    from gateway.app import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        application.state.gateway.clock = clock
        yield application


#: A valid ``agencies.add_agency`` request: a police force with one EC P-256 signing key. A test
#: overrides the field it is about.
ONBOARDING: dict[str, Any] = {
    "agency_id": "police-avon",
    "name": "Avon and Somerset Police",
    "agency_type": "police",
    "role": "responsible_authority",
    "area": "avon-somerset",
    "scopes": ["case:read"],
    "jwks": {"keys": [{**ECKey.generate_key("P-256").as_dict(private=False), "kid": "p-1"}]},
}


def agencies_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``mappa-gateway agencies ARGS`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "agencies", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    """One real gateway process (uvicorn) on a random loopback port."""

    def __init__(self, env: dict[str, str], log: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "gateway.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
                *extra,
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica on {self.port} exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"replica on {self.port} did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def replica_env(database_url: str, keys_dir: Path, kek_file: Path) -> dict[str, str]:
    """The environment of a gateway process for tests (profile test, the test issuer)."""
    return {
        **os.environ,
        "MAPPA_PROFILE": "test",
        "MAPPA_DATABASE_URL": database_url,
        "MAPPA_ISSUER": ISSUER,
        "MAPPA_KEYS_DIR": str(keys_dir),
        "MAPPA_KEK_FILE": str(kek_file),
        "MAPPA_LOG_LEVEL": "warning",
    }
