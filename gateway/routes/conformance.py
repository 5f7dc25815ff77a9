"""``POST /v1/conformance/echo``: the sealed probe an adapter's conformance run writes to."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.cases import conformance
from gateway.flow.audit import Operation
from gateway.routes.sealed import Route, add_routes, write

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["conformance"])
add_routes(
    router,
    (
        Route(
            "POST /conformance/echo",
            "post_echo",
            "A sealed probe for adapter conformance (stores no case data)",
            Operation.ADMINISTRATION,
            conformance.echo,
            write(conformance.EchoIn, 200),
        ),
    ),
)
