"""The edge: request ids, problem responses, body and header limits, security headers."""

from __future__ import annotations

import json

import httpx
import pytest

from gateway import errors
from gateway.http.problems import PROBLEM_JSON, STATUS, status_for


def _assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    return dict(body)


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    """/healthz answers while the process is up; /readyz checks the database and keys."""
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "keys": True}


async def test_unknown_path_is_a_problem_with_request_id(client: httpx.AsyncClient) -> None:
    """A 404 from routing is problem+json with a code and the request id, like every error."""
    _assert_problem(await client.get("/nothing/here"), 404, "not_found")


async def test_caller_request_id_is_kept_when_well_formed(client: httpx.AsyncClient) -> None:
    """A well-formed X-Request-ID is echoed; a malformed one is replaced, not reflected."""
    good = await client.get("/healthz", headers={"X-Request-ID": "abc12345-XYZ"})
    assert good.headers["x-request-id"] == "abc12345-XYZ"
    bad = await client.get("/healthz", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert bad.headers["x-request-id"] != "<script>alert(1)</script>"
    assert len(bad.headers["x-request-id"]) == 32


async def test_security_headers_on_every_response(client: httpx.AsyncClient) -> None:
    """Responses carry nosniff, no-referrer, DENY framing and no-store."""
    response = await client.get("/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"


async def test_body_over_limit_with_content_length_is_413(client: httpx.AsyncClient) -> None:
    """A declared Content-Length over the limit is refused before the body is read."""
    response = await client.post("/healthz", content=b"x" * 1_048_577)
    _assert_problem(response, 413, "payload_too_large")


async def test_body_over_limit_without_content_length_is_413() -> None:
    """A chunked body is cut off as soon as it crosses the limit: the rest is never read."""
    from starlette.requests import Request

    from gateway.http.middleware import EdgeMiddleware

    chunk = 65536
    pulled = 0
    sent: list[dict[str, object]] = []

    async def receive():  # type: ignore[no-untyped-def]
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"y" * chunk, "more_body": pulled < 64}

    async def app(scope, receive_, send):  # type: ignore[no-untyped-def]
        await Request(scope, receive_).body()
        raise AssertionError("the whole body must not be accepted")

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    middleware = EdgeMiddleware(app, max_body_bytes=1_048_576, max_header_bytes=16_384)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    await middleware(scope, receive, send)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["code"] == "payload_too_large"  # type: ignore[arg-type]
    assert pulled == 1_048_576 // chunk + 1  # stopped at the first chunk over the limit


async def test_oversized_headers_are_431(client: httpx.AsyncClient) -> None:
    """A header block over the limit is refused with 431."""
    response = await client.get("/healthz", headers={"X-Big": "a" * 20_000})
    _assert_problem(response, 431, "headers_too_large")


@pytest.mark.parametrize(
    "value",
    [
        "12\r\nX-Injected: yes",  # CRLF header injection
        "abc\x00def",  # NUL byte
        "abc\x1bdef",  # escape sequence
    ],
)
async def test_header_with_control_characters_is_400(value: str) -> None:
    """Header values carrying control characters are refused before any route runs."""
    from gateway.http.middleware import EdgeMiddleware

    sent: list[dict[str, object]] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        raise AssertionError("the route must not run")

    async def receive():  # type: ignore[no-untyped-def]
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    middleware = EdgeMiddleware(app, max_body_bytes=1024, max_header_bytes=16_384)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/healthz",
        "headers": [(b"x-note", value.encode("latin-1"))],
    }
    await middleware(scope, receive, send)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["code"] == "bad_header"  # type: ignore[arg-type]


async def test_non_numeric_content_length_is_400(client: httpx.AsyncClient) -> None:
    """A Content-Length that is not a number is refused."""
    from gateway.http.middleware import EdgeMiddleware

    sent: list[dict[str, object]] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        raise AssertionError("the route must not run")

    async def send(message):  # type: ignore[no-untyped-def]
        sent.append(message)

    middleware = EdgeMiddleware(app, max_body_bytes=1024, max_header_bytes=16_384)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"-1")]}
    await middleware(scope, None, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 400


def test_every_error_class_has_a_status_and_a_unique_code() -> None:
    """Each GatewayError subclass maps to a 4xx/5xx status and has its own stable code."""
    classes = [getattr(errors, name) for name in errors.__all__]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        status = status_for(cls.__new__(cls))
        assert 400 <= status < 600, cls
    assert errors.GatewayError in STATUS


async def test_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    """/openapi.json describes the API."""
    document = (await client.get("/openapi.json")).json()
    assert document["info"]["title"] == "MAPPA information-sharing gateway"
    assert "/readyz" in document["paths"]


async def test_openapi_describes_the_problems_the_api_answers(client: httpx.AsyncClient) -> None:
    """Every /v1 route documents its refusals as application/problem+json (a 422 where FastAPI
    validates its query), never FastAPI's HTTPValidationError, which the gateway never answers:
    a bad query parameter is a validation_failed problem."""
    document = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in str(document)
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"401", "403", "default"} <= set(responses), (method, path)
            assert "application/problem+json" in responses["default"]["content"]
    answer = await client.get("/v1/inbox", params={"limit": "0"})
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_unhandled_exception_is_opaque_500(client: httpx.AsyncClient, app) -> None:  # type: ignore[no-untyped-def]
    """A bug yields a generic 500 problem: no exception text, no traceback, no local values."""

    @app.get("/_boom")
    async def boom() -> None:
        secret = "Jane Doe 1970-01-01"  # noqa: F841 - must never leak
        raise ValueError("Jane Doe 1970-01-01")

    response = await client.get("/_boom")
    body = _assert_problem(response, 500, "internal_error")
    assert "Jane" not in response.text
    assert set(body) == {"type", "title", "status", "code", "request_id"}
