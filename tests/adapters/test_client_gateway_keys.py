"""The SDK client follows the gateway's key rotations, fetching its keys seldom and bounded.

The gateway is the real one, in process, with Barnet's agencies, on a private copy of the
session's keys; the operator rotates and retires them as ``mappa-gateway keys rotate`` and
``keys retire`` do (through the gateway's own repository, so that it signs and decrypts with
the change at once), while an agency's :class:`adapters.client.GatewayClient` keeps calling.
Every request the client sends goes through the world's ``httpx`` client, which counts them:
the JWKS fetches among them.
"""

# ruff: noqa: F811

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.errors import BadSignatureError

from adapters.client import GatewayClient, GatewayResponseError, Opened
from adapters.compact import signing_kid
from adapters.gateway_keys import GatewayJwks, KeysUnavailable
from adapters.identity import AgencyIdentity
from gateway.delivery.adapter_conformance import ECHO_PATH, forged_answer
from keys import KeyInfo, Purpose
from tests.adapters.support import encrypt_to

# The cases' gateway fixture (Barnet's agencies on SQLite), reused rather than written again;
# its name is then every test's parameter (F811).
from tests.gateway.cases.conftest import world  # noqa: F401
from tests.gateway.cases.scenario import HOUSING
from tests.gateway.cases.support import ISSUER, Agent, World

JWKS_PATH = "/.well-known/jwks.json"
#: Past the client's ``jwks_refetch_every`` (30 s): a fetch is due again.
PAST_THE_INTERVAL = 31


class Wire:
    """What the clients sent through the world's ``httpx`` client, and what came back."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.sent: list[httpx.Request] = []
        self.answers: list[tuple[str, int]] = []
        http.event_hooks["request"].append(self._sent)
        http.event_hooks["response"].append(self._answered)

    async def _sent(self, request: httpx.Request) -> None:
        self.sent.append(request)

    async def _answered(self, response: httpx.Response) -> None:
        self.answers.append((response.request.url.path, response.status_code))

    @property
    def fetches(self) -> int:
        return sum(request.url.path == JWKS_PATH for request in self.sent)

    def echoes(self, since: int = 0) -> list[httpx.Request]:
        return [r for r in self.sent[since:] if r.url.path == ECHO_PATH]


@pytest.fixture
def gateway_keys(gateway_keys: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The session's gateway keys, copied: these tests rotate and retire them."""
    copy = tmp_path / "rotated-keys"
    shutil.copytree(gateway_keys[0], copy / "keys")
    return copy / "keys", Path(shutil.copy(gateway_keys[1], copy / "kek.bin"))


@pytest.fixture
def wire(world: World) -> Wire:
    return Wire(world.http)


@pytest.fixture
def housing(world: World) -> Agent:
    return world[HOUSING]


class Operator:
    """``mappa-gateway keys rotate|retire``, at the gateway's time."""

    def __init__(self, world: World) -> None:
        assert world.state.sealer is not None
        self.repository = world.state.sealer.repository
        self.world = world

    def rotate(self, purpose: Purpose, overlap: dt.timedelta) -> KeyInfo:
        """The new key of ``purpose`` the client uses (ES256 or ECDH-ES, not the RSA one)."""
        created = self.repository.rotate(purpose, overlap, now=self.world.clock.now)
        return next(info for info in created if info.alg in ("ES256", "ECDH-ES+A256KW"))

    def retire(self, purpose: Purpose, kid: str) -> None:
        self.repository.retire(purpose, kid, now=self.world.clock.now)


@pytest.fixture
def operator(world: World, gateway_keys: tuple[Path, Path]) -> Operator:
    assert world.state.settings.keys_dir == gateway_keys[0]  # the copy, not the session's
    return Operator(world)


async def _echo(agent: Agent, key: str | None = None, **body: Any) -> Opened:
    probe = {"conformance": "rotation", "nonce": uuid.uuid4().hex, **body}
    answer = await agent.client.call(
        "POST", ECHO_PATH, agent.context, body=probe, idempotency_key=key
    )
    assert isinstance(answer, Opened)
    return answer


def _signed_by(answer: Opened) -> str:
    return signing_kid(answer.jws)


def _sealed_to(request: httpx.Request) -> str:
    return signing_kid(request.content.decode("ascii"))


def _aside(world: World) -> httpx.AsyncClient:
    """Another ``httpx`` client to the same gateway: the wire does not count its requests."""
    return httpx.AsyncClient(transport=world.http._transport, base_url=ISSUER)


async def _published(world: World) -> list[str]:
    """The kids of the gateway's JWKS, in its order."""
    async with _aside(world) as http:
        return [str(key["kid"]) for key in (await http.get(JWKS_PATH)).json()["keys"]]


