"""Helpers shared by tests that depend on something outside Python, or on a real socket."""

from __future__ import annotations

import os
import socket
import ssl
from typing import NoReturn

import pytest

__all__ = ["IN_CI", "body_flood", "header_flood", "skip_or_fail_in_ci"]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def skip_or_fail_in_ci(reason: str) -> NoReturn:
    """Skip locally when a tool is missing; in CI a missing tool is a failure, never a skip."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def header_flood(
    port: int,
    path: str = "/healthz",
    *,
    tls: ssl.SSLContext | None = None,
    limit: int = 8 * 1024 * 1024,
) -> tuple[int, bytes]:
    """Send a header block that never ends, 64 KiB at a time, to a server on 127.0.0.1 until it
    answers or closes; return the bytes sent by then and what it answered. A server that buffers
    the whole header block before judging it (uvicorn's httptools) reads all ``limit`` first.
    Blocking: from an async test whose server runs on its loop, call it in a thread."""
    chunk = b"".join(b"X-Filler-%06d: %s\r\n" % (i, b"a" * 80) for i in range(640))
    opening = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % path.encode()
    return _flood(port, opening, chunk, tls=tls, limit=limit)


def body_flood(
    port: int,
    path: str,
    *,
    headers: dict[str, str],
    tls: ssl.SSLContext | None = None,
    limit: int = 64 * 1024 * 1024,
) -> tuple[int, bytes]:
    """POST a chunked body (no Content-Length), 64 KiB at a time, to a server on 127.0.0.1 until
    it answers or closes; return the body bytes sent by then and what it answered. A server that
    reads the whole body before judging its size takes all ``limit`` first. Blocking, as
    :func:`header_flood`."""
    data = 65536
    chunk = b"%x\r\n%s\r\n" % (data, b"A" * data)
    opening = b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n" % (
        path.encode()
    )
    opening += b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers.items())
    sent, answer = _flood(port, opening + b"\r\n", chunk, tls=tls, limit=limit)
    return sent // len(chunk) * data, answer


def _flood(
    port: int, opening: bytes, chunk: bytes, *, tls: ssl.SSLContext | None, limit: int
) -> tuple[int, bytes]:
    """Send ``opening``, then ``chunk`` after ``chunk`` until the server answers or closes, or
    ``limit`` bytes have gone; the bytes of chunks sent and the answer."""
    sent = 0
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
    with conn:
        conn.sendall(opening)
        conn.settimeout(0.05)
        while sent < limit:
            try:
                answer: bytes | None = conn.recv(4096)
            except TimeoutError:
                answer = None
            except (ConnectionResetError, ssl.SSLError):
                answer = b""
            if answer is not None:
                return sent, answer
            try:
                conn.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                break
            sent += len(chunk)
        conn.settimeout(5)
        try:
            return sent, conn.recv(4096)
        except (TimeoutError, ConnectionResetError, ssl.SSLError):
            return sent, b""
