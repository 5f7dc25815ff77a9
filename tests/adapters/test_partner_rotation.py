"""A partner rotates its encryption key: the SDK opens what the gateway sealed to either key
through the overlap, picks the key by the JWE's ``kid``, and drops the previous key when the
partner finishes.

The gateway seals to the key registered when a message is written, and keeps delivering a
message sealed to the previous key for the overlap ``agencies rotate-keys`` gives it: the
partner's receiver (restarted on the rotated kit) and client must still open it.
"""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwe
from joserfc.jwk import ECKey, KeySet

from adapters.childrens_services import ChildrensServicesAdapter
from adapters.client import GatewayClient
from adapters.identity import PRIVATE_JWKS_FILE, AgencyIdentity, UnknownEncryptionKey
from adapters.kit import (
    PUBLIC_JWKS_FILE,
    finish_encryption_key_rotation,
    partner_init,
    rotate_encryption_key,
)
from adapters.receiver import HELD_FOR_REVIEW, Receiver, SeenDeliveries
from adapters.standin import JsonStore
from gateway.contract.envelope import JOSE_MEDIA_TYPE
from gateway.flow import deliver
from gateway.oauth.jwks import parse_jwks
from gateway.state import GatewayState

ISSUER = "https://gateway.test"
CS = "barnet-childrens-services"
SAMPLES = Path(__file__).parent / "samples"


def _kit(folder: Path) -> AgencyIdentity:
    partner_init(
        folder,
        agency_id=CS,
        name="Barnet Children's Services",
        agency_type="childrens_services",
        role="duty_to_cooperate",
        area="barnet",
        issuer=ISSUER,
    )
    return AgencyIdentity.load(folder)


def _flag(ref: str = "FAM-20931") -> dict[str, Any]:
    return {
        "flag_id": str(uuid.uuid4()),
        "hazard_flag": {"child_or_family_ref": ref, "flag": "HZD", "relationship": "uncle"},
    }


def _sealed(state: GatewayState, to: ECKey, body: dict[str, Any]) -> tuple[str, str]:
    """A hazard flag the gateway seals to ``to`` (a public encryption key of the agency)."""
    assert state.sealer is not None
    push = deliver.prepare_push(
        state.sealer,
        body,
        recipient_id=CS,
        keys=[to.as_dict(private=False)],
        kind="hazard_flag",
        nominal_ref=None,
        now=state.clock(),
    )
    return push.message_id, push.sealed.jwe


async def _post(receiver: Receiver, sealed: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=receiver.app())
    async with httpx.AsyncClient(transport=transport, base_url="https://partner.test") as http:
        return await http.post(
            "/mappa/deliveries",
            content=sealed,
            headers={"Content-Type": JOSE_MEDIA_TYPE, "Idempotency-Key": str(uuid.uuid4())},
        )


