"""The FastAPI application: ``create_app(settings)`` wires the edge, the routes and the state."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from gateway import __version__
from gateway.http import problems
from gateway.http.middleware import EdgeMiddleware
from gateway.logs import configure_logging
from gateway.oauth import install_oauth
from gateway.routes import health, oauth
from gateway.settings import Settings, get_settings
from gateway.state import GatewayState
from gateway.store import Database

__all__ = ["create_app"]

DESCRIPTION = """\
The MAPPA information-sharing gateway (s.325 Criminal Justice Act 2003).

Agency case systems authenticate with `private_key_jwt` and DPoP-bound access tokens, state a
legal basis, purpose and officer on every call, and exchange case data as `application/jose`
(JWS inside JWE). Errors are `application/problem+json` (RFC 9457) with a stable `code`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, json=settings.log_json)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url, pool_size=settings.db_pool_size)
        state = GatewayState(settings=settings, db=db)
        state.loaded_key_purposes.add("placeholder")
        install_oauth(state)
        app.state.gateway = state
        try:
            yield
        finally:
            await db.dispose()

    app = FastAPI(
        title="MAPPA information-sharing gateway",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    problems.install(app)
    app.include_router(health.router)
    app.include_router(oauth.router)
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
    )
    return app
