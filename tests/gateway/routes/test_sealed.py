"""Sealed routes: a Route refuses a malformed declaration when built, and the case API's
OpenAPI describes every route's headers, path ids, query parameters, sealed bodies and the
problems it may answer instead. (tests/gateway/cases/support.py checks every answer the case
tests open against the sealed schema declared here.)"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from gateway import contract
from gateway.cases import nominals, records, referrals
from gateway.cases.paging import MAX_LIMIT
from gateway.contract.envelope import JOSE_MEDIA_TYPE
from gateway.flow.audit import Operation
from gateway.http.problems import PROBLEM_JSON
from gateway.routes import cases, conformance
from gateway.routes.sealed import Route, Sealed, lookup, read, write

CONTEXT_HEADERS = ["DPoP", "MAPPA-Legal-Basis", "MAPPA-Purpose", "MAPPA-Officer"]


def _route(endpoint: str, run: Any, sealed: Sealed) -> Route:
    return Route(endpoint, "r", "summary", Operation.DISCLOSURE, run, sealed)


@pytest.mark.parametrize(
    "endpoint",
    [
        "PUT /nominals/{nominal_id}",  # only GET and POST are sealed routes
        "GET nominals/{nominal_id}",  # a path starts with /
        "/nominals/{nominal_id}",  # no method
        "get /nominals/{nominal_id}",  # methods are upper case, as on the wire
    ],
)
def test_route_refuses_a_malformed_endpoint(endpoint: str) -> None:
    """The endpoint must read 'GET /path' or 'POST /path'."""
    with pytest.raises(ValueError, match="endpoint must read"):
        _route(endpoint, nominals.read_nominal, read(contract.NominalView))


@pytest.mark.parametrize(
    "sealed",
    [
        write(contract.LevelChangeIn, 200),  # a body and an Idempotency-Key
        lookup(contract.NominalLookupIn, contract.NominalView),  # a body
    ],
)
def test_a_get_route_takes_no_sealed_body(sealed: Sealed) -> None:
    """A GET with a sealed body or an Idempotency-Key is refused when declared."""
    with pytest.raises(ValueError, match="a GET takes no body"):
        _route("GET /nominals/{nominal_id}", nominals.read_nominal, sealed)


@pytest.mark.parametrize(
    ("endpoint", "run"),
    [
        ("GET /nominals/{nominal_id}", records.read_record),  # needs the record's id too
        ("POST /referrals/{referral_id}", referrals.create_referral),  # takes no id
    ],
)
def test_route_refuses_an_operation_that_cannot_take_the_path_ids(endpoint: str, run: Any) -> None:
    """The operation must accept the call and each {id} of the path, as positional arguments."""
    with pytest.raises(ValueError, match="cannot take"):
        _route(endpoint, run, read(contract.NominalView))


def test_route_reads_its_ids_in_path_order() -> None:
    """The ids are the path's, in order: the operation gets them in that order."""
    route = _route(
        "GET /nominals/{nominal_id}/records/{record_id}",
        records.read_record,
        read(contract.RecordView),
    )
    assert (route.method, route.ids) == ("GET", ("nominal_id", "record_id"))
    assert route.path == "/nominals/{nominal_id}/records/{record_id}"


def _operations() -> list[tuple[APIRoute, dict[str, Any]]]:
    app = FastAPI()
    app.include_router(cases.router)
    app.include_router(conformance.router)
    document = app.openapi()
    found = []
    for router in (cases.router, conformance.router):
        for api_route in router.routes:
            assert isinstance(api_route, APIRoute)
            (method,) = api_route.methods
            found.append((api_route, document["paths"][api_route.path][method.lower()]))
    return found


def test_every_case_route_is_registered_once_with_its_name() -> None:
    """Each row of the table is one route, under its own name and operationId."""
    registered = [
        api_route.name for api_route in cases.router.routes if isinstance(api_route, APIRoute)
    ]
    assert registered == [route.name for route in cases.ROUTES]
    operation_ids = [operation["operationId"] for _, operation in _operations()]
    assert len(set(operation_ids)) == len(operation_ids)


def test_openapi_declares_headers_path_ids_and_sealed_bodies_of_every_route() -> None:
    """Every route lists its path ids in order then the context headers, a write (answered with
    an AckOut) an Idempotency-Key too, and every body it takes or answers is application/jose
    with its sealed schema."""
    for api_route, operation in _operations():
        parameters = operation["parameters"]
        path_ids = [p["name"] for p in parameters if p["in"] == "path"]
        headers = [p["name"] for p in parameters if p["in"] == "header"]
        assert path_ids == re.findall(r"{(\w+)}", api_route.path), api_route.name
        answer = operation["responses"][str(api_route.status_code)]["content"]
        assert set(answer) == {JOSE_MEDIA_TYPE}
        sealed_answer = answer[JOSE_MEDIA_TYPE].get("x-mappa-sealed-schema", {})
        is_write = sealed_answer.get("title") == "AckOut"
        assert headers == CONTEXT_HEADERS + ["Idempotency-Key"] * is_write, api_route.name
        assert ("requestBody" in operation) == (api_route.methods == {"POST"}), api_route.name
        if "requestBody" in operation:
            assert operation["requestBody"]["required"] is True
            body = operation["requestBody"]["content"][JOSE_MEDIA_TYPE]
            assert body["x-mappa-sealed-schema"]["type"] == "object"


def test_openapi_declares_the_problems_every_route_may_answer() -> None:
    """Every case route lists the refusals it may answer as application/problem+json with the
    problem's schema (a route with a body also 413, 415 and 422), and never FastAPI's 422
    HTTPValidationError, which the gateway does not answer."""
    for api_route, operation in _operations():
        responses = operation["responses"]
        refusals = {"400", "401", "403", "404", "429", "503", "default"}
        if "requestBody" in operation:
            refusals |= {"409", "413", "415", "422"}
        assert set(responses) == {str(api_route.status_code), *refusals}, api_route.name
        for status in refusals:
            content = responses[status]["content"]
            assert set(content) == {PROBLEM_JSON}, (api_route.name, status)
            schema = content[PROBLEM_JSON]["schema"]
            assert {"code", "request_id", "status"} <= set(schema["required"])
        assert "HTTPValidationError" not in str(operation), api_route.name


def test_openapi_declares_limit_and_cursor_of_each_list_and_a_sealed_answer_of_every_route() -> (
    None
):
    """The lists (cursor pages) take limit and cursor in the query, within the limits the
    gateway applies; every route declares the sealed schema of its answer."""
    paged = set()
    for api_route, operation in _operations():
        answer = operation["responses"][str(api_route.status_code)]["content"][JOSE_MEDIA_TYPE]
        assert answer["x-mappa-sealed-schema"]["type"] == "object", api_route.name
        query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
        if query:
            paged.add(api_route.name)
            assert set(query) == {"limit", "cursor"}, api_route.name
            limit = query["limit"]["schema"]
            assert (limit["minimum"], limit["maximum"]) == (1, MAX_LIMIT)
            assert "next_cursor" in answer["x-mappa-sealed-schema"]["properties"]
    assert paged == {"get_records", "get_warning_markers", "get_level_1_list", "get_contributors"}
