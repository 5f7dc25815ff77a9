"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.state import GatewayState

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers and the keys are loaded")
async def readyz(request: Request) -> JSONResponse:
    state: GatewayState = request.app.state.gateway
    checks = {"database": await state.db.ping(), "keys": state.keys_ready()}
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )
