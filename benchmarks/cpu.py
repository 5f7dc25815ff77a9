"""CPU per request of each gateway path, in one process, with no sockets: the steady figure.

``run.py`` measures what a client sees over real HTTP, and on a shared machine its requests per
second move by up to 2x between runs. This measures what a change does to the gateway's own
work: the app is built in this process (``gateway.app:create_app``, the same settings and
database as ``run.py``) and called through ASGI directly by ``--concurrency`` tasks; each
round's requests (a fresh DPoP proof each, sealed bodies for writes) are made before the clock
starts; the process's CPU time over the round (every thread: aiosqlite's too) divided by the
requests is one sample, and the minimum of ``--rounds`` samples is the figure (noise from a
shared machine only ever adds). The bare FastAPI endpoint is measured the same way in the same
run, for the ratio. What is not in it: uvicorn's HTTP parsing and the socket work (about the
same for every path), and PostgreSQL's own CPU.

A single-worker uvicorn server runs meanwhile only for what the load generator's plans fetch
over HTTP (their access tokens, the gateway's JWKS); it is idle while the clock runs.

    python benchmarks/cpu.py [--only read,write] [--postgres URL] [--requests 1000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import (
    FLOOR_PATHS,
    GATEWAY_PATHS,
    PYTHON,
    ROOT,
    _free_port,
    _wait_ready,
    bench_database_url,
    bench_workdir,
    exit_status,
    gateway_env,
    log_verifies,
    prepare,
)

Scope = dict[str, Any]
Request = tuple[Scope, bytes]


def asgi_request(raw: bytes) -> Request:
    """An HTTP/1.1 request as the plans write it, as an ASGI scope and its body."""
    head, _, body = raw.partition(b"\r\n\r\n")
    start, *lines = head.split(b"\r\n")
    method, target, _ = start.split(b" ")
    headers = []
    for line in lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method.decode(),
        "scheme": "http",
        "path": target.decode(),
        "raw_path": target,
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    return scope, body


async def call(app: Any, request: Request, statuses: dict[int, int]) -> None:
    """One request through the app; its status counted."""
    scope, body = request
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    await app(dict(scope), receive, send)


async def measure(
    app: Any, make: Callable[[], bytes], *, requests: int, rounds: int, concurrency: int
) -> tuple[list[float], dict[int, int]]:
    """CPU ms per request of each round (after a warm-up), and the statuses answered."""
    statuses: dict[int, int] = {}
    samples: list[float] = []

    async def drive(queue: Iterator[Request], count: int) -> None:
        for _ in range(count):
            await call(app, next(queue), statuses)

    async def round_of(count: int) -> float:
        queue = iter([asgi_request(make()) for _ in range(count)])
        per_task = count // concurrency
        started = time.process_time()
        await asyncio.gather(*(drive(queue, per_task) for _ in range(concurrency)))
        return (time.process_time() - started) / (per_task * concurrency) * 1000

    await round_of(min(requests, 200))  # warm: pools, caches, prepared statements
    statuses.clear()
    for _ in range(rounds):
        samples.append(await round_of(requests))
    return samples, statuses


async def in_lifespan(
    app: Any, make: Callable[[], bytes], **kwargs: Any
) -> tuple[list[float], dict[int, int]]:
    async with app.router.lifespan_context(app):
        return await measure(app, make, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated words: the gateway paths to measure")
    parser.add_argument("--postgres", help="PostgreSQL URL instead of the SQLite default")
    parser.add_argument("--requests", type=int, default=1000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=16, help="tasks (one worker's share)")
    args = parser.parse_args()
    paths = [p for p in GATEWAY_PATHS if p[3] is not None]
    if args.only:
        words = [w.strip() for w in args.only.split(",") if w.strip()]
        paths = [p for p in paths if any(w in p[0] for w in words)]

    import uvloop  # uvicorn's loop, as the servers run

    from benchmarks.bare_app import create_app as create_bare
    from benchmarks.floor_app import create_app as create_floor

    settings = {"requests": args.requests, "rounds": args.rounds, "concurrency": args.concurrency}
    bare_request = b"GET /bare HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    bare, _ = uvloop.run(in_lifespan(create_bare(), lambda: bare_request, **settings))
    rows: list[tuple[str, list[float], dict[int, int]]] = [("bare FastAPI endpoint", bare, {})]
    for name, floor_path in FLOOR_PATHS:  # the read's unavoidable cryptography alone
        floor_request = f"GET {floor_path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        samples, statuses = uvloop.run(
            in_lifespan(create_floor(), lambda raw=floor_request: raw, **settings)
        )
        rows.append((name, samples, statuses))

    workdir = bench_workdir("mappa-cpu-")
    database_url = bench_database_url(workdir, args.postgres)
    env = gateway_env(workdir, database_url)
    prepare(env)
    os.environ.update(env)
    os.environ["MAPPA_BENCH_STATE"] = str(workdir / "bench-state.json")
    port = _free_port()
    server = subprocess.Popen(
        [
            *(PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)),
            *("--factory", "--log-level", "warning", "gateway.app:create_app"),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(port, "/healthz")
        from gateway.app import create_app

        for name, path, _, plan in paths:
            assert plan is not None
            make = importlib.import_module(plan).request_factory("127.0.0.1", port, path)
            samples, statuses = uvloop.run(in_lifespan(create_app(), make, **settings))
            rows.append((name, samples, statuses))
    finally:
        server.terminate()
        server.wait(timeout=15)

    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"\nCPU per request, in process: {backend}, concurrency {args.concurrency}, "
        f"{args.rounds} rounds of {args.requests} requests (minimum and median of the rounds)\n"
    )
    print("x bare: the path's CPU a request as a multiple of the bare endpoint's\n")
    header = f"{'path':<28} {'min ms':>8} {'median ms':>10} {'x bare':>8}  statuses"
    print(header)
    print("-" * len(header))
    floor = min(bare)
    failed = []
    for name, samples, statuses in rows:
        print(
            f"{name:<28} {min(samples):>8.3f} {statistics.median(samples):>10.3f} "
            f"{min(samples) / floor:>8.1f}  {statuses or ''}"
        )
        if any(not 200 <= status < 300 for status in statuses):
            failed.append(name)
    if not log_verifies(env):
        failed.append("the audit log the run wrote")
    return exit_status(failed)


if __name__ == "__main__":
    sys.exit(main())
