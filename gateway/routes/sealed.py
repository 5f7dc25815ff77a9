"""The one shape of a sealed API route, declared as a :class:`Route` and registered by
:func:`add_routes`.

Every route of the case API does the same four things: authenticate the caller (DPoP-bound
token, fresh proof, ``MAPPA-*`` context headers), start a :class:`~gateway.cases.context.Call`
audited as the route's :class:`~gateway.flow.audit.Operation`, run the case operation under
:func:`~gateway.cases.context.guarded` (which audits any refusal), and answer with what the
operation sealed to the caller. So a route is data: its method and path, its name, the operation
it runs and how the audit records it, and the OpenAPI of its sealed bodies (:func:`write`,
:func:`read`, :func:`page` or :func:`lookup`), its parameters and the problems it may answer.
The operation is called as ``run(call, *ids)``, with the ``{ids}`` of the path in the order they
appear in it.

Bodies with case data travel as ``application/jose`` both ways; the OpenAPI here describes the
JSON inside the signed, encrypted body as ``x-mappa-sealed-schema``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway.cases.context import Call, guarded
from gateway.cases.paging import DEFAULT_LIMIT, MAX_LIMIT
from gateway.contract.envelope import JOSE_MEDIA_TYPE
from gateway.contract.views import AckOut
from gateway.flow.audit import Operation
from gateway.flow.authenticate import Caller, authenticate_deferred
from gateway.http.problems import openapi_problems

__all__ = ["Route", "Sealed", "add_routes", "lookup", "page", "read", "write"]

#: A case operation: ``run(call, *ids)`` answers with a response sealed to the caller.
CaseOperation = Callable[..., Awaitable[Response]]

#: Every sealed route answers through guarded, which spends the caller's DPoP proof in the
#: transaction that commits the answer (one commit per call; see authenticate_deferred).
Authenticated = Annotated[Caller, Depends(authenticate_deferred)]

_SEALED = {
    "type": "string",
    "description": "Compact JWE (ECDH-ES+A256KW or RSA-OAEP-256, A256GCM) around a JWS",
}
_HEADERS = [
    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
    for name in ("DPoP", "MAPPA-Legal-Basis", "MAPPA-Purpose", "MAPPA-Officer")
]
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
}
_PAGE_PARAMETERS = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "Items a page holds at most",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "The next_cursor of the page before (opaque)",
        "schema": {"type": "string", "maxLength": 200},
    },
]
_PATH_ID = re.compile(r"{(\w+)}")


@dataclass(frozen=True, slots=True)
class Sealed:
    """The sealed bodies of a route, for OpenAPI: what it takes, what it answers, with what."""

    #: The JSON inside the sealed request body, or None for a route without one.
    body: type[BaseModel] | None
    #: The JSON inside the sealed answer.
    answer: type[BaseModel]
    status: int = 200
    #: Whether the route takes an ``Idempotency-Key`` (every write does).
    idempotent: bool = False
    #: Whether the answer is a page of a list (``limit`` and ``cursor`` in the query).
    paged: bool = False

    def route_options(self) -> dict[str, Any]:
        """Keyword arguments for FastAPI's ``add_api_route`` describing these bodies, their
        parameters and the problems the route may answer instead."""
        parameters = [*_HEADERS, _IDEMPOTENCY_KEY] if self.idempotent else _HEADERS
        if self.paged:
            parameters = [*parameters, *_PAGE_PARAMETERS]
        extra: dict[str, Any] = {"parameters": parameters}
        if self.body is not None:
            extra["requestBody"] = {
                "required": True,
                "content": {
                    JOSE_MEDIA_TYPE: {
                        "schema": _SEALED,
                        "x-mappa-sealed-schema": self.body.model_json_schema(),
                    }
                },
            }
        content: dict[str, Any] = {
            "schema": _SEALED,
            "x-mappa-sealed-schema": self.answer.model_json_schema(),
        }
        answer = {"description": "Sealed to the caller", "content": {JOSE_MEDIA_TYPE: content}}
        return {
            "openapi_extra": extra,
            "responses": {self.status: answer, **openapi_problems(body=self.body is not None)},
            "status_code": self.status,
            "response_class": Response,
        }


def write(body: type[BaseModel], status: int = 201) -> Sealed:
    """A write: a sealed ``body``, an ``Idempotency-Key``, a sealed AckOut with ``status``."""
    return Sealed(body, AckOut, status, idempotent=True)


def read(answer: type[BaseModel]) -> Sealed:
    """A read: no body, a sealed ``answer``."""
    return Sealed(None, answer)


def page(answer: type[BaseModel]) -> Sealed:
    """A list: no body, a sealed page ``answer``, ``limit`` and ``cursor`` in the query."""
    return Sealed(None, answer, paged=True)


def lookup(body: type[BaseModel], answer: type[BaseModel]) -> Sealed:
    """A read whose question is sealed in a POST body, because it names an identifier that must
    not be in a URL: no ``Idempotency-Key``, a sealed ``answer``."""
    return Sealed(body, answer)


@dataclass(frozen=True, slots=True)
class Route:
    """One sealed route: ``"METHOD /path"`` runs ``run`` for an authenticated caller, audited
    as ``audit``. ``name`` is the route's name, from which FastAPI makes its OpenAPI
    operationId: keep it stable, partners' generated clients use it."""

    endpoint: str
    name: str
    summary: str
    audit: Operation
    run: CaseOperation
    sealed: Sealed
    method: Literal["GET", "POST"] = field(init=False)
    path: str = field(init=False)
    #: The ``{ids}`` of the path, in order: ``run`` receives them after the call.
    ids: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        method, _, path = self.endpoint.partition(" ")
        if method not in ("GET", "POST") or not path.startswith("/"):
            raise ValueError(f"{self.name}: endpoint must read 'GET /path' or 'POST /path'")
        if method == "GET" and (self.sealed.body is not None or self.sealed.idempotent):
            raise ValueError(f"{self.name}: a GET takes no body and no Idempotency-Key")
        ids = tuple(_PATH_ID.findall(path))
        try:
            inspect.signature(self.run).bind(None, *ids)
        except TypeError as exc:
            raise ValueError(f"{self.name}: {self.run.__qualname__} cannot take {ids}") from exc
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "ids", ids)


def add_routes(router: APIRouter, routes: tuple[Route, ...]) -> None:
    """Register each of ``routes`` on ``router``, in order."""
    for route in routes:
        router.add_api_route(
            route.path,
            _endpoint(route),
            methods=[route.method],
            name=route.name,
            summary=route.summary,
            **route.sealed.route_options(),
        )


def _endpoint(route: Route) -> Callable[..., Awaitable[Response]]:
    async def endpoint(request: Request, caller: Caller, **ids: str) -> Response:
        call = Call.start(request, caller, route.audit, route.name)
        return await guarded(call, route.run(call, *(ids[name] for name in route.ids)))

    # FastAPI reads what to inject from the signature; declare what a hand-written route would:
    # the request, each {id} of the path as a string, and the authenticated caller.
    parameter = inspect.Parameter
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            parameter("request", parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
            *(parameter(i, parameter.KEYWORD_ONLY, annotation=str) for i in route.ids),
            parameter("caller", parameter.KEYWORD_ONLY, annotation=Authenticated),
        ],
        return_annotation=Response,
    )
    return endpoint
