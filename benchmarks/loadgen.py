"""A small closed-loop HTTP/1.1 load generator (run as its own process).

``concurrency`` keep-alive connections each send a request, read the whole response and send
the next, for ``duration`` seconds. Only 127.0.0.1 is allowed as a target. Prints one JSON
document: requests, errors (non-2xx or broken connections), requests per second, p50 and p99
latency in milliseconds. A ``--plan`` module may supply per-request headers (tokens, proofs).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import time
from collections.abc import Callable


async def _one_connection(
    host: str,
    port: int,
    make_request: Callable[[], bytes],
    deadline: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            request = make_request()
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            if not status_line:
                errors.append(0)
                return
            status = int(status_line.split()[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not 200 <= status < 300:
                errors.append(status)
    finally:
        writer.close()


def _plain_request(method: str, path: str, host: str, port: int) -> Callable[[], bytes]:
    raw = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\n\r\n".encode()
    return lambda: raw


async def run(
    host: str,
    port: int,
    path: str,
    method: str,
    concurrency: int,
    duration: float,
    plan: str | None,
) -> dict[str, float | int]:
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise SystemExit("load tests target the loopback address only")
    if plan:
        make_request = importlib.import_module(plan).request_factory(host, port, path)
    else:
        make_request = _plain_request(method, path, host, port)
    latencies: list[float] = []
    errors: list[int] = []
    deadline = time.perf_counter() + duration
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _one_connection(host, port, make_request, deadline, latencies, errors)
            for _ in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(ordered) * 1000 if ordered else 0.0,
        "p99_ms": p99 * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--plan", help="module with request_factory(host, port, path)")
    args = parser.parse_args()
    result = asyncio.run(
        run(
            args.host, args.port, args.path, args.method, args.concurrency, args.duration, args.plan
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
