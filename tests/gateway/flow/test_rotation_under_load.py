"""THREATS.md "Keys rotated under load": no spurious failures, and a retired key is refused."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwe, jws
from joserfc.jwk import KeySet

from gateway.contract.envelope import BODY_TYP, SignedBody
from gateway.flow.seal import Sealer
from gateway.settings import Settings
from gateway.state import GatewayState
from keys import FileKeyRepository, Purpose, kek_from_file
from tests.gateway.oauth.support import ISSUER, WHOAMI_URL, AgencyClient, Ledger, assert_refused

from .test_seal import _request


@pytest.fixture
def own_keys(tmp_path: Path, gateway_keys: tuple[Path, Path]) -> tuple[Path, Path]:
    """A private copy of the gateway's keys, so this module may rotate them."""
    keys_dir, kek_file = gateway_keys
    shutil.copytree(keys_dir, tmp_path / "keys")
    shutil.copy(kek_file, tmp_path / "kek.bin")
    return tmp_path / "keys", tmp_path / "kek.bin"


#: How long the gateway under test keeps its key rings before it reads its keys again: short,
#: so that it sees the operator's rotation while the calls are in flight (the default is 30 s).
KEY_REFRESH_SECONDS = 0.05


@pytest.fixture
def oauth_settings(sqlite_url: str, own_keys: tuple[Path, Path]) -> Settings:
    keys_dir, kek_file = own_keys
    return Settings(
        profile="test",
        database_url=sqlite_url,
        issuer=ISSUER,
        keys_dir=keys_dir,
        kek_file=kek_file,
        log_json=True,
        key_refresh_seconds=KEY_REFRESH_SECONDS,
        # quotas are another test's subject: here every call of the load must get through
        rate_limit_per_second=100_000,
        rate_limit_burst=100_000,
        token_rate_limit_per_second=100_000,
        token_rate_limit_burst=100_000,
    )


def _operator(own_keys: tuple[Path, Path]) -> FileKeyRepository:
    """The operator's `mappa-gateway keys` process: its own view of the same directory."""
    keys_dir, kek_file = own_keys
    return FileKeyRepository(keys_dir, kek_from_file(kek_file))


def _seal_to(key: dict[str, Any], agency: AgencyClient, sign_key: Any) -> str:
    """What a partner does: sign a body, encrypt it to the gateway key it fetched."""
    signed = SignedBody.wrap({"n": 1}, iss=agency.client_id, aud=ISSUER, now=agency.clock.now)
    inner = jws.serialize_compact(
        {"alg": "ES256", "kid": agency.kid, "typ": BODY_TYP}, signed.model_dump_json(), sign_key
    )
    recipient = KeySet.import_key_set({"keys": [key]}).keys[0]
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", "kid": key["kid"]}
    return jwe.encrypt_compact(header, inner, recipient)


def _ecdh_key(jwks: dict[str, Any]) -> dict[str, Any]:
    return next(k for k in jwks["keys"] if k.get("alg") == "ECDH-ES+A256KW")


def _kid(token: str) -> str:
    """The ``kid`` in a compact JWS's header."""
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


@dataclass(frozen=True)
class _Done:
    """One request of the load: a token request or a protected call, and how it went."""

    what: str  # "token": a token request; "fresh", "old": a call with a fresh or an old token
    kid: str | None  # the kid of the token issued or presented
    status: int
    #: When it was sent and answered: before the operator began rotating, or after the gateway
    #: had issued its first token signed by the new key.
    sent_after_pickup: bool
    answered_before_rotation: bool


#: Protected calls in flight at once, and at least how many of each kind the load makes.
WORKERS = 16
MIN_CALLS = 200
MIN_EACH_AFTER_PICKUP = 40


