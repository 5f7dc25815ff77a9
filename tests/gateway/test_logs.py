"""Operational logs: JSON lines with the request id, and no personal data."""

from __future__ import annotations

import json

import httpx
import pytest


async def test_request_log_line_has_ids_and_codes_only(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """A request logs method, route, status and request id; never the query string or body."""
    capsys.readouterr()
    await client.post(
        "/healthz?name=Jane+Doe",
        content=b'{"family_name": "Doe"}',
        headers={"X-Request-ID": "req-0001-abcd"},
    )
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    request_lines = [line for line in lines if line.get("event") == "request"]
    assert request_lines and request_lines[-1]["request_id"] == "req-0001-abcd"
    assert request_lines[-1]["status"] == 405
    assert "Doe" not in json.dumps(lines)


async def test_bug_is_logged_without_message_or_locals(
    client: httpx.AsyncClient,
    app,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    """An unhandled exception logs its type and frames, not its message or local variables."""

    @app.get("/_fail")
    async def fail() -> None:
        address = "1 High Street"  # noqa: F841
        raise KeyError("1 High Street")

    capsys.readouterr()
    assert (await client.get("/_fail")).status_code == 500
    err = capsys.readouterr().err
    assert "High Street" not in err
    assert '"exc_type": "KeyError"' in err
