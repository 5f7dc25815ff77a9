"""benchmarks/oversized.py: what counts as a failure, the raw exchange, and a short run."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.oversized import (
    MIB,
    Measured,
    exchange,
    jws_shaped,
    nested,
    refused_as_it_should,
    request,
    verdict,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("status", [400, 401, 413, 431])
def test_a_4xx_is_a_refusal(status: int) -> None:
    assert refused_as_it_should(status)


@pytest.mark.parametrize("status", [200, 204, 302, 500, 503, "reset", "closed", "timeout"])
def test_anything_else_is_a_failure(status: int | str) -> None:
    """A 2xx let the credential through, a 5xx is a crash, no answer is a dead worker."""
    assert not refused_as_it_should(status)


def _measured(*statuses: int | str, before: int = 100_000, peak: int = 100_000) -> Measured:
    return Measured(Counter(statuses), before, peak)


def test_the_verdict_names_each_failure() -> None:
    fine = {"access token, 1 MiB": _measured(431, 431), "body": _measured(413)}
    assert verdict(fine, 100_000, 200, 0.10) == []
    crashed = {**fine, "nested": _measured(401, 500)}
    assert verdict(crashed, 100_000, 200, 0.10) == ["not a 4xx: nested"]
    dropped = {**fine, "header block": _measured("reset")}
    assert verdict(dropped, 100_000, 200, 0.10) == ["not a 4xx: header block"]
    grown = {**fine, "DPoP proof, 8 MiB": _measured(431, before=100_000, peak=111_000)}
    [problem] = verdict(grown, 100_000, 200, 0.10)
    assert problem.startswith("peak memory x1.11")
    assert verdict(fine, 100_000, "reset", 0.10) == ["/healthz answered reset afterwards"]


def test_the_requests_are_the_bytes_described() -> None:
    assert nested(3) == "[[[]]]"
    assert len(jws_shaped("{}", nested(10)).split(".")) == 3
    head, *body = request("POST", "/oauth/token", {"A": "b"}, b"x" * 100_000, chunked=True)
    assert b"Transfer-Encoding: chunked\r\n" in head and b"Content-Length" not in head
    assert body[-1] == b"0\r\n\r\n" and len(body) == 3  # two 64 KiB chunks at most, then the end


@pytest.fixture
def answers_early() -> Iterator[int]:
    """A server that answers 431 as soon as it has a request line, then reads (and drops) the
    rest, as uvicorn does with a body the app did not read."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(1024)
            connection.sendall(b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n")
            connection.settimeout(5)
            while connection.recv(1 << 20):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(10)


def test_an_answer_before_the_request_is_all_sent_counts(answers_early: int) -> None:
    pieces = request("GET", "/v1/whoami", {"Authorization": "DPoP " + "a" * (8 * MIB)})
    assert exchange(answers_early, pieces, timeout=30) == 431


@pytest.mark.slow
def test_a_short_run_refuses_everything_within_the_memory_bound() -> None:
    """Every case once against the real two-worker gateway, 256 KiB where a size is asked for:
    the exit status says every answer was a 4xx and the peak stayed within the bound."""
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/oversized.py",
            *("--sizes", "0.25", "--repeat", "1", "--concurrency", "2"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = re.findall(r"^(.+?)\s+[\d.]+\s+[+-][\d.]+\s+(.+)$", done.stdout, re.MULTILINE)
    assert len(rows) == 13, done.stdout  # five sized cases and eight others
    for name, answers in rows:
        statuses = [int(part.split(" x")[0]) for part in answers.split(", ")]
        assert all(400 <= status < 500 for status in statuses), (name, answers)
    assert re.search(r"MiB at the highest \(x1\.\d\d\)", done.stdout), done.stdout