async def test_a_rotation_of_the_signing_key_is_followed_with_one_fetch(
    world: World, wire: Wire, housing: Agent, operator: Operator
) -> None:
    """The operator rotates the payload-signing key under a running client: the first answer
    signed by the new key fetches the keys once more and opens, and the ones after need none."""
    before = _signed_by(await _echo(housing))
    assert wire.fetches == 1
    assert _signed_by(await _echo(housing)) == before and wire.fetches == 1
    new = operator.rotate(Purpose.PAYLOAD_SIGNING, dt.timedelta(hours=1))
    world.clock.advance(seconds=PAST_THE_INTERVAL)
    answers = [await _echo(housing) for _ in range(3)]
    assert {_signed_by(answer) for answer in answers} == {new.kid} != {before}
    assert wire.fetches == 2


async def test_an_unknown_kid_fetches_at_most_once_per_interval(
    world: World, wire: Wire, housing: Agent, operator: Operator
) -> None:
    """Answers naming a kid the client does not hold fetch the keys at most once per 30 s: a
    rotation less than that after the client's fetch is refused as a bad signature until the
    interval has passed, then followed; forged answers naming a kid the gateway never had are
    refused, one fetch an interval whatever their number; garbage fetches nothing."""
    await _echo(housing)
    assert wire.fetches == 1
    new = operator.rotate(Purpose.PAYLOAD_SIGNING, dt.timedelta(hours=1))
    for _ in range(3):
        with pytest.raises(BadSignatureError):
            await _echo(housing)
    world.clock.advance(seconds=PAST_THE_INTERVAL - 2)
    with pytest.raises(BadSignatureError):
        await _echo(housing)
    assert wire.fetches == 1
    world.clock.advance(seconds=2)
    assert _signed_by(await _echo(housing)) == new.kid
    assert wire.fetches == 2

    identity = housing.identity
    for _ in range(20):
        with pytest.raises(BadSignatureError):
            await housing.client.open(forged_answer(identity, ISSUER, "not-the-gateways"))
    assert wire.fetches == 2  # the keys were fetched less than 30 s ago
    world.clock.advance(seconds=PAST_THE_INTERVAL)
    for _ in range(20):
        with pytest.raises(BadSignatureError):
            await housing.client.open(forged_answer(identity, ISSUER, "not-the-gateways"))
    assert wire.fetches == 3
    world.clock.advance(seconds=PAST_THE_INTERVAL)
    for garbage in ["garbage.garbage.garbage", "!!!!.e30.AAAA", "x" * 5000]:
        with pytest.raises(ValueError):  # MalformedSignature: no kid to look for
            await housing.client.open(encrypt_to(identity, garbage))
    assert wire.fetches == 3


async def test_nothing_is_accepted_from_a_key_the_gateway_no_longer_publishes(
    world: World, wire: Wire, housing: Agent, operator: Operator
) -> None:
    """After a compromise (rotated with no overlap, the old key retired) the gateway's first
    answer fetches the keys again; then an answer the old key signed is a bad signature, as is
    one naming the new key signed by another or naming a kid the gateway never had, after a
    fetch or not: the client holds what the gateway publishes, nothing else."""
    first = await _echo(housing)
    old = _signed_by(first)
    new = operator.rotate(Purpose.PAYLOAD_SIGNING, dt.timedelta(0))
    operator.retire(Purpose.PAYLOAD_SIGNING, old)
    world.clock.advance(seconds=PAST_THE_INTERVAL)
    assert _signed_by(await _echo(housing)) == new.kid
    assert wire.fetches == 2
    held = {str(key.kid) for key in (await housing.client.gateway_keys()).keys}
    assert held == set(await _published(world)) and old not in held
    identity = housing.identity
    for _ in range(2):
        for refused in [
            first.response.text,  # signed by the gateway, with the key since retired
            forged_answer(identity, ISSUER, new.kid),
            forged_answer(identity, ISSUER, "not-the-gateways"),
        ]:
            with pytest.raises(BadSignatureError):
                await housing.client.open(refused)
        world.clock.advance(seconds=PAST_THE_INTERVAL)
    assert wire.fetches == 3  # one more fetch, the second time round


