"""The receiver fetches the gateway's keys seldom, and survives a fetch that fails.

Anyone can send it a JWE naming a kid of their choosing: it fetches the gateway's JWKS again
only for a kid it does not hold, at most once per ``jwks_refetch_every``; a fetch that fails is
503 with Retry-After (the relay retries), never a 500; each fetch ignores proxy settings from the
environment and reads a bounded body."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from adapters.childrens_services import ChildrensServicesAdapter
from adapters.gateway_keys import MAX_JWKS_BYTES
from adapters.identity import AgencyIdentity
from adapters.receiver import Receiver, SeenDeliveries
from tests.adapters.support import StandInGateway, post_sealed

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
AGENCY = "barnet-childrens-services"
FLAG = {"flag_id": "f-1", "hazard_flag": {"child_or_family_ref": "FAM-20931", "flag": "HZD"}}


class _JwksServer:
    """The gateway's ``/.well-known/jwks.json`` on 127.0.0.1, counting its fetches."""

    def __init__(self) -> None:
        self.hits = 0
        self.status = 200
        self.document: dict[str, Any] = {"keys": []}
        self.padding = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = json.dumps(outer.document).encode() + b" " * outer.padding
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[_JwksServer]:
    server = _JwksServer()
    try:
        yield server
    finally:
        server.stop()


class _Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


def _receiver(url: str, clock: _Clock, gateway: StandInGateway | None = None) -> Receiver:
    return Receiver(
        AgencyIdentity.generate(AGENCY),
        ChildrensServicesAdapter(),
        StandInGateway.ISSUER,
        gateway_keys=gateway.keys() if gateway else None,
        jwks_url=url,
        clock=clock,
        seen=SeenDeliveries.in_memory(),
    )


async def test_deliveries_naming_unknown_kids_fetch_the_keys_once_per_interval(
    jwks: _JwksServer,
) -> None:
    """Fifty deliveries signed by a key the gateway never published are 400 ``bad_signature``
    after one fetch; garbage fetches nothing; the next fetch comes ``jwks_refetch_every`` on."""
    gateway, forger = StandInGateway(), StandInGateway(kid="not-the-gateways")
    jwks.document = gateway.jwks()
    clock = _Clock()
    receiver = _receiver(jwks.url, clock)
    for _ in range(50):
        assert (await post_sealed(receiver, "garbage.garbage.garbage.garbage.garbage")).json() == {
            "code": "bad_signature"
        }
    assert jwks.hits == 0
    for _ in range(50):
        _, sealed = forger.push(receiver.identity, "hazard_flag", FLAG, iat=NOW)
        answer = await post_sealed(receiver, sealed)
        assert answer.status_code == 400 and answer.json() == {"code": "bad_signature"}
    assert jwks.hits == 1
    clock.now += dt.timedelta(seconds=29)
    _, sealed = forger.push(receiver.identity, "hazard_flag", FLAG, iat=NOW)
    assert (await post_sealed(receiver, sealed)).status_code == 400
    assert jwks.hits == 1
    clock.now += dt.timedelta(seconds=1)
    assert (await post_sealed(receiver, sealed)).status_code == 400
    assert jwks.hits == 2
    _, genuine = gateway.push(receiver.identity, "hazard_flag", FLAG, iat=NOW)
    assert (await post_sealed(receiver, genuine)).status_code == 200
    assert jwks.hits == 2  # a kid held needs no fetch


async def test_a_key_the_gateway_published_since_is_fetched(jwks: _JwksServer) -> None:
    """A delivery signed by a kid the receiver does not hold yet fetches the keys, and is
    applied with the new key."""
    old, new = StandInGateway(), StandInGateway(kid="gateway-sig-2")
    jwks.document = {"keys": old.jwks()["keys"] + new.jwks()["keys"]}
    receiver = _receiver(jwks.url, _Clock(), gateway=old)
    _, sealed = new.push(receiver.identity, "hazard_flag", FLAG, iat=NOW)
    answer = await post_sealed(receiver, sealed)
    assert answer.status_code == 200 and answer.json()["action"] == "alert_mapped"
    assert jwks.hits == 1


