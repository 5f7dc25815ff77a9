"""A damaged or foreign file in one of the gateway's own key folders is the gateway's fault:
503 ``keys_unavailable``, the file named in the operational log (never its content), and never
a 500 nor the sender's 400."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from structlog.testing import capture_logs

from gateway.app import create_app
from gateway.flow.seal import Sealer
from gateway.settings import Settings
from keys import FileKeyRepository, KeyStoreError, kek_from_file

FOREIGN = "A" * 43 + ".json"  # named like a key file, holding no key
DAMAGED = '{"kid": "not-a-key", "secret-looking": "s3cr3t-c0ntent"'


@pytest.fixture
def settings(sqlite_url: str, gateway_keys: tuple[Path, Path], tmp_path: Path) -> Settings:
    keys_dir, kek_file = gateway_keys
    shutil.copytree(keys_dir, tmp_path / "keys")
    return Settings(
        profile="test",
        database_url=sqlite_url,
        issuer="https://gateway.test",
        keys_dir=tmp_path / "keys",
        kek_file=kek_file,
        key_refresh_seconds=0.05,
        audit_sequence_interval_seconds=0,
        relay_interval_seconds=0,
    )


async def test_a_damaged_signing_key_file_is_503_and_named_in_the_log(settings: Settings) -> None:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://gateway.test"
        ) as client,
    ):
        assert (await client.get("/.well-known/jwks.json")).status_code == 200
        (settings.keys_dir / "token-signing" / FOREIGN).write_text(DAMAGED)
        await asyncio.sleep(0.1)  # past the refresh interval: the folder is read again
        with capture_logs() as logs:
            answer = await client.get("/.well-known/jwks.json")
    assert answer.status_code == 503
    assert answer.json()["code"] == "keys_unavailable"
    [line] = [e for e in logs if e["event"] == "keys_unavailable"]
    assert FOREIGN in line["reason"]
    assert "s3cr3t" not in repr(logs) and "s3cr3t" not in answer.text


async def test_a_broken_decryption_ring_is_not_the_senders_unreadable_body(
    gateway_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Before, the ring was loaded inside the try that turns a rejected JWE into 400
    unreadable_body, so a partner was told to fix a sound request."""
    keys_dir, kek_file = gateway_keys
    shutil.copytree(keys_dir, tmp_path / "keys")
    repository = FileKeyRepository(
        tmp_path / "keys", kek_from_file(kek_file), refresh_interval=dt.timedelta(0)
    )
    sealer = Sealer(repository, issuer="https://gateway.test", max_json_depth=32)
    (tmp_path / "keys" / "payload-encryption" / FOREIGN).write_text(DAMAGED)
    header = "eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00iLCJjdHkiOiJKV1QifQ"
    body = f"{header}.a.b.c.d".encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/referrals",
        "headers": [(b"content-type", b"application/jose")],
    }
    with pytest.raises(KeyStoreError):
        await sealer.open(
            Request(scope, receive),
            sender_id="police",
            sender_keys=[{"kty": "EC"}],
            now=dt.datetime.now(dt.UTC),
        )
