"""Backoff schedule, circuit breaker states, and the mapping of every httpx transport error."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import pytest

from gateway.delivery.backoff import BreakerState, CircuitBreaker, next_delay
from gateway.delivery.push import TRANSPORT_CODES, _retry_after, transport_code
from gateway.delivery.relay import RelayConfig, relay_config
from gateway.settings import Settings


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found


def test_every_httpx_transport_error_has_a_code() -> None:
    """Each TransportError subclass httpx defines is named in the table (none falls through)."""
    mapped = {cls for cls, _ in TRANSPORT_CODES}
    for cls in _all_subclasses(httpx.TransportError) | {httpx.TransportError}:
        assert cls in mapped, cls
        assert transport_code(cls("x")) != "transport_error" or cls is httpx.TransportError


@pytest.mark.parametrize("attempt", [1, 2, 5, 10, 40, 200])
def test_full_jitter_stays_within_the_exponential_ceiling_and_the_cap(attempt: int) -> None:
    """uniform(0, min(cap, base * 2**(n-1))); Retry-After raises the floor, never past the cap."""
    rng = random.Random(attempt)
    for _ in range(200):
        delay = next_delay(attempt, base=2.0, cap=900.0, rng=rng)
        assert 0.0 <= delay <= min(900.0, 2.0 * 2 ** (attempt - 1))
    assert next_delay(1, base=2.0, cap=900.0, rng=rng, retry_after=60) >= 60
    assert next_delay(1, base=2.0, cap=30.0, rng=rng, retry_after=10_000) <= 30


@pytest.mark.parametrize(
    "value",
    [
        "\u00b2",  # str.isdigit passes it, float refuses it: push raised instead of answering
        "\u00b9\u00b2",
        "\u0661\u0662",  # Arabic-Indic, fullwidth and Devanagari digits: float reads them
        "\uff11\uff12",
        "\u0967\u0966",
        "0" * 9 + "60",  # ASCII, but more than nine digits
        "9" * 5000,
    ],
)
def test_a_partners_retry_after_not_in_ascii_digits_is_no_delay(value: str) -> None:
    """Retry-After from a partner is one to nine ASCII digits (or an HTTP date), else ignored."""
    assert _retry_after(value) is None
    assert _retry_after("60") == 60.0


@pytest.mark.parametrize(
    "value",
    [
        "01 Jan 99999999999 00:00:00 GMT",  # a year datetime cannot hold: OverflowError
        "Mon, 01 Jan 2024 00:00:00 +99999999",  # a zone offset of years: OverflowError
        "Mon, 01 Jan 2024 00:00:00 +9999",  # an offset of days: ValueError from timezone
        "Mon, 32 Jan 2024 00:00:00 GMT",
        "Mon, 01 Jan",
        "GMT",
    ],
)
def test_a_partners_retry_after_date_out_of_range_is_no_delay(value: str) -> None:
    """A date no datetime can hold is ignored: it raised out of push, and the relay's delivery
    died before settling the row (never retried with backoff, never dead-lettered)."""
    assert _retry_after(value) is None


def test_a_partners_retry_after_is_clamped() -> None:
    """A date far ahead is a long wait, but a bounded one (the backoff caps it further)."""
    assert _retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == 999_999_999.0
    assert _retry_after("999999999") == 999_999_999.0
    assert _retry_after("Mon, 01 Jan 2001 00:00:00 -0000") == 0.0  # past: no wait


def test_breaker_opens_after_threshold_then_lets_one_probe_through() -> None:
    """Closed -> open after N failures -> half open after the cooldown with one slot."""
    breaker = CircuitBreaker(threshold=3, cooldown=10.0)
    assert breaker.slots("p", 0.0, 4) == 4
    assert not breaker.failed("p", 0.0) and not breaker.failed("p", 0.0)
    assert breaker.failed("p", 1.0)
    assert breaker.state("p", 5.0) is BreakerState.OPEN and breaker.slots("p", 5.0, 4) == 0
    assert breaker.state("p", 11.0) is BreakerState.HALF_OPEN and breaker.slots("p", 11.0, 4) == 1
    breaker.started("p", 11.0)
    assert breaker.slots("p", 11.0, 4) == 0  # one probe at a time
    assert breaker.failed("p", 11.5)  # the probe failed: open again
    assert breaker.state("p", 12.0) is BreakerState.OPEN
    breaker.succeeded("p")
    assert breaker.state("p", 12.0) is BreakerState.CLOSED
    assert breaker.open_partners(12.0) == set()


def test_the_relay_s_defaults_are_the_settings_defaults(tmp_path: Path) -> None:
    """A Relay built without a config (the CLI's tests, embedders) retries as a configured one
    does: RelayConfig's defaults were 1 s doubling to 5 min where the settings say 2 s to 15."""
    settings = Settings(
        profile="test",
        issuer="https://gateway.test",
        keys_dir=tmp_path / "keys",
        kek_file=tmp_path / "kek",
    )
    assert relay_config(settings) == RelayConfig()


async def test_an_endpoint_change_during_deliveries_builds_one_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two deliveries that see the partner's new endpoint at once share one new client (the
    first closed the old one, the second built a client meanwhile, the first built another
    over it: one leaked)."""
    from gateway.delivery.push import Endpoint, PushConfig, Pusher

    close = httpx.AsyncClient.aclose

    async def slow_close(self: httpx.AsyncClient) -> None:
        await asyncio.sleep(0.01)  # closing a client with open connections takes a while
        await close(self)

    monkeypatch.setattr(httpx.AsyncClient, "aclose", slow_close)

    pusher = Pusher(PushConfig(unsafe_plain_http=True))
    old = Endpoint("cs-a", "http://127.0.0.1:9/old", None)
    new = Endpoint("cs-a", "http://127.0.0.1:9/new", None)
    first = await pusher._client(old)
    one, two = await asyncio.gather(pusher._client(new), pusher._client(new))
    assert one is two and one is not first
    assert first.is_closed and not one.is_closed
    assert pusher._clients == {"cs-a": (new.fingerprint, one)}
    await pusher.aclose()
