"""Per-client quotas: one agency over its quota is slowed, the others are not."""

from __future__ import annotations

import httpx
import pytest

from gateway.errors import RateLimited
from gateway.http.ratelimit import RateLimiter
from gateway.state import GatewayState
from tests.gateway.oauth.support import WHOAMI_URL, AgencyClient


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_refuses_with_retry_after() -> None:
    """`burst` calls pass at once; the next is refused and told how long to wait."""
    clock = _Clock()
    limiter = RateLimiter(rate=0.5, burst=3, clock=clock)
    for _ in range(3):
        limiter.check("police")
    with pytest.raises(RateLimited) as caught:
        limiter.check("police")
    assert caught.value.retry_after == 2  # one token per two seconds


def test_bucket_refills_with_time() -> None:
    """After waiting, calls pass again at the configured rate."""
    clock = _Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    limiter.check("police")
    with pytest.raises(RateLimited):
        limiter.check("police")
    clock.now += 1.0
    limiter.check("police")


def test_one_key_over_quota_does_not_touch_another() -> None:
    """Buckets are per key."""
    limiter = RateLimiter(rate=1.0, burst=1, clock=_Clock())
    limiter.check("police")
    with pytest.raises(RateLimited):
        limiter.check("police")
    limiter.check("housing")


def test_bucket_table_is_bounded() -> None:
    """A flood of distinct keys cannot grow memory beyond max_keys."""
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=100, clock=_Clock())
    for i in range(10_000):
        limiter.check(f"client-{i}")
    assert len(limiter) == 100


async def test_agency_over_quota_gets_429_and_others_are_served(
    http: httpx.AsyncClient,
    police: AgencyClient,
    housing: AgencyClient,
    gateway_state: GatewayState,
) -> None:
    """Police exhausts its quota: 429 problem with Retry-After; housing's calls still succeed."""
    gateway_state.call_limiter = RateLimiter(rate=0.01, burst=2)
    police_token = await police.token(http)
    housing_token = await housing.token(http)
    statuses = []
    for _ in range(3):
        response = await http.get(WHOAMI_URL, headers=police.resource_headers(police_token))
        statuses.append(response.status_code)
    assert statuses == [200, 200, 429]
    assert response.json()["code"] == "rate_limited"
    assert int(response.headers["retry-after"]) >= 1
    other = await http.get(WHOAMI_URL, headers=housing.resource_headers(housing_token))
    assert other.status_code == 200


async def test_token_endpoint_is_limited_per_address(
    http: httpx.AsyncClient, police: AgencyClient, gateway_state: GatewayState
) -> None:
    """A burst of token requests from one address is cut off with 429."""
    gateway_state.token_limiter = RateLimiter(rate=0.01, burst=1)
    assert (await police.token_response(http)).status_code == 200
    refused = await police.token_response(http)
    assert refused.status_code == 429
    assert refused.headers["retry-after"]
