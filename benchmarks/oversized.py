"""Oversized and garbage credentials against the real gateway: every answer, and peak memory.

THREATS.md: "Oversized tokens and headers: refused with bounded memory." The tests check each
limit in process; this measures it on the server ``run.py`` starts (``uvicorn``, two workers,
127.0.0.1, a seeded SQLite or PostgreSQL database). It sends, over raw sockets so that exactly
these bytes go out:

- access tokens (``Authorization: DPoP ...`` to ``/v1/whoami``) of ``--sizes`` MiB, a JWS-shaped
  one whose payload is nested JSON, and one whose protected header is;
- DPoP proofs (the ``DPoP`` header of a token request) of ``--sizes`` MiB and with nested JSON;
- client assertions (the token request's form body) of ``--sizes`` MiB with a Content-Length
  and chunked without one, garbage at the form's own limit, a JWS with a nested payload, one
  signed by a registered agency with a nested claim, a form of 7,000 fields. A nested payload
  goes as deep as its kind's length limit allows (about 1,500 to 3,000 levels): deeper than
  Python's recursion limit, so the JSON parser itself is reached and must refuse it;
- a header block of ``--sizes`` MiB in ordinary 100-byte headers.

Each is sent ``--repeat`` x ``--concurrency`` times, ``--concurrency`` at once. The server is
warmed up first (a real agency gets a token and calls ``/v1/whoami`` three times; one small
refusal of each kind), then its resident memory is read (summed over uvicorn's processes):
*before*. Before each case the processes' peak (``VmHWM``) is started again from what they
hold (Linux ``clear_refs``: otherwise it is start-up's) and read once the case is over. It
prints each case's peak, its growth over the resident memory when it began and its answers,
then the highest peak as a ratio to *before*, and the resident memory once settled.

The exit status is 1 when any answer is not a 4xx (a 5xx, a 2xx, or no answer at all), the
server stops answering, or the peak exceeds the resident memory before by more than
``--max-growth`` (default 10%: refused at the limits, none of this needs more than a few MiB).
``--http httptools`` runs uvicorn's httptools parser instead of h11 (what ``serve`` runs by
default, ``MAPPA_HTTP_PARSER``) to compare the two.

    python benchmarks/oversized.py [--sizes 1,8] [--repeat 3] [--concurrency 4] [--postgres URL]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import select
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import (
    HEADER_LIMIT,
    PYTHON,
    _free_port,
    _rss_kib,
    _server,
    _tree,
    bench_database_url,
    bench_workdir,
    gateway_env,
    prepare,
)
from gateway.oauth.assertion import MAX_ASSERTION_CHARS
from gateway.oauth.dpop import MAX_PROOF_CHARS
from gateway.oauth.endpoint import MAX_FORM_BYTES
from gateway.oauth.tokens import MAX_TOKEN_CHARS

MIB = 1024 * 1024
#: The longest protected header of a JWS the gateway reads (gateway/oauth/jose.py).
JWS_HEADER_CHARS = 1024


@dataclass(frozen=True)
class Case:
    name: str
    #: The request's bytes, in the pieces they are sent in.
    make: Callable[[], list[bytes]]


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def garbage(size: int) -> str:
    """``size`` characters of base64url text that decodes to nothing in particular."""
    return (_b64(os.urandom(size * 3 // 4 + 3)))[:size]


def nested(depth: int) -> str:
    """A JSON array nested ``depth`` deep."""
    return "[" * depth + "]" * depth


def deepest(limit: int, build: Callable[[int], str]) -> int:
    """The deepest nesting whose ``build(depth)`` is still at most ``limit`` characters."""
    low, high = 0, limit
    while low < high:
        middle = (low + high + 1) // 2
        if len(build(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


def jws_shaped(header: str, payload: str) -> str:
    """A compact JWS with this header and payload text and a signature of the right length."""
    return f"{_b64(header)}.{_b64(payload)}.{_b64(os.urandom(64))}"


def request(
    method: str,
    path: str,
    headers: dict[str, str] | list[tuple[str, str]],
    body: bytes = b"",
    *,
    chunked: bool = False,
) -> list[bytes]:
    """The raw HTTP/1.1 request, in pieces: the head, then the body (64 KiB chunks)."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    pairs.append(("Host", "127.0.0.1"))
    if chunked:
        pairs.append(("Transfer-Encoding", "chunked"))
    elif body or method == "POST":
        pairs.append(("Content-Length", str(len(body))))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in pairs) + "\r\n"
    step = 65_536
    pieces = [body[i : i + step] for i in range(0, len(body), step)]
    if chunked:
        pieces = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
    return [head.encode("latin-1"), *pieces]


