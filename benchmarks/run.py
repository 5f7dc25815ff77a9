"""``make bench``: throughput and latency of the gateway's paths against a bare endpoint.

Each target is served by a real ``uvicorn`` process with two workers on 127.0.0.1 and driven
from a separate load-generator process (``loadgen.py``) at a fixed concurrency for a bounded
time. Every figure is reported beside the bare FastAPI endpoint measured in the same run, as a
ratio, so machines of different speed give comparable results. Peak memory is the highest sum of
the server processes' resident set sizes sampled during each run; CPU per request is the server
processes' CPU time over the run divided by the requests served (steadier than req/s on a
machine shared with other work: the figure to judge a change by).

    python benchmarks/run.py [--duration 10] [--concurrency 32] [--postgres URL] [--json FILE]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

#: (name, path, method, plan module or None): the gateway's paths measured so far. A plan's
#: path may name what the set-up registered (``{nominal_id}``); see benchmarks/seed.py.
GATEWAY_PATHS: list[tuple[str, str, str, str | None]] = [
    ("edge only (/healthz)", "/healthz", "GET", None),
    ("database ping (/readyz)", "/readyz", "GET", None),
    # token + DPoP + context + the proof's jti spent (one commit)
    ("authenticated (GET whoami)", "/v1/whoami", "GET", "benchmarks.plans.authenticated"),
    # token + DPoP + lawful basis + need-to-know + redaction + signature + JWE + audit entry
    ("case read (GET nominal)", "/v1/nominals/{nominal_id}", "GET", "benchmarks.plans.case_read"),
    # JWE + signature + schema + need-to-know + sealed store + audit + outbox to the lead
    (
        "case write (POST record)",
        "/v1/nominals/{nominal_id}/records",
        "POST",
        "benchmarks.plans.case_write",
    ),
]
#: (name, path): the read's unavoidable cryptography alone, served as the bare endpoint is.
FLOOR_PATHS: list[tuple[str, str]] = [
    ("read floor (cryptography)", "/floor/cryptography"),
    ("read floor (joserfc)", "/floor/joserfc"),
]
#: The header block limit serve gives uvicorn (MAPPA_MAX_HEADER_BYTES's default); h11 applies it.
HEADER_LIMIT: int = Settings.model_fields["max_header_bytes"].default
#: The issuer the benchmark gateway runs under (development profile: plain http allowed).
BENCH_ISSUER = "http://127.0.0.1:8000"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"server on port {port} did not become ready")


def _tree(pid: int) -> list[int]:
    """A process and its children (uvicorn's workers)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
    return pids


def _rss_kib(pid: int) -> int:
    """Resident memory of a process and its children."""
    total = 0
    for one in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def _cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process and its children have used so far."""
    total = 0
    for one in _tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _server(args: list[str], env: dict[str, str], port: int, ready: str) -> Iterator[int]:
    process = subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_ready(port, ready)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def load(
    port: int,
    path: str,
    method: str,
    plan: str | None,
    concurrency: int,
    duration: float,
    *options: str,
) -> dict[str, Any]:
    """Run the load generator against 127.0.0.1:``port`` (with ``options`` such as ``--rate``)
    and return its JSON result."""
    command = [
        PYTHON,
        str(ROOT / "benchmarks" / "loadgen.py"),
        *("--port", str(port), "--path", path, "--method", method),
        *("--concurrency", str(concurrency), "--duration", str(duration)),
        *(("--plan", plan) if plan else ()),
        *options,
    ]
    output = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=duration + 120,
    ).stdout
    result: dict[str, Any] = json.loads(output)
    return result


def _drive(
    port: int, path: str, method: str, plan: str | None, pid: int, concurrency: int, duration: float
) -> dict[str, Any]:
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_kib(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu_before = _cpu_seconds(pid)
    result = load(port, path, method, plan, concurrency, duration)
    cpu = _cpu_seconds(pid) - cpu_before
    stop.set()
    sampler.join()
    result["peak_rss_mib"] = round(peak / 1024, 1)
    # The server's CPU per request: far steadier than req/s on a shared machine (the database
    # server's own CPU is not counted: PostgreSQL's processes are not the gateway's children).
    result["cpu_ms_per_request"] = round(cpu / max(int(result["requests"]), 1) * 1000, 3)
    return result


def bench_workdir(prefix: str) -> Path:
    """A new temporary directory for one benchmark's database, keys and state, removed when
    the process exits (``atexit``: after the servers it started have been stopped)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    return workdir


def bench_database_url(workdir: Path, postgres: str | None) -> str:
    """The benchmark's database: a SQLite file in ``workdir``, or with ``postgres`` a schema of
    its own in that database, made now and dropped when the process exits (``atexit``, after the
    servers). Each run starts from an empty log: a log left by an earlier run was signed by that
    run's keys, which this run's sequencer would refuse to extend (so it would never run)."""
    if postgres is None:
        return f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.pool import NullPool

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    engine = create_engine(postgres, poolclass=NullPool, isolation_level="AUTOCOMMIT")

    def run(statement: str) -> None:
        with engine.connect() as connection:
            connection.execute(text(statement))

    run(f'CREATE SCHEMA "{schema}"')
    atexit.register(run, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    url = make_url(postgres).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def gateway_env(workdir: Path, database_url: str) -> dict[str, str]:
    """The benchmark gateway's environment: its database, keys, issuer and limits."""
    return {
        **os.environ,
        "MAPPA_DATABASE_URL": database_url,
        "MAPPA_KEYS_DIR": str(workdir / "keys"),
        "MAPPA_KEK_FILE": str(workdir / "kek.bin"),
        "MAPPA_LOG_LEVEL": "warning",
        "MAPPA_ISSUER": BENCH_ISSUER,
        # One agency drives the whole load: its quota is not what is measured.
        "MAPPA_RATE_LIMIT_PER_SECOND": "1000000",
        "MAPPA_RATE_LIMIT_BURST": "1000000",
        "MAPPA_TOKEN_RATE_LIMIT_PER_SECOND": "1000",
        "MAPPA_TOKEN_RATE_LIMIT_BURST": "1000",
        "PYTHONPATH": str(ROOT),
    }


def prepare(env: dict[str, str]) -> None:
    """Migrate the benchmark database and register what the plans need (before any server)."""
    subprocess.run(
        [PYTHON, "-m", "gateway.cli", "db", "upgrade"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    # The case API's set-up (agencies, keys, a nominal) happens here, before the server starts.
    subprocess.run(
        [PYTHON, "-c", "import sys; from benchmarks.seed import main; sys.exit(main())"],
        env=env,
        cwd=ROOT,
        check=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--postgres", help="PostgreSQL URL instead of the SQLite default")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--only", help="comma-separated words: measure only the gateway paths whose name has one"
    )
    parser.add_argument(
        "--http",
        choices=["h11", "httptools"],
        default="h11",
        help="uvicorn's HTTP parser for both servers (h11, as serve by default)",
    )
    args = parser.parse_args()
    paths = GATEWAY_PATHS
    if args.only:
        words = [w.strip() for w in args.only.split(",") if w.strip()]
        paths = [p for p in GATEWAY_PATHS if any(w in p[0] for w in words)]

    workdir = bench_workdir("mappa-bench-")
    database_url = bench_database_url(workdir, args.postgres)
    env = gateway_env(workdir, database_url)
    uvicorn = [
        PYTHON,
        "-m",
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--workers",
        str(args.workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--factory",
        *("--http", args.http, "--h11-max-incomplete-event-size", str(HEADER_LIMIT)),
    ]
    results: list[dict[str, object]] = []

    port = _free_port()
    with _server(
        [*uvicorn, "--port", str(port), "benchmarks.bare_app:create_app"], env, port, "/bare"
    ) as pid:
        bare = _drive(port, "/bare", "GET", None, pid, args.concurrency, args.duration)
    results.append({"name": "bare FastAPI endpoint", **bare})

    # The floor: only the cryptography a full read cannot avoid (benchmarks/floor_app.py).
    port = _free_port()
    with _server(
        [*uvicorn, "--port", str(port), "benchmarks.floor_app:create_app"],
        env,
        port,
        "/floor/cryptography",
    ) as pid:
        for name, path in FLOOR_PATHS:
            measured = _drive(port, path, "GET", None, pid, args.concurrency, args.duration)
            results.append({"name": name, **measured})

    prepare(env)
    os.environ["MAPPA_BENCH_STATE"] = str(workdir / "bench-state.json")
    port = _free_port()
    with _server(
        [*uvicorn, "--port", str(port), "gateway.app:create_app"], env, port, "/healthz"
    ) as pid:
        for name, path, method, plan in paths:
            measured = _drive(port, path, method, plan, pid, args.concurrency, args.duration)
            results.append({"name": name, **measured})

    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"\nMAPPA gateway benchmark: {args.workers} workers, concurrency {args.concurrency}, "
        f"{args.duration:.0f} s per path, {backend}, {os.cpu_count()} CPUs\n"
    )
    header = (
        f"{'path':<28} {'req/s':>9} {'x bare':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'p99 x bare':>10} {'errors':>7} {'peak MiB':>9} {'CPU ms/req':>11}"
    )
    print(header)
    print("-" * len(header))
    for row in results:
        print(
            f"{row['name']:<28} {row['rps']:>9.0f} {row['rps'] / bare['rps']:>7.2f} "
            f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['p99_ms'] / bare['p99_ms']:>10.2f} {row['errors']:>7} "
            f"{row['peak_rss_mib']:>9.1f} {row['cpu_ms_per_request']:>11.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"backend": backend, "results": results}, indent=2))
    failed = [str(row["name"]) for row in results if row["errors"]]
    if not log_verifies(env):
        failed.append("the audit log the run wrote")
    return exit_status(failed)


def log_verifies(env: dict[str, str]) -> bool:
    """Whether the audit log a run wrote verifies once what was left unsequenced is sequenced
    (``audit sequence``, then ``audit verify``): a sequencer that refused to run, or a log the
    run left broken, would make the figures those of another gateway than the one shipped."""
    for command in (["sequence"], ["verify"]):
        done = subprocess.run(
            [PYTHON, "-m", "gateway.cli", "audit", *command],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(f"\naudit {command[0]} after the run failed:\n{done.stdout}{done.stderr}")
            return False
    return True


def exit_status(failed: list[str]) -> int:
    """Name the paths that answered with errors; the exit status (1 if any did)."""
    if failed:
        print(f"\nerrors on: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
