"""A small world for the case API's tests: a gateway, Barnet's agencies, and what the store holds.

Every agency is a real agency-side :class:`adapters.client.GatewayClient` with its own keys: it
gets DPoP-bound tokens with ``private_key_jwt``, seals request bodies to the gateway and opens the
answers sealed to it. Nothing here reaches into the gateway to act; it only reads the store to
check what was (or was not) stored, pushed and audited.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwe, jws
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from adapters.client import ContextHeaders, GatewayClient, GatewayResponseError, Opened
from adapters.identity import AgencyIdentity
from gateway import agencies
from gateway.app import create_app
from gateway.contract.envelope import JOSE_MEDIA_TYPE
from gateway.flow.signed_push import SignedPush
from gateway.routes import cases
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store.models import AuditEntry, OutboxMessage

ISSUER = "https://gateway.test"
AREA = "barnet"
T0 = dt.datetime(2026, 11, 23, 9, 0, 0, tzinfo=dt.UTC)
TODAY = T0.date()
READ_WRITE = ["case:read", "case:write"]


class Clock:
    """The one clock of a test: the gateway and every agency read it."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


#: The ordinary stated basis of a MAPPA call: information sharing under s.325(4).
MAPPA_BASIS = ("CJA2003-s325-4", "risk-management")


#: Each case route as a pattern of its concrete paths, with the answer its OpenAPI declares.
_DECLARED = [
    (
        route.method,
        re.compile("/v1" + re.sub(r"{\w+}", "[^/]+", route.path)),
        route.sealed.answer,
    )
    for route in cases.ROUTES
]


