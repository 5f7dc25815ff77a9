"""THREATS.md "Keys rotated under load": no spurious failures, and a retired key is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
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
from tests.gateway.oauth.support import ISSUER, WHOAMI_URL, AgencyClient

from .test_seal import _request


@pytest.fixture
def own_keys(tmp_path: Path, gateway_keys: tuple[Path, Path]) -> tuple[Path, Path]:
    """A private copy of the gateway's keys, so this module may rotate them."""
    keys_dir, kek_file = gateway_keys
    shutil.copytree(keys_dir, tmp_path / "keys")
    shutil.copy(kek_file, tmp_path / "kek.bin")
    return tmp_path / "keys", tmp_path / "kek.bin"


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


async def test_calls_succeed_while_token_keys_rotate_and_retired_key_is_refused(
    http: httpx.AsyncClient,
    police: AgencyClient,
    gateway_state: GatewayState,
    own_keys: tuple[Path, Path],
) -> None:
    """200 concurrent protected calls across a token-key rotation all succeed; once the old key
    is retired, a token it signed is refused."""
    old_token = await police.token(http)
    operator = _operator(own_keys)
    (old,) = [i for i in operator.list() if i.purpose == Purpose.TOKEN_SIGNING]
    gateway_state.call_limiter = None  # quotas are another test's subject
    gateway_state.token_limiter = None

    async def one_call(i: int) -> int:
        token = old_token if i % 2 else await police.token(http)
        response = await http.get(WHOAMI_URL, headers=police.resource_headers(token))
        return response.status_code

    async def rotate_midway() -> None:
        await asyncio.sleep(0)
        operator.rotate(Purpose.TOKEN_SIGNING, dt.timedelta(hours=1), now=police.clock.now)

    statuses, _ = await asyncio.gather(
        asyncio.gather(*(one_call(i) for i in range(200))), rotate_midway()
    )
    assert statuses.count(200) == 200

    # A token signed by the new key (another replica already uses it) verifies here at once.
    new_token = await police.token(http)
    assert (
        await http.get(WHOAMI_URL, headers=police.resource_headers(new_token))
    ).status_code == 200

    operator.retire(Purpose.TOKEN_SIGNING, old.kid, now=police.clock.now)
    assert operator.ring(Purpose.TOKEN_SIGNING).current().kid != old.kid
    # After the gateway's cache refresh (or a restart) the retired key is refused.
    from gateway.keyring import open_key_repository

    open_key_repository(gateway_state.settings).reload()  # type: ignore[attr-defined]
    refused = await http.get(WHOAMI_URL, headers=police.resource_headers(old_token))
    assert refused.status_code == 401


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
