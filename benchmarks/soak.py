"""A soak: the gateway held at twice its expected peak for a while, then its audit log counted.

THREATS.md asks that sustained load at twice the expected peak leave p99 bounded, no errors,
memory flat and one audit entry per disclosure. This drives the benchmark gateway (two
``uvicorn`` workers on 127.0.0.1, as ``run.py``) with a fixed load, not as much as it takes:
``--peak`` requests a second is the expected peak (default 50: every agency of a large MAPPA
area's case systems at their busiest, an assumption to replace with a real area's figure),
``--factor`` times that is sent (default 2), four reads for every write (the case read and
case write plans of ``run.py``), for ``--duration`` seconds (default 60).

It reports, per tenth of the run: requests, p50 and p99, and the server's resident memory; then
the errors, how often the load generator fell behind its schedule, memory at the start and end
of the run, and the audit check. The audit check reads the store once the run is over: every
read served must have exactly one ``disclosure`` entry for the reading agency, every write one
entry for the writing agency and one ``disclosure`` to the lead agency its record was pushed
to; no entry may be missing or extra.

The exit status is 1 when any request failed, the audit does not match, or memory grew by more
than ``--memory-growth`` (default 20%) between the second tenth of the run and the last (the
first tenth is warm-up). Latencies are reported, never judged: timings belong to people.

    python benchmarks/soak.py [--duration 60] [--peak 50] [--factor 2] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import (
    GATEWAY_PATHS,
    PYTHON,
    _free_port,
    _rss_kib,
    _server,
    bench_database_url,
    bench_workdir,
    gateway_env,
    load,
    prepare,
)

#: Of each five requests, four reads and one write.
READ_SHARE = 0.8
WINDOWS = 10
#: Audited, but not a disclosure of what the soak served.
_NOT_SERVED = frozenset({"token_issue"})


def _plan(word: str) -> tuple[str, str, str]:
    """(path, method, plan) of the run.py path whose name has ``word``."""
    for name, path, method, plan in GATEWAY_PATHS:
        if word in name and plan is not None:
            return path, method, plan
    raise LookupError(word)


async def _audit_counts(database_url: str, since: float) -> Counter[tuple[str, str, str]]:
    """Audit entries since ``since`` (epoch seconds) by (agency, operation, outcome)."""
    import datetime as dt

    from sqlalchemy import select

    from gateway.store import Database
    from gateway.store.models import AuditEntry

    db = Database(database_url)
    try:
        async with db.read() as session:
            rows = await session.execute(
                select(AuditEntry.agency_id, AuditEntry.operation, AuditEntry.outcome).where(
                    AuditEntry.occurred_at >= dt.datetime.fromtimestamp(since, dt.UTC)
                )
            )
            return Counter((str(a), str(o), str(c)) for a, o, c in rows.all())
    finally:
        await db.dispose()


def audit_mismatches(
    counts: Counter[tuple[str, str, str]], *, reader: str, writer: str, reads: int, writes: int
) -> list[str]:
    """What the audit log should hold for ``reads`` and ``writes`` served and does not: one
    disclosure to the reader per read; per write, the writer's collection and its disclosure
    to the lead agency (the push). Token issues are audited too, but are not counted here."""
    expected: Counter[tuple[str, str, str]] = Counter()
    expected[(reader, "disclosure", "allowed")] = reads
    expected[(writer, "collection", "allowed")] = writes
    expected[(writer, "disclosure", "allowed")] = writes
    served = Counter({key: n for key, n in counts.items() if key[1] not in _NOT_SERVED})
    problems = []
    for key in sorted(set(expected) | set(served)):
        if served[key] != expected[key]:
            agency, operation, outcome = key
            problems.append(
                f"{agency} {operation}/{outcome}: {served[key]} entries, {expected[key]} expected"
            )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--peak", type=float, default=50.0, help="expected peak, requests/s")
    parser.add_argument("--factor", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-growth", type=float, default=0.20)
    parser.add_argument("--postgres", help="PostgreSQL URL instead of the SQLite default")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    rate = args.peak * args.factor

    workdir = bench_workdir("mappa-soak-")
    database_url = bench_database_url(workdir, args.postgres)
    env = gateway_env(workdir, database_url)
    prepare(env)
    state_file = workdir / "bench-state.json"
    os.environ["MAPPA_BENCH_STATE"] = str(state_file)
    state = json.loads(state_file.read_text())
    agencies = {role: entry["id"] for role, entry in state["agencies"].items()}

    port = _free_port()
    uvicorn = [
        *(PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(args.workers), "--no-access-log", "--log-level", "warning"),
        *("--factory", "gateway.app:create_app"),
    ]
    results: dict[str, dict[str, Any]] = {}
    memory: list[tuple[float, int]] = []
    with _server(uvicorn, env, port, "/healthz") as pid:
        stop = threading.Event()
        started = time.time()

        def sample() -> None:
            while not stop.is_set():
                memory.append((time.time() - started, _rss_kib(pid)))
                time.sleep(0.5)

        def drive(name: str, word: str, share: float, connections: int) -> None:
            path, method, plan = _plan(word)
            results[name] = load(
                port,
                path,
                method,
                plan,
                connections,
                args.duration,
                *("--rate", str(rate * share), "--windows", str(WINDOWS)),
            )

        threads = [
            threading.Thread(target=sample, daemon=True),
            threading.Thread(target=drive, args=("read", "case read", READ_SHARE, 8)),
            threading.Thread(target=drive, args=("write", "case write", 1 - READ_SHARE, 4)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads[1:]:
            thread.join()
        stop.set()
        time.sleep(1.0)  # the last group commits settle before the count

    reads, writes = results["read"], results["write"]
    counts = asyncio.run(_audit_counts(database_url, started - 1))
    problems = audit_mismatches(
        counts,
        reader=agencies["reader"],
        writer=agencies["writer"],
        reads=int(reads["requests"]) - int(reads["errors"]),
        writes=int(writes["requests"]) - int(writes["errors"]),
    )

    width = args.duration / WINDOWS
    rss = [[kib for at, kib in memory if n * width <= at < (n + 1) * width] for n in range(WINDOWS)]
    settled = statistics.mean(rss[1]) if rss[1] else 0.0
    final = statistics.mean(rss[-1]) if rss[-1] else 0.0
    growth = (final - settled) / settled if settled else 0.0

    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"\nMAPPA gateway soak: {rate:.0f} requests/s ({args.factor:g} x an expected peak of "
        f"{args.peak:g}), {READ_SHARE:.0%} reads, {args.duration:.0f} s, {args.workers} "
        f"workers, {backend}, {os.cpu_count()} CPUs\n"
    )
    header = (
        f"{'slice':>5} {'reads':>6} {'read p50':>9} {'read p99':>9} {'writes':>7} "
        f"{'write p50':>10} {'write p99':>10} {'RSS MiB':>8}"
    )
    print(header)
    print("-" * len(header))
    for n in range(WINDOWS):
        r, w = reads["windows"][n], writes["windows"][n]
        mib = statistics.mean(rss[n]) / 1024 if rss[n] else 0.0
        print(
            f"{n + 1:>5} {r['requests']:>6} {r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f} "
            f"{w['requests']:>7} {w['p50_ms']:>10.1f} {w['p99_ms']:>10.1f} {mib:>8.1f}"
        )
    print(
        f"\nreads {reads['requests']} (p50 {reads['p50_ms']:.1f} ms, p99 {reads['p99_ms']:.1f} ms,"
        f" errors {reads['errors']}, late {reads['late']}); writes {writes['requests']} (p50 "
        f"{writes['p50_ms']:.1f} ms, p99 {writes['p99_ms']:.1f} ms, errors {writes['errors']}, "
        f"late {writes['late']})"
    )
    print(
        f"memory: {settled / 1024:.1f} MiB in the second slice, {final / 1024:.1f} MiB in the "
        f"last ({growth:+.1%})"
    )
    print(
        "audit: "
        + (
            "one entry per disclosure, none missing, none extra"
            if not problems
            else "; ".join(problems)
        )
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "backend": backend,
                    "rate": rate,
                    "results": results,
                    "memory_growth": growth,
                    "audit_problems": problems,
                },
                indent=2,
            )
        )
    failed = []
    if reads["errors"] or writes["errors"]:
        failed.append("requests failed")
    if problems:
        failed.append("the audit log does not match what was served")
    if growth > args.memory_growth:
        failed.append(f"memory grew by {growth:.0%}")
    if failed:
        print("\nsoak failed: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