async def test_a_failed_fetch_is_503_with_retry_after_not_500(jwks: _JwksServer) -> None:
    """The gateway's JWKS answering 503, too large a JWKS, or the gateway unreachable: 503 with
    Retry-After, and no new fetch before it has passed; then the delivery is applied."""
    gateway = StandInGateway()
    jwks.document = gateway.jwks()
    clock = _Clock()
    receiver = _receiver(jwks.url, clock)
    _, sealed = gateway.push(receiver.identity, "hazard_flag", FLAG, iat=NOW)

    jwks.status = 503
    answer = await post_sealed(receiver, sealed)
    assert answer.status_code == 503 and answer.json() == {"code": "gateway_keys_unavailable"}
    assert answer.headers["retry-after"] == "30"
    clock.now += dt.timedelta(seconds=10)
    again = await post_sealed(receiver, sealed)
    assert again.status_code == 503 and again.headers["retry-after"] == "20"
    assert jwks.hits == 1

    jwks.status, jwks.padding = 200, MAX_JWKS_BYTES
    clock.now += dt.timedelta(seconds=20)
    assert (await post_sealed(receiver, sealed)).status_code == 503
    assert jwks.hits == 2

    jwks.padding = 0
    clock.now += dt.timedelta(seconds=30)
    applied = await post_sealed(receiver, sealed)
    assert applied.status_code == 200 and applied.json()["status"] == "accepted"

    jwks.stop()
    clock.now += dt.timedelta(seconds=30)
    _, other = StandInGateway(kid="gateway-sig-9").push(
        receiver.identity, "hazard_flag", FLAG, iat=NOW
    )
    unreachable = await post_sealed(receiver, other)
    assert unreachable.status_code == 503 and unreachable.headers["retry-after"] == "30"


async def test_the_fetch_takes_no_proxy_from_the_environment(
    jwks: _JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP(S)_PROXY in the environment does not reroute the fetch of the gateway's keys."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    gateway = StandInGateway()
    jwks.document = gateway.jwks()
    receiver = _receiver(jwks.url, _Clock())
    _, sealed = gateway.push(receiver.identity, "hazard_flag", FLAG, iat=NOW)
    answer = await post_sealed(receiver, sealed)
    assert answer.status_code == 200 and jwks.hits == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://gateway.example/.well-known/jwks.json",  # in clear across a network
        "http://10.0.0.5/.well-known/jwks.json",
        "http://127.0.0.1.example/.well-known/jwks.json",  # a name, not the loopback
        "ftp://gateway.example/jwks.json",
        "https://user:secret@gateway.example/.well-known/jwks.json",
        "/.well-known/jwks.json",
    ],
)
def test_a_receiver_will_not_fetch_the_gateways_keys_where_they_could_be_swapped(
    url: str,
) -> None:
    """Keys fetched in clear could be replaced on the way and every delivery then forged: the
    receiver is refused when built, not at its first delivery."""
    with pytest.raises(ValueError, match="jwks_url"):
        _receiver(url, _Clock())


@pytest.mark.parametrize(
    "url",
    [
        "https://gateway.example/.well-known/jwks.json",
        "http://127.0.0.1:8000/.well-known/jwks.json",  # the development gateway
        "http://localhost:8000/.well-known/jwks.json",
        "http://[::1]:8000/.well-known/jwks.json",
    ],
)
def test_https_or_this_machine_is_where_a_receiver_fetches_the_gateways_keys(url: str) -> None:
    assert _receiver(url, _Clock()).jwks_url == url


async def test_a_key_the_gateway_retired_is_dropped_within_the_max_age(
    jwks: _JwksServer,
) -> None:
    """Keys held are fetched again once older than ``max_age`` (10 minutes) when a delivery
    needs them: a key the gateway has since retired (gone from its JWKS, after a compromise
    say) is then refused, where before it was trusted for as long as the receiver ran. A fetch
    that fails then is 503, never a fall back on the stale keys."""
    old, new = StandInGateway(), StandInGateway(kid="gateway-sig-2")
    jwks.document = old.jwks()
    clock = _Clock()
    receiver = _receiver(jwks.url, clock, gateway=old)
    _, sealed = old.push(receiver.identity, "hazard_flag", FLAG, iat=NOW)
    assert (await post_sealed(receiver, sealed)).status_code == 200
    assert jwks.hits == 0  # keys given: trusted for the max age from their first use
    jwks.document = new.jwks()  # the gateway retires its old key with no overlap
    clock.now += dt.timedelta(minutes=9, seconds=59)
    _, again = old.push(receiver.identity, "hazard_flag", {**FLAG, "flag_id": "f-2"}, iat=NOW)
    assert (await post_sealed(receiver, again)).status_code == 200
    clock.now += dt.timedelta(seconds=1)
    _, late = old.push(receiver.identity, "hazard_flag", {**FLAG, "flag_id": "f-3"}, iat=NOW)
    answer = await post_sealed(receiver, late)
    assert answer.status_code == 400 and answer.json() == {"code": "bad_signature"}
    assert jwks.hits == 1
    _, current = new.push(receiver.identity, "hazard_flag", {**FLAG, "flag_id": "f-4"}, iat=NOW)
    assert (await post_sealed(receiver, current)).status_code == 200
    jwks.status = 500
    clock.now += dt.timedelta(minutes=10)
    _, stale = new.push(receiver.identity, "hazard_flag", {**FLAG, "flag_id": "f-5"}, iat=NOW)
    assert (await post_sealed(receiver, stale)).status_code == 503