def as_declared(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body``, once it is found to be what the route's OpenAPI document says it answers
    (``x-mappa-sealed-schema``, extra fields forbidden): so every answer a case test opens also
    checks the published contract."""
    for declared_method, pattern, answer in _DECLARED:
        if declared_method == method and pattern.fullmatch(path):
            answer.model_validate(body)
            return body
    raise AssertionError(f"no case route declares {method} {path}")


@dataclass
class Agent:
    """An agency's case system: its identity, its gateway client, and its context headers."""

    id: str
    agency_type: str
    role: str
    area: str
    identity: AgencyIdentity
    client: GatewayClient
    context: ContextHeaders

    def with_context(self, basis: str, purpose: str) -> ContextHeaders:
        return ContextHeaders(basis, purpose, self.context.officer)

    async def get(
        self, path: str, *, context: ContextHeaders | None = None, **params: str
    ) -> dict[str, Any]:
        """GET a sealed answer and return the opened body (raises GatewayResponseError)."""
        answer = await self.client.call("GET", path, context or self.context, params=params or None)
        assert isinstance(answer, Opened), answer
        return as_declared("GET", path, answer.body)

    async def post(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        key: str | None = None,
        context: ContextHeaders | None = None,
    ) -> dict[str, Any]:
        answer = await self.client.call(
            "POST", path, context or self.context, body=body, idempotency_key=key
        )
        assert isinstance(answer, Opened), answer
        return as_declared("POST", path, answer.body)

    async def refused(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        context: ContextHeaders | None = None,
        key: str | None = None,
        **params: str,
    ) -> GatewayResponseError:
        """A call that must fail: the gateway's problem."""
        try:
            await self.client.call(
                method,
                path,
                context or self.context,
                body=body,
                idempotency_key=key,
                params=params or None,
            )
        except GatewayResponseError as exc:
            return exc
        raise AssertionError(f"{method} {path} by {self.id} was not refused")

    async def headers(
        self, method: str, path: str, *, context: ContextHeaders | None = None
    ) -> dict[str, str]:
        """Authorization, a fresh DPoP proof and context headers, for hand-made requests."""
        token = await self.client.token()
        return {
            "Authorization": f"DPoP {token}",
            "DPoP": self.client.dpop_proof(method, ISSUER + path, token),
            **(context or self.context).as_headers(),
        }

    async def raw(
        self,
        method: str,
        path: str,
        *,
        content: bytes | str | None = None,
        content_type: str = JOSE_MEDIA_TYPE,
        key: str | None = "k-" + "0" * 8,
        context: ContextHeaders | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        sent = await self.headers(method, path, context=context)
        if content is not None:
            sent["Content-Type"] = content_type
        if key is not None and method != "GET":
            sent["Idempotency-Key"] = key
        sent.update(headers or {})
        return await self.client.http.request(method, ISSUER + path, content=content, headers=sent)

    def open(self, compact: str) -> dict[str, Any]:
        """Decrypt a JWE sealed to this agency and return the signed body's ``body`` (a test
        reads pushes with this; the gateway's signature is checked by GatewayClient.open)."""
        decrypted = jwe.decrypt_compact(compact, self.identity.encryption_key)
        inner = (decrypted.plaintext or b"").decode("ascii")
        payload = jws.extract_compact(inner.encode()).payload
        signed = SignedPush.model_validate_json(payload)  # a push also signs its kind
        assert signed.aud == self.id
        return signed.body


@dataclass
class World:
    state: GatewayState
    http: httpx.AsyncClient
    clock: Clock
    agents: dict[str, Agent] = field(default_factory=dict)

    def __getitem__(self, agency_id: str) -> Agent:
        return self.agents[agency_id]

    async def register(
        self,
        agency_id: str,
        agency_type: str,
        role: str,
        *,
        area: str = AREA,
        scopes: list[str] | None = None,
        officer: str = "OFF-1",
        basis: tuple[str, str] = MAPPA_BASIS,
    ) -> Agent:
        identity = AgencyIdentity.generate(agency_id)
        await agencies.add_agency(
            self.state.db,
            agency_id=agency_id,
            name=agency_id,
            agency_type=agency_type,
            role=role,
            area=area,
            scopes=READ_WRITE if scopes is None else scopes,
            jwks=identity.public_jwks(),
            now=self.clock.now,
        )
        client = GatewayClient(identity, ISSUER, self.http, clock=self.clock)
        agent = Agent(
            agency_id,
            agency_type,
            role,
            area,
            identity,
            client,
            ContextHeaders(basis[0], basis[1], officer),
        )
        self.agents[agency_id] = agent
        return agent

    # -- what the store holds ---------------------------------------------------------------

    async def count(self, model: Any) -> int:
        async with self.state.db.read() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)

    async def audit(self, **where: Any) -> list[AuditEntry]:
        async with self.state.db.read() as session:
            query = select(AuditEntry).order_by(AuditEntry.id)
            for name, value in where.items():
                query = query.where(getattr(AuditEntry, name) == value)
            return list((await session.scalars(query)).all())

    async def outbox(self, recipient: str | None = None) -> list[OutboxMessage]:
        async with self.state.db.read() as session:
            query = select(OutboxMessage).order_by(OutboxMessage.created_at, OutboxMessage.id)
            if recipient is not None:
                query = query.where(OutboxMessage.recipient_agency_id == recipient)
            return list((await session.scalars(query)).all())

    async def pushed(self, recipient: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The bodies pushed to ``recipient``, decrypted with its key."""
        agent = self[recipient]
        return [
            agent.open(row.body)
            for row in await self.outbox(recipient)
            if kind is None or row.kind == kind
        ]


@contextlib.contextmanager
def audit_entries_fail(world: World) -> Iterator[None]:
    """While open, every INSERT into audit_entries fails as a full disk would (the writer's
    statements only: the test's own reads still work)."""

    def fail_audits(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_ENTRIES"):
            raise OperationalError(statement, {}, Exception("database or disk is full"))

    engine = world.state.db.writer.sync_engine
    event.listen(engine, "before_cursor_execute", fail_audits)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", fail_audits)


def settings_for(database_url: str, keys: tuple[Path, Path]) -> Settings:
    return Settings(
        profile="test",
        database_url=database_url,
        issuer=ISSUER,
        keys_dir=keys[0],
        kek_file=keys[1],
        audit_sequence_interval_seconds=0,
        relay_interval_seconds=0,
        log_json=True,
    )


@contextlib.asynccontextmanager
async def open_world(settings: Settings, clock: Clock | None = None) -> AsyncIterator[World]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: GatewayState = app.state.gateway
        the_clock = clock or Clock()
        state.clock = the_clock
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            yield World(state, http, the_clock)


def new_key() -> str:
    return str(uuid.uuid4())


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