async def test_calls_succeed_while_token_keys_rotate_and_retired_key_is_refused(
    http: httpx.AsyncClient, police: AgencyClient, ledger: Ledger, own_keys: tuple[Path, Path]
) -> None:
    """The operator rotates the token-signing key while 16 agency sessions keep getting tokens
    and calling: the gateway picks the rotation up without a restart and without one failed
    request: it signs new tokens with the new key, and tokens signed by the old key still verify
    through the overlap (remembered ones and ones it first sees after the rotation). Once the
    old key is retired, a token it signed is refused as ``key_retired``."""
    operator = _operator(own_keys)
    (old,) = [i for i in operator.list() if i.purpose == Purpose.TOKEN_SIGNING]
    # Tokens signed by the old key: half used from the start (so remembered as verified), half
    # first presented only after the rotation, and one kept back until the old key is retired.
    old_tokens = [await police.token(http) for _ in range(9)]
    held_back = old_tokens.pop()
    assert {_kid(t) for t in [*old_tokens, held_back]} == {old.kid}

    done: list[_Done] = []
    rotating = asyncio.Event()
    picked_up = asyncio.Event()  # the gateway issued a token signed by the new key
    stop = asyncio.Event()
    progress = asyncio.Event()  # set as each request ends
    new_kid: list[str] = []
    presented_after_pickup: set[str] = set()

    def enough() -> bool:
        after = [d for d in done if d.sent_after_pickup]
        return (
            sum(d.what != "token" for d in done) >= MIN_CALLS
            and sum(d.what == "fresh" for d in after) >= MIN_EACH_AFTER_PICKUP
            and sum(d.what == "old" for d in after) >= MIN_EACH_AFTER_PICKUP
            and presented_after_pickup == set(old_tokens)
        )

    def finished(request: _Done) -> None:
        done.append(request)
        progress.set()

    async def session(n: int) -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            after_pickup = picked_up.is_set()
            if (n + i) % 2:
                what = "old"
                usable = old_tokens if after_pickup else old_tokens[:4]
                token = usable[(n + i // 2) % len(usable)]
                if after_pickup:
                    presented_after_pickup.add(token)
            else:
                what = "fresh"
                issued = await police.token_response(http)
                token = issued.json().get("access_token", "") if issued.is_success else ""
                kid = _kid(token) if token else None
                finished(
                    _Done("token", kid, issued.status_code, after_pickup, not rotating.is_set())
                )
                if not token:
                    continue
                if new_kid and kid == new_kid[0]:
                    picked_up.set()
            answer = await http.get(WHOAMI_URL, headers=police.resource_headers(token))
            finished(
                _Done(what, _kid(token), answer.status_code, after_pickup, not rotating.is_set())
            )

    async def wait_for(condition: Callable[[], bool], seconds: float) -> None:
        """Until ``condition`` holds (checked as each request ends), or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not condition():
                    progress.clear()
                    await progress.wait()

    sessions = [asyncio.create_task(session(n)) for n in range(WORKERS)]
    try:
        await wait_for(lambda: len(done) >= 60, 10)
        rotating.set()
        # The operator's `mappa-gateway keys rotate`, in a thread, while the load goes on.
        (new,) = await asyncio.to_thread(
            operator.rotate, Purpose.TOKEN_SIGNING, dt.timedelta(hours=1), now=police.clock.now
        )
        new_kid.append(new.kid)
        await wait_for(enough, 10)
    finally:
        stop.set()
        await asyncio.gather(*sessions)

    assert new.kid != old.kid
    assert [d for d in done if d.status != 200] == [], "a request failed during the rotation"
    calls = [d for d in done if d.what != "token"]
    assert len(calls) >= MIN_CALLS
    issued = [d for d in done if d.what == "token"]
    # before the rotation every token carried the old kid; the gateway then picked up the new
    # key while the load went on, and from then on signed with it alone
    assert {d.kid for d in issued if d.answered_before_rotation} == {old.kid}
    assert {d.kid for d in issued} == {old.kid, new.kid}, "the gateway never saw the rotation"
    assert {d.kid for d in issued if d.sent_after_pickup} == {new.kid}
    # through the overlap, tokens signed by the old key kept working (all eight of them,
    # four presented for the first time only after the rotation)
    assert presented_after_pickup == set(old_tokens)
    overlap = [d for d in calls if d.sent_after_pickup and d.kid == old.kid]
    assert len(overlap) >= MIN_EACH_AFTER_PICKUP
    assert {d.status for d in overlap} == {200}
    assert sum(d.sent_after_pickup and d.kid == new.kid for d in calls) >= MIN_EACH_AFTER_PICKUP

    operator.retire(Purpose.TOKEN_SIGNING, old.kid, now=police.clock.now)
    await asyncio.sleep(KEY_REFRESH_SECONDS * 4)  # the gateway's next read of its keys
    # A token of the old key, remembered as verified or never seen before: refused, audited.
    for token in (old_tokens[0], held_back):
        issued_before, jtis_before = await ledger.issued(), await ledger.jtis()
        refused = await http.get(WHOAMI_URL, headers=police.resource_headers(token))
        entry = await assert_refused(
            refused,
            ledger,
            code="invalid_token",
            reason="key_retired",
            issued=issued_before,
            jtis=jtis_before,
        )
        assert (
            refused.headers["www-authenticate"] == 'DPoP algs="ES256 EdDSA", error="invalid_token"'
        )
        assert refused.json()["error"] == "invalid_token"
        assert (entry.operation, entry.outcome) == ("authentication", "refused")
    # while a token of the new key, as every token issued now, still works
    fresh = await police.token(http)
    assert _kid(fresh) == new.kid
    assert (await http.get(WHOAMI_URL, headers=police.resource_headers(fresh))).status_code == 200


async def test_replica_that_has_not_refreshed_opens_a_body_for_the_new_key(
    police: AgencyClient, own_keys: tuple[Path, Path], gateway_state: GatewayState
) -> None:
    """Replica B, its ring cached before the rotation, opens a body sealed to the new key that
    replica A already publishes: it re-reads its keys once instead of refusing."""
    keys_dir, kek_file = own_keys
    repository_b = FileKeyRepository(
        keys_dir, kek_from_file(kek_file), unknown_kid_reload_interval=dt.timedelta(seconds=0.1)
    )
    replica_b = Sealer(repository_b, issuer=ISSUER, max_json_depth=32)
    replica_b.repository.ring(Purpose.PAYLOAD_ENCRYPTION)  # cached now, for 30 s
    await asyncio.sleep(0.15)  # past the re-read rate limit, well inside the cache period
    operator = _operator(own_keys)
    operator.rotate(Purpose.PAYLOAD_ENCRYPTION, dt.timedelta(hours=1), now=police.clock.now)
    replica_a_jwks = operator.jwks(now=police.clock.now)
    new_key = _ecdh_key({"keys": [k for k in replica_a_jwks["keys"]]})
    old_keys = {i.kid for i in replica_b.repository.ring(Purpose.PAYLOAD_ENCRYPTION).infos()}
    assert new_key["kid"] not in old_keys  # replica B really had the old view

    body = _seal_to(new_key, police, police.key)
    opened = await replica_b.open(
        _request(body.encode()),
        sender_id=police.client_id,
        sender_keys=police.public_jwks()["keys"],
        now=police.clock.now,
    )
    assert opened.body == {"n": 1}


async def test_body_sealed_to_a_retired_key_is_refused(
    police: AgencyClient, own_keys: tuple[Path, Path]
) -> None:
    """Once the old encryption key is retired, a body sealed to it opens for nobody."""
    keys_dir, kek_file = own_keys
    sealer = Sealer(
        FileKeyRepository(keys_dir, kek_from_file(kek_file)), issuer=ISSUER, max_json_depth=32
    )
    old_key = _ecdh_key(sealer.repository.jwks(now=police.clock.now))
    body = _seal_to(old_key, police, police.key)
    operator = _operator(own_keys)
    operator.rotate(Purpose.PAYLOAD_ENCRYPTION, dt.timedelta(hours=1), now=police.clock.now)
    operator.retire(Purpose.PAYLOAD_ENCRYPTION, old_key["kid"], now=police.clock.now)
    sealer.repository.reload()  # type: ignore[attr-defined]
    from gateway import errors

    with pytest.raises(errors.UnreadableBody) as caught:
        await sealer.open(
            _request(body.encode()),
            sender_id=police.client_id,
            sender_keys=police.public_jwks()["keys"],
            now=police.clock.now,
        )
    assert "retired" in caught.value.diagnostics["reason"]