def exchange(port: int, pieces: list[bytes], timeout: float = 60.0) -> int | str:
    """Send ``pieces`` to 127.0.0.1:``port`` while reading; the answer's status, or what
    happened instead (``closed``, ``reset``, ``timeout``). The server may answer and stop
    reading before the request is all sent: the answer counts, the rest is not sent."""
    data = b"".join(pieces)
    sent, got = 0, b""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setblocking(False)
        writing = True
        while b"\r\n" not in got:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            readable, writable, _ = select.select(
                [sock], [sock] if writing and sent < len(data) else [], [], left
            )
            if readable:
                try:
                    chunk = sock.recv(65_536)
                except ConnectionResetError:
                    return "reset"
                if not chunk:
                    return "closed"
                got += chunk
            elif writable:
                try:
                    sent += sock.send(data[sent : sent + 262_144])
                except (BrokenPipeError, ConnectionResetError):
                    writing = False  # the answer may still be there to read
    status_line = got.split(b"\r\n", 1)[0].split()
    if len(status_line) >= 2 and status_line[1].isdigit():
        return int(status_line[1])
    return "garbage"


def refused_as_it_should(status: int | str) -> bool:
    """A 4xx and nothing else: a 5xx, a 2xx or no answer at all is a failure."""
    return isinstance(status, int) and 400 <= status < 500


def _kib(pid: int, field: str) -> int:
    """``field`` (``VmHWM``, ``VmRSS``) of a process and its children, in KiB."""
    total = 0
    for one in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
    return total


def peak_kib(pid: int) -> int:
    """Peak resident memory (``VmHWM``) of the server's processes together."""
    return _kib(pid, "VmHWM")


