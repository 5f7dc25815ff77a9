"""benchmarks/cpu.py: the requests it replays are the plans' requests, and every one is served."""

from __future__ import annotations

from benchmarks.bare_app import create_app
from benchmarks.cpu import asgi_request, in_lifespan

RAW = (
    b"POST /v1/nominals/n-1/records HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    b"Authorization: DPoP abc\r\nMAPPA-Purpose: risk-management\r\n"
    b"Content-Type: application/jose\r\nContent-Length: 5\r\n\r\na.b.c"
)


def test_a_plans_request_becomes_the_scope_and_body_a_server_would_give() -> None:
    scope, body = asgi_request(RAW)
    assert (scope["method"], scope["path"], scope["raw_path"]) == (
        "POST",
        "/v1/nominals/n-1/records",
        b"/v1/nominals/n-1/records",
    )
    assert (b"authorization", b"DPoP abc") in scope["headers"]
    assert (b"mappa-purpose", b"risk-management") in scope["headers"]  # names lower-cased
    assert body == b"a.b.c"


async def test_every_request_of_every_round_is_served_and_counted() -> None:
    made = 0

    def make() -> bytes:
        nonlocal made
        made += 1
        return b"GET /bare HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"

    samples, statuses = await in_lifespan(create_app(), make, requests=64, rounds=3, concurrency=8)
    assert len(samples) == 3 and all(sample > 0 for sample in samples)
    assert statuses == {200: 3 * 64}  # the warm-up's are not counted
    assert made == 64 + 3 * 64
