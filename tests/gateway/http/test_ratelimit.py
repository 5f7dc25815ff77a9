"""Per-client quotas: one agency over its quota is slowed, the others are not."""

from __future__ import annotations

import httpx
import pytest

from gateway.errors import RateLimited
from gateway.http.ratelimit import RateLimiter
from gateway.state import GatewayState
from tests.gateway.oauth.support import WHOAMI_URL, AgencyClient, Ledger


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


async def test_refused_calls_from_one_address_are_audited_up_to_a_quota(
    http: httpx.AsyncClient, police: AgencyClient, gateway_state: GatewayState, ledger: Ledger
) -> None:
    """Garbage tokens need no key: each refusal is audited until the address's refusals reach
    the per-address quota, then 429 with Retry-After and nothing more is written to the audit
    log. The quota is the address's own bucket: the token endpoint and a verified agency's
    calls from the same address are unaffected."""
    gateway_state.token_limiter = RateLimiter(rate=0.01, burst=3)
    token = await police.token(http)  # one token request: the token endpoint's bucket
    before = len(await ledger.refusals())
    garbage = {"Authorization": "DPoP abc.def.ghi", "DPoP": "abc.def.ghi"}
    statuses = [(await http.get(WHOAMI_URL, headers=garbage)).status_code for _ in range(6)]
    assert statuses == [401, 401, 401, 429, 429, 429]
    limited = await http.get(WHOAMI_URL, headers=garbage)
    assert limited.json()["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
    assert len(await ledger.refusals()) == before + 3
    served = await http.get(WHOAMI_URL, headers=police.resource_headers(token))
    assert served.status_code == 200
