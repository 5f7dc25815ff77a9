"""Downloading a streamed answer (an export) through ASGI, body message by body message."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["download"]


def _scope(path: str, cookie: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gateway.test"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("gateway.test", 443),
    }


async def download(
    app: Any,
    path: str,
    cookie: str,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> tuple[int, list[bytes]]:
    """A GET of ``path`` with the session ``cookie``, through ASGI, by a client that stays
    connected until the last byte: the status and every body message as sent (so a test sees
    how a download was streamed); ``meanwhile`` runs once the first body message is out (the
    download's slot still held)."""
    bodies: list[bytes] = []
    status: list[int] = []
    requested, done = asyncio.Event(), asyncio.Event()

    async def receive() -> dict[str, object]:
        if not requested.is_set():
            requested.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(int(message["status"]))
        elif message["type"] == "http.response.body":
            if message.get("body"):
                bodies.append(message["body"])
                if meanwhile is not None and len(bodies) == 1:
                    await meanwhile()
            if not message.get("more_body"):
                done.set()

    await app(_scope(path, cookie), receive, send)
    return status[0], bodies
