"""Where the time of a full read and a full write goes, stage by stage, against the
cryptography they cannot avoid.

One uvicorn worker serves the gateway with a stopwatch on each stage (``stage_app.py``); the
load generator drives one path at concurrency 1 (so a stage's wall time is its own), and the
server writes each stage's timings when it stops. Beside them, the cryptographic primitives the
path performs (ECDSA, ECDH, AES) are timed directly with ``cryptography``: that sum is the
floor no implementation of the design can go below. What the stages do not account for is the
framework: HTTP parsing, middleware, routing, dependency injection.

    python benchmarks/stages.py [--duration 8] [--postgres URL] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import (
    PYTHON,
    ROOT,
    _free_port,
    _wait_ready,
    bench_database_url,
    bench_workdir,
    gateway_env,
    load,
    prepare,
)
from benchmarks.stage_app import STAGES

#: (name, path, method, plan, primitives): each path and the primitives one request performs.
PATHS: list[tuple[str, str, str, str, dict[str, int]]] = [
    (
        "full read (GET nominal)",
        "/v1/nominals/{nominal_id}",
        "GET",
        "benchmarks.plans.case_read",
        # DPoP proof verified; answer signed, then ECDH-ES+A256KW + A256GCM to the caller;
        # the nominal's details opened at rest (key unwrap + AES-GCM); the answer's digest.
        {"ecdsa_verify": 1, "ecdsa_sign": 1, "ecdh_es_encrypt": 1, "at_rest_open": 1, "sha256": 1},
    ),
    (
        "full write (POST record)",
        "/v1/nominals/{nominal_id}/records",
        "POST",
        "benchmarks.plans.case_write",
        # DPoP proof and the agency's JWS verified, its JWE opened; the record, the origin JWS
        # and the idempotent answer sealed at rest; the push to the lead and the answer to the
        # writer each signed and encrypted; digests of body, push and answer.
        {
            "ecdsa_verify": 2,
            "ecdh_es_decrypt": 1,
            "at_rest_seal": 3,
            "ecdsa_sign": 2,
            "ecdh_es_encrypt": 2,
            "sha256": 3,
        },
    ),
]


_WHOLE = "the whole case operation"
_AUTHENTICATE = STAGES[0][0]


def _per_call(fn: Callable[[], object], rounds: int = 2000) -> float:
    for _ in range(50):
        fn()
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds // 5):
            fn()
        samples.append((time.perf_counter() - started) / (rounds // 5))
    return statistics.median(samples)


def primitives() -> dict[str, float]:
    """Seconds per primitive operation, measured with ``cryptography`` directly."""
    curve = ec.SECP256R1()
    signer = ec.generate_private_key(curve)
    public = signer.public_key()
    message = os.urandom(600)
    signature = signer.sign(message, ec.ECDSA(hashes.SHA256()))
    recipient = ec.generate_private_key(curve)
    payload = os.urandom(1500)
    kek, cek, nonce = os.urandom(32), os.urandom(32), os.urandom(12)
    wrapped = aes_key_wrap(kek, cek)
    sealed = AESGCM(cek).encrypt(nonce, payload, b"aad")

    def digest(data: bytes) -> bytes:
        h = hashes.Hash(hashes.SHA256())
        h.update(data)
        return h.finalize()

    def ecdh_es_encrypt() -> None:
        ephemeral = ec.generate_private_key(curve)
        shared = ephemeral.exchange(ec.ECDH(), recipient.public_key())
        key = digest(b"\x00\x00\x00\x01" + shared + b"ECDH-ES+A256KW")  # Concat KDF, one round
        aes_key_wrap(key, cek)
        AESGCM(cek).encrypt(nonce, payload, b"header")

    def ecdh_es_decrypt() -> None:
        shared = recipient.exchange(ec.ECDH(), public)
        key = digest(b"\x00\x00\x00\x01" + shared + b"ECDH-ES+A256KW")
        aes_key_unwrap(kek, wrapped)
        AESGCM(cek).decrypt(nonce, sealed, b"aad")
        del key

    def at_rest_open() -> None:
        AESGCM(aes_key_unwrap(kek, wrapped)).decrypt(nonce, sealed, b"aad")

    def at_rest_seal() -> None:
        aes_key_wrap(kek, os.urandom(32))
        AESGCM(cek).encrypt(os.urandom(12), payload, b"aad")

    return {
        "ecdsa_verify": _per_call(
            lambda: public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        ),
        "ecdsa_sign": _per_call(lambda: signer.sign(message, ec.ECDSA(hashes.SHA256()))),
        "ecdh_es_encrypt": _per_call(ecdh_es_encrypt),
        "ecdh_es_decrypt": _per_call(ecdh_es_decrypt),
        "at_rest_open": _per_call(at_rest_open),
        "at_rest_seal": _per_call(at_rest_seal),
        "sha256": _per_call(lambda: digest(payload)),
    }


def _measure(
    env: dict[str, str], path: str, method: str, plan: str, duration: float, out: Path
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    port = _free_port()
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--factory",
            "benchmarks.stage_app:create_app",
        ],
        env={**env, "MAPPA_BENCH_STAGES": str(out)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(port, "/healthz")
        measured = load(port, path, method, plan, 1, duration)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    return json.loads(out.read_text()), measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--postgres", help="PostgreSQL URL instead of the SQLite default")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    workdir = bench_workdir("mappa-stages-")
    database_url = bench_database_url(workdir, args.postgres)
    # The background sequencer is off: its steps would land inside some requests' stages.
    env = {
        **gateway_env(workdir, database_url),
        "MAPPA_AUDIT_SEQUENCE_INTERVAL_SECONDS": "0",
        "MAPPA_BENCH_STATE": str(workdir / "bench-state.json"),
    }
    prepare(env)
    os.environ["MAPPA_BENCH_STATE"] = env["MAPPA_BENCH_STATE"]  # for the load generator's plans
    floor = primitives()
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\nWhere a request's time goes: one worker, concurrency 1, {backend}\n")
    report: dict[str, Any] = {"backend": backend, "primitives_us": {}, "paths": []}
    report["primitives_us"] = {k: round(v * 1e6, 1) for k, v in floor.items()}
    for name, path, method, plan, uses in PATHS:
        times, result = _measure(env, path, method, plan, args.duration, workdir / "stages.json")
        requests = int(result["requests"])
        request_ms = float(result["p50_ms"])
        p99 = float(result["p99_ms"])
        crypto_ms = sum(floor[k] * n for k, n in uses.items()) * 1000
        rows = []
        for label, _ in STAGES:
            calls = times.get(label, [])
            if not calls:
                continue
            per_request = sum(calls) / requests * 1000
            rows.append((label, len(calls) / requests, per_request))
        print(f"{name}: {requests} requests, median {request_ms:.2f} ms, p99 {p99:.2f} ms")
        print(f"  {'stage':<44} {'calls':>6} {'ms/request':>11} {'share':>7}")
        for label, calls_each, per_request in rows:
            share = per_request / request_ms
            print(f"  {label:<44} {calls_each:>6.1f} {per_request:>11.3f} {share:>7.1%}")
        measured = dict((r[0], r[2]) for r in rows)
        # authentication is a dependency, run before the operation, not inside it
        framework = request_ms - measured.get(_WHOLE, 0.0) - measured.get(_AUTHENTICATE, 0.0)
        print(
            f"  {'outside the operation (HTTP, middleware, DI)':<44} {'':>6} {framework:>11.3f} "
            f"{framework / request_ms:>7.1%}"
        )
        print(
            f"  {'cryptography floor (primitives alone)':<44} {'':>6} {crypto_ms:>11.3f} "
            f"{crypto_ms / request_ms:>7.1%}\n"
        )
        report["paths"].append(
            {
                "name": name,
                "requests": requests,
                "p50_ms": request_ms,
                "p99_ms": result["p99_ms"],
                "stages_ms_per_request": {r[0]: round(r[2], 4) for r in rows},
                "outside_operation_ms": round(framework, 4),
                "crypto_floor_ms": round(crypto_ms, 4),
            }
        )
    print(
        "primitives (us each): " + ", ".join(f"{k} {v}" for k, v in report["primitives_us"].items())
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
