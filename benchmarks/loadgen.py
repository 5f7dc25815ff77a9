"""A small closed-loop HTTP/1.1 load generator (run as its own process).

``concurrency`` keep-alive connections each send a request, read the whole response and send
the next, for ``duration`` seconds. Only 127.0.0.1 is allowed as a target. Prints one JSON
document: requests, errors (non-2xx or broken connections), requests per second, p50 and p99
latency in milliseconds. A ``--plan`` module may supply per-request headers (tokens, proofs).

With ``--rate R`` the connections together send at most R requests a second, each on its own
schedule, the schedules staggered (a connection that falls behind sends at once and counts as
``late``): a fixed load
for a soak, rather than as much as the server takes. ``--windows N`` adds p50, p99 and the
request count of each of N equal slices of the run, to see whether latency drifts.
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
    latencies: list[tuple[float, float]],
    errors: list[int],
    interval: float = 0.0,
    late: list[int] | None = None,
    phase: float = 0.0,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    due = time.perf_counter() + phase
    try:
        while time.perf_counter() < deadline:
            if interval:
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                elif late is not None and wait < -interval:
                    late.append(1)
                due = max(due + interval, time.perf_counter() - interval)
                if time.perf_counter() >= deadline:
                    break
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
            latencies.append((started, time.perf_counter() - started))
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
    rate: float = 0.0,
    windows: int = 0,
) -> dict[str, object]:
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise SystemExit("load tests target the loopback address only")
    if plan:
        make_request = importlib.import_module(plan).request_factory(host, port, path)
    else:
        make_request = _plain_request(method, path, host, port)
    latencies: list[tuple[float, float]] = []
    errors: list[int] = []
    late: list[int] = []
    interval = concurrency / rate if rate > 0 else 0.0
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(
        *(
            # staggered: the connections' schedules interleave instead of firing together
            _one_connection(
                host,
                port,
                make_request,
                deadline,
                latencies,
                errors,
                interval,
                late,
                phase=n * interval / concurrency,
            )
            for n in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - started
    result: dict[str, object] = {
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / elapsed,
        **_percentiles([latency for _, latency in latencies]),
    }
    if rate > 0:
        result["late"] = len(late)
    if windows > 0:
        width = duration / windows
        result["windows"] = [
            {
                "requests": len(chosen),
                **_percentiles(chosen),
            }
            for n in range(windows)
            for chosen in [
                [
                    latency
                    for at, latency in latencies
                    if n * width <= at - started < (n + 1) * width
                ]
            ]
        ]
    return result


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
    return {
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
    parser.add_argument("--rate", type=float, default=0.0, help="requests a second (0: closed)")
    parser.add_argument("--windows", type=int, default=0, help="per-slice latency figures")
    args = parser.parse_args()
    result = asyncio.run(
        run(
            args.host,
            args.port,
            args.path,
            args.method,
            args.concurrency,
            args.duration,
            args.plan,
            args.rate,
            args.windows,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
