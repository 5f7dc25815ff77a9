"""``POST /v1/conformance/echo``: the sealed probe an adapter's conformance run writes to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from gateway.cases import conformance
from gateway.cases.context import Call, guarded
from gateway.flow.audit import Operation
from gateway.flow.authenticate import Caller, authenticate
from gateway.routes.cases import _write

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["conformance"])


@router.post(
    "/conformance/echo",
    summary="A sealed probe for adapter conformance (stores no case data)",
    **_write(conformance.EchoIn, 200),
)
async def post_echo(request: Request, caller: Annotated[Caller, Depends(authenticate)]) -> Response:
    call = Call.start(request, caller, Operation.ADMINISTRATION)
    return await guarded(call, conformance.echo(call))