async def test_a_message_sealed_to_the_previous_key_is_opened_through_the_overlap(
    app: FastAPI, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Sealed to the key the partner then rotated away from, and pushed during the overlap:
    the receiver restarted on the rotated kit applies it, the client opens it as pulled; one
    sealed to the new key too. A key the agency never held, or no kid at all, is refused as
    such (400 ``encryption_key_unknown``), no key tried. Finished, the previous key is gone."""
    state: GatewayState = app.state.gateway
    kit = tmp_path / "kit"
    before = _kit(kit)
    old_jti, to_old = _sealed(state, before.encryption_key, _flag())
    unknown_ref_jti, held_sealed = _sealed(state, before.encryption_key, _flag("FAM-30417"))

    rotated = rotate_encryption_key(kit)
    assert stat.S_IMODE((kit / PRIVATE_JWKS_FILE).stat().st_mode) == 0o600
    on_disk = json.loads((kit / PRIVATE_JWKS_FILE).read_text())
    assert [key["kid"] for key in on_disk["previous_encryption_keys"]] == [
        before.encryption_key.kid
    ]
    published = json.loads((kit / PUBLIC_JWKS_FILE).read_text())
    assert published == rotated.public_jwks()  # what the operator registers: current keys only
    assert {key.kid for key in parse_jwks(published)} == {
        before.signing_key.kid,
        rotated.encryption_key.kid,
    }
    assert rotated.encryption_key.kid != before.encryption_key.kid
    new_jti, to_new = _sealed(state, rotated.encryption_key, _flag())

    ics = tmp_path / "ics.json"
    ics.write_text((SAMPLES / "ics_store.json").read_text())
    gateway_keys = KeySet.import_key_set((await client.get("/.well-known/jwks.json")).json())

    def receiver() -> Receiver:  # restarted on the kit as it is on disk
        return Receiver(
            AgencyIdentity.load(kit),
            ChildrensServicesAdapter(JsonStore(ics)),
            ISSUER,
            gateway_keys=gateway_keys,
            clock=state.clock,
            seen=SeenDeliveries(tmp_path / "seen-deliveries.sqlite3"),
        )

    during = receiver()
    for jti, sealed in ((old_jti, to_old), (new_jti, to_new)):
        answer = await _post(during, sealed)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "accepted", "id": jti, "action": "hzd_alert_written"}
        pulled, _ = await GatewayClient(during.identity, ISSUER, client, clock=state.clock).open(
            sealed
        )
        assert pulled.jti == jti

    _, to_stranger = _sealed(state, AgencyIdentity.generate(CS).encryption_key, _flag())
    public = ECKey.import_key(during.identity.encryption_key.as_dict(private=False))
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT"}  # names no key
    without_kid = jwe.encrypt_compact(header, "x.y.z", public)
    for refused in (to_stranger, without_kid):
        answer = await _post(during, refused)
        assert answer.status_code == 400 and answer.json() == {"code": "encryption_key_unknown"}
        with pytest.raises(UnknownEncryptionKey):
            await GatewayClient(during.identity, ISSUER, client, clock=state.clock).open(refused)

    # Held for review, sealed to the previous key: the rotation is not finished over it.
    answer = await _post(during, held_sealed)
    assert answer.json()["action"] == HELD_FOR_REVIEW
    with pytest.raises(ValueError, match="held for review"):
        finish_encryption_key_rotation(kit, held=during.held_deliveries())
    assert AgencyIdentity.load(kit).previous_encryption_keys != ()
    await during.dismiss(unknown_ref_jti)
    finished = finish_encryption_key_rotation(kit, held=during.held_deliveries())
    assert finished.previous_encryption_keys == ()
    assert AgencyIdentity.load(kit).public_jwks() == rotated.public_jwks()
    assert "previous_encryption_keys" not in json.loads((kit / PRIVATE_JWKS_FILE).read_text())

    after = receiver()  # restarted once the rotation is finished
    _, late = _sealed(state, before.encryption_key, _flag())
    answer = await _post(after, late)
    assert answer.status_code == 400 and answer.json() == {"code": "encryption_key_unknown"}
    assert (await _post(after, _sealed(state, rotated.encryption_key, _flag())[1])).is_success


def test_a_kit_from_before_previous_keys_loads_as_it_is(tmp_path: Path) -> None:
    """A ``private-jwks.json`` with no previous keys (every kit written so far) loads with
    none, and a rotated one is still read by its ``keys`` alone as the current keys."""
    identity = AgencyIdentity.generate(CS)
    identity.save(tmp_path)
    assert AgencyIdentity.load(tmp_path).previous_encryption_keys == ()
    rotated = identity.with_new_encryption_key()
    rotated.replace(tmp_path)
    document = json.loads((tmp_path / PRIVATE_JWKS_FILE).read_text())
    current = {key["use"]: key["kid"] for key in document["keys"]}
    assert current == {"sig": identity.signing_key.kid, "enc": rotated.encryption_key.kid}


def test_finishing_a_rotation_without_the_held_deliveries_is_refused(tmp_path: Path) -> None:
    """``held`` has no default: a caller who forgot it would drop a key a held delivery is
    sealed to, so the call is a TypeError and the previous key is kept."""
    kit = tmp_path / "kit"
    _kit(kit)
    rotate_encryption_key(kit)
    with pytest.raises(TypeError):
        finish_encryption_key_rotation(kit)  # type: ignore[call-arg]
    assert AgencyIdentity.load(kit).previous_encryption_keys != ()
    assert finish_encryption_key_rotation(kit, held=[]).previous_encryption_keys == ()