def cases(state: dict[str, Any], port: int, sizes: list[float]) -> list[Case]:
    """Every hostile request, by name (the agency's key signs the one assertion that is real
    JOSE all through; the rest is garbage shaped like it)."""
    from joserfc import jws
    from joserfc.jws import JWSRegistry

    from benchmarks.plans.agency import ASSERTION_TYPE, Agency

    agency = Agency(state, "reader", "127.0.0.1", port)
    issuer = agency.issuer
    sign = JWSRegistry(algorithms=["ES256"])

    def token_request(
        assertion: str, proof: str | None = None, extra: str = "", **options: Any
    ) -> list[bytes]:
        form = (
            f"grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}"
            f"&client_assertion={assertion}{extra}"
        ).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "DPoP": proof or agency.proof("POST", "/oauth/token", token=False),
        }
        return request("POST", "/oauth/token", headers, form, **options)

    def whoami(access_token: str) -> list[bytes]:
        return request(
            "GET",
            "/v1/whoami",
            {"Authorization": f"DPoP {access_token}", "DPoP": garbage(300)},
        )

    def signed_assertion(**claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": agency.identity.agency_id,
            "sub": agency.identity.agency_id,
            "aud": issuer,
            "iat": now,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        }
        text = json.dumps(body)[:-1] + "".join(f', "{k}": {v}' for k, v in claims.items()) + "}"
        return jws.serialize_compact(
            {"alg": "ES256", "kid": agency.identity.signing_key.kid, "typ": "JWT"},
            text,
            agency.identity.signing_key,
            registry=sign,
        )

    at_header = json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": "k"})
    dpop_header = json.dumps({"alg": "ES256", "typ": "dpop+jwt", "jwk": {"kty": "EC"}})
    jwt_header = json.dumps({"alg": "ES256", "typ": "JWT", "kid": "k"})

    def dpop_jwk(depth: int) -> str:
        return '{"alg": "ES256", "typ": "dpop+jwt", "jwk": ' + nested(depth) + "}"

    # As deep as each kind's own length limit lets through to the JSON parser (Python's
    # recursion limit is 1,000; deeper nesting outside the limits is refused unread).
    token_depth = deepest(MAX_TOKEN_CHARS, lambda d: jws_shaped(at_header, nested(d)))
    proof_depth = deepest(MAX_PROOF_CHARS, lambda d: jws_shaped(dpop_header, nested(d)))
    assertion_depth = deepest(MAX_ASSERTION_CHARS, lambda d: jws_shaped(jwt_header, nested(d)))
    claim_depth = deepest(MAX_ASSERTION_CHARS, lambda d: signed_assertion(x=nested(d)))
    header_depth = deepest(JWS_HEADER_CHARS, lambda d: _b64(nested(d)))
    jwk_depth = deepest(JWS_HEADER_CHARS, lambda d: _b64(dpop_jwk(d)))
    found: list[Case] = []
    for size in sizes:
        n = int(size * MIB)
        label = f"{size:g} MiB"
        found += [
            Case(f"access token, {label}", lambda n=n: whoami(garbage(n))),
            Case(
                f"DPoP proof, {label}",
                lambda n=n: token_request(signed_assertion(), proof=garbage(n)),
            ),
            Case(
                f"client assertion, {label} body",
                lambda n=n: token_request(garbage(n)),
            ),
            Case(
                f"client assertion, {label} chunked",
                lambda n=n: token_request(garbage(n), chunked=True),
            ),
            Case(
                f"header block, {label} in 100-byte headers",
                lambda n=n: request(
                    "GET", "/v1/whoami", [(f"X-Pad-{i}", "p" * 88) for i in range(n // 100)]
                ),
            ),
        ]
    found += [
        Case(
            f"access token, payload nested {token_depth} deep",
            lambda: whoami(jws_shaped(at_header, nested(token_depth))),
        ),
        Case(
            f"access token, header nested {header_depth} deep",
            lambda: whoami(jws_shaped(nested(header_depth), "{}")),
        ),
        Case(
            f"DPoP proof, payload nested {proof_depth} deep",
            lambda: token_request(
                signed_assertion(), proof=jws_shaped(dpop_header, nested(proof_depth))
            ),
        ),
        Case(
            f"DPoP proof, jwk nested {jwk_depth} deep",
            lambda: token_request(signed_assertion(), proof=jws_shaped(dpop_jwk(jwk_depth), "{}")),
        ),
        Case(
            "client assertion, garbage at the form limit",
            lambda: token_request(garbage(MAX_FORM_BYTES - 200)),
        ),
        Case(
            f"client assertion, payload nested {assertion_depth} deep",
            lambda: token_request(jws_shaped(jwt_header, nested(assertion_depth))),
        ),
        Case(
            f"client assertion signed by the agency, a claim nested {claim_depth} deep",
            lambda: token_request(signed_assertion(x=nested(claim_depth))),
        ),
        Case(
            "token request, 7,000 form fields",
            lambda: token_request(signed_assertion(), extra="&a" * 7_000),
        ),
    ]
    return found


def warm_up(state: dict[str, Any], port: int) -> None:
    """What an ordinary day does first: a token, a call, one small refusal of each kind."""
    from benchmarks.plans.agency import Agency

    agency = Agency(state, "reader", "127.0.0.1", port)
    for _ in range(3):
        status = exchange(port, [agency.request("GET", "/v1/whoami")])
        if status != 200:
            raise RuntimeError(f"the warm-up call answered {status}")
    for pieces in (
        request("GET", "/v1/whoami", {"Authorization": "DPoP " + garbage(200)}),
        request("GET", "/v1/whoami", {"X-Pad": "p" * 20_000}),
        request(
            "POST",
            "/oauth/token",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"x" * (2 * MIB),
        ),
    ):
        exchange(port, pieces)


def reset_peak(pid: int) -> None:
    """Start the server's processes' ``VmHWM`` again from their resident memory now (Linux:
    ``clear_refs``), so a peak measured next is this run's, not start-up's."""
    for one in _tree(pid):
        with contextlib.suppress(OSError):
            Path(f"/proc/{one}/clear_refs").write_text("5")


@dataclass
class Measured:
    statuses: Counter[int | str]
    #: Resident memory when the case began, and the peak while it ran (KiB, all processes).
    before_kib: int
    peak_kib: int


def run_cases(
    pid: int, port: int, found: list[Case], repeat: int, concurrency: int
) -> dict[str, Measured]:
    """Each case ``repeat`` x ``concurrency`` times, ``concurrency`` at once; its peak memory."""
    measured: dict[str, Measured] = {}
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for case in found:
            reset_peak(pid)
            before = _rss_kib(pid)
            sends = range(repeat * concurrency)
            statuses = Counter(pool.map(lambda _, c=case: exchange(port, c.make()), sends))
            measured[case.name] = Measured(statuses, before, peak_kib(pid))
    return measured


def verdict(
    measured: dict[str, Measured], before_kib: int, alive: int | str, max_growth: float
) -> list[str]:
    """What failed: a case answered with anything but a 4xx (named), the peak exceeded
    ``1 + max_growth`` times the resident memory before the hostile requests, or the server
    no longer answers ``/healthz``."""
    problems = []
    failed = [
        name
        for name, m in measured.items()
        if not all(refused_as_it_should(status) for status in m.statuses)
    ]
    if failed:
        problems.append("not a 4xx: " + "; ".join(failed))
    peak = max((m.peak_kib for m in measured.values()), default=0)
    ratio = peak / before_kib if before_kib else 0.0
    if ratio > 1 + max_growth:
        problems.append(
            f"peak memory x{ratio:.2f} the resident before (at most x{1 + max_growth:.2f})"
        )
    if alive != 200:
        problems.append(f"/healthz answered {alive} afterwards")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8", help="comma-separated MiB (default 1,8)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each case")
    parser.add_argument("--concurrency", type=int, default=4, help="requests of a case at once")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--http",
        choices=["h11", "httptools"],
        default="h11",
        help="uvicorn's HTTP parser (h11, serve's default; httptools to compare)",
    )
    parser.add_argument(
        "--max-growth", type=float, default=0.10, help="peak over resident before (default 0.10)"
    )
    parser.add_argument("--postgres", help="PostgreSQL URL instead of the SQLite default")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",") if s.strip()]

    workdir = bench_workdir("mappa-oversized-")
    database_url = bench_database_url(workdir, args.postgres)
    env = gateway_env(workdir, database_url)
    prepare(env)
    os.environ["MAPPA_BENCH_STATE"] = str(workdir / "bench-state.json")
    state = json.loads((workdir / "bench-state.json").read_text())

    port = _free_port()
    uvicorn = [
        *(PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(args.workers), "--no-access-log", "--log-level", "warning"),
        # as serve: the header limit h11 applies (httptools has none of its own)
        *("--http", args.http, "--h11-max-incomplete-event-size", str(HEADER_LIMIT)),
        *("--factory", "gateway.app:create_app"),
    ]
    with _server(uvicorn, env, port, "/healthz") as pid:
        warm_up(state, port)
        time.sleep(1.0)
        reset_peak(pid)
        before = _rss_kib(pid)
        started = time.monotonic()
        measured = run_cases(pid, port, cases(state, port, sizes), args.repeat, args.concurrency)
        elapsed = time.monotonic() - started
        time.sleep(1.0)
        settled = _rss_kib(pid)
        alive = exchange(port, [b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"])

    backend = "PostgreSQL" if args.postgres else "SQLite"
    sent = sum(sum(m.statuses.values()) for m in measured.values())
    print(
        f"\nMAPPA gateway, oversized credentials: {args.workers} workers, {backend}, "
        f"{len(measured)} cases x {args.repeat * args.concurrency} ({args.concurrency} at "
        f"once), {sent} requests in {elapsed:.1f} s\n"
    )
    width = max(len(name) for name in measured)
    print(f"{'case':<{width}}  {'peak MiB':>8}  {'growth':>7}  answers")
    print("-" * (width + 40))
    for name, m in measured.items():
        shown = ", ".join(f"{status} x{n}" for status, n in sorted(m.statuses.items(), key=str))
        growth = (m.peak_kib - m.before_kib) / 1024
        print(f"{name:<{width}}  {m.peak_kib / 1024:>8.1f}  {growth:>+7.1f}  {shown}")
    peak = max(m.peak_kib for m in measured.values())
    ratio = peak / before if before else 0.0
    print(
        f"\npeak resident memory (VmHWM, all {args.workers + 1} processes): {before / 1024:.1f} "
        f"MiB before, {peak / 1024:.1f} MiB at the highest (x{ratio:.2f}); resident once "
        f"settled {settled / 1024:.1f} MiB; /healthz afterwards: {alive}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "backend": backend,
                    "cases": {
                        name: {
                            "statuses": {str(s): n for s, n in m.statuses.items()},
                            "before_kib": m.before_kib,
                            "peak_kib": m.peak_kib,
                        }
                        for name, m in measured.items()
                    },
                    "before_kib": before,
                    "peak_kib": peak,
                    "settled_kib": settled,
                },
                indent=2,
            )
        )
    problems = verdict(measured, before, alive, args.max_growth)
    if problems:
        print("\noversized failed: " + "; ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