async def test_a_body_sealed_to_a_retired_key_is_sealed_again_and_sent_once_more(
    world: World, wire: Wire, housing: Agent, operator: Operator
) -> None:
    """The operator rotates the payload-encryption key: through the overlap the client still
    seals to the previous key, and the gateway opens it. Once that key is retired, the call
    sealed to it is refused (400 ``unreadable_body``); the client fetches the keys once, finds
    it gone, and sends the call once more sealed to the new key, with the same Idempotency-Key
    and a fresh DPoP proof: it succeeds, and later calls go to the new key at once."""
    await _echo(housing)
    (old,) = {_sealed_to(request) for request in wire.echoes()}
    new = operator.rotate(Purpose.PAYLOAD_ENCRYPTION, dt.timedelta(hours=1))
    await _echo(housing)
    assert _sealed_to(wire.echoes()[-1]) == old and wire.fetches == 1
    async with _aside(world) as http:  # a client started now seals to the new key
        started = GatewayClient(housing.identity, ISSUER, http, clock=world.clock)
        assert signing_kid(await started.seal({"conformance": "rotation"})) == new.kid
    operator.retire(Purpose.PAYLOAD_ENCRYPTION, old)
    world.clock.advance(seconds=PAST_THE_INTERVAL)

    since, key = len(wire.sent), str(uuid.uuid4())
    answer = await _echo(housing, key)
    assert answer.body["status"] == "echoed"
    first, again = wire.echoes(since)
    assert [_sealed_to(first), _sealed_to(again)] == [old, new.kid]
    assert first.headers["idempotency-key"] == again.headers["idempotency-key"] == key
    assert first.headers["dpop"] != again.headers["dpop"]
    echoed = [status for path, status in wire.answers if path == ECHO_PATH]
    assert echoed[-2:] == [400, 200]
    assert wire.fetches == 2

    since = len(wire.sent)
    await _echo(housing)
    assert [_sealed_to(request) for request in wire.echoes(since)] == [new.kid]
    assert wire.fetches == 2


class Garbling(GatewayClient):
    """Seals to the gateway's current key, but breaks the ciphertext's tag: a body the
    gateway cannot open though the key it names is one it holds."""

    async def seal(self, body: dict[str, Any]) -> str:
        header, key, iv, ciphertext, tag = (await super().seal(body)).split(".")
        return ".".join([header, key, iv, ciphertext, "A" * len(tag)])


class Unsealed(GatewayClient):
    """Sends the body as plain JSON: no JWE, so no key named."""

    async def seal(self, body: dict[str, Any]) -> str:
        return json.dumps(body)


async def test_no_other_refusal_is_sent_again(world: World, wire: Wire, housing: Agent) -> None:
    """A body the gateway cannot open while the key it was sealed to is still published, a
    body it refuses as invalid, a body that is no JWE at all: each is sent once and its refusal
    goes back to the caller; only the first fetches the keys (once an interval) to see whether
    the key is gone."""
    garbling = Garbling(housing.identity, ISSUER, world.http, clock=world.clock)
    await garbling.gateway_keys()
    assert wire.fetches == 1
    world.clock.advance(seconds=PAST_THE_INTERVAL)
    for fetched in (2, 2):
        since = len(wire.sent)
        with pytest.raises(GatewayResponseError) as refused:
            await garbling.call(
                "POST",
                ECHO_PATH,
                housing.context,
                body={"conformance": "garbled", "nonce": uuid.uuid4().hex},
            )
        assert (refused.value.status, refused.value.code) == (400, "unreadable_body")
        assert len(wire.echoes(since)) == 1 and wire.fetches == fetched

    await _echo(housing)
    world.clock.advance(seconds=PAST_THE_INTERVAL)
    fetches, since = wire.fetches, len(wire.sent)
    with pytest.raises(GatewayResponseError) as invalid:
        await _echo(housing, unknown_field="x")
    assert (invalid.value.status, invalid.value.code) == (422, "validation_failed")
    unsealed = Unsealed(housing.identity, ISSUER, world.http, clock=world.clock)
    with pytest.raises(GatewayResponseError) as unreadable:
        await unsealed.call("POST", ECHO_PATH, housing.context, body={"conformance": "plain"})
    assert (unreadable.value.status, unreadable.value.code) == (400, "unreadable_body")
    assert len(wire.echoes(since)) == 2 and wire.fetches == fetches


async def test_a_fetch_through_the_clients_own_http_is_bounded() -> None:
    """Fetched through a given ``httpx`` client (the partner's own to the gateway, whatever
    it allows), the keys still follow no redirect and are read up to the size cap only."""
    seen: list[str] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == JWKS_PATH:
            return httpx.Response(302, headers={"Location": "https://elsewhere.test/jwks"})
        return httpx.Response(200, content=b'{"keys": []}' + b" " * 70_000)

    now = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(gateway), follow_redirects=True
    ) as http:
        redirected = GatewayJwks(f"{ISSUER}{JWKS_PATH}", http=http)
        with pytest.raises(KeysUnavailable) as refused:
            await redirected.refresh(now)
        assert refused.value.reason == "jwks_http_302" and seen == [JWKS_PATH]
        too_large = GatewayJwks(f"{ISSUER}/large", http=http)
        with pytest.raises(KeysUnavailable) as refused:
            await too_large.refresh(now)
        assert refused.value.reason == "jwks_too_large"
        with pytest.raises(ValueError, match="jwks_url"):  # keys in clear could be swapped
            GatewayClient(AgencyIdentity.generate(HOUSING), "http://gateway.example", http)
