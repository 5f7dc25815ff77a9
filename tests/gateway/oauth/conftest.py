"""Fixtures for agency authentication: gateway keys, a hand-moved clock, the app, two agencies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from joserfc.jwk import ECKey, OKPKey

from gateway import agencies
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store import Database
from tests.gateway.oauth.support import ISSUER, AgencyClient, Clock, Ledger, running_app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def oauth_settings(sqlite_url: str, gateway_keys: tuple[Path, Path]) -> Settings:
    keys_dir, kek_file = gateway_keys
    return Settings(
        profile="test",
        database_url=sqlite_url,
        issuer=ISSUER,
        keys_dir=keys_dir,
        kek_file=kek_file,
        log_json=True,
    )


@pytest.fixture
async def oauth_app(oauth_settings: Settings, clock: Clock) -> AsyncIterator[FastAPI]:
    async with running_app(oauth_settings, clock) as application:
        yield application


@pytest.fixture
def gateway_state(oauth_app: FastAPI) -> GatewayState:
    state: GatewayState = oauth_app.state.gateway
    return state


@pytest.fixture
async def http(oauth_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=oauth_app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as c:
        yield c


@pytest.fixture
def ledger(gateway_state: GatewayState) -> Ledger:
    return Ledger(gateway_state.db)


async def register(
    db: Database,
    client: AgencyClient,
    *,
    agency_type: str,
    role: str,
    scopes: list[str],
    area: str = "avon-somerset",
) -> AgencyClient:
    await agencies.add_agency(
        db,
        agency_id=client.client_id,
        name=f"{client.client_id} case system",
        agency_type=agency_type,
        role=role,
        area=area,
        scopes=scopes,
        jwks=client.public_jwks(),
        now=client.clock.now,
    )
    return client


@pytest.fixture
async def police(gateway_state: GatewayState, clock: Clock) -> AgencyClient:
    """A police case system signing ES256."""
    client = AgencyClient("police-avon", ECKey.generate_key("P-256"), clock)
    return await register(
        gateway_state.db,
        client,
        agency_type="police",
        role="responsible_authority",
        scopes=["case:read", "case:write"],
    )


@pytest.fixture
async def housing(gateway_state: GatewayState, clock: Clock) -> AgencyClient:
    """A housing provider signing EdDSA: another agency, for wrong-key cases."""
    client = AgencyClient("housing-bristol", OKPKey.generate_key("Ed25519"), clock)
    return await register(
        gateway_state.db,
        client,
        agency_type="housing",
        role="duty_to_cooperate",
        scopes=["case:read"],
    )
