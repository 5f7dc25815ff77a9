"""Which of a recipient's keys a message is sealed to, and what becomes of one sealed to a key
the recipient has since retired."""

from __future__ import annotations

import datetime as dt
from typing import Any

from joserfc.jwk import ECKey

from adapters.identity import AgencyIdentity
from gateway.agencies import add_agency, rotate_agency_keys
from gateway.flow.seal import agency_public_jwks
from gateway.store import Database

T0 = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)


def _enc_key() -> dict[str, Any]:
    key = ECKey.generate_key("P-256", private=False)
    data = key.as_dict(private=False)
    data.update({"kid": key.thumbprint(), "use": "enc", "alg": "ECDH-ES+A256KW"})
    return data


async def _agency(db: Database, agency_id: str, keys: list[dict[str, Any]]) -> AgencyIdentity:
    identity = AgencyIdentity.generate(agency_id)
    await add_agency(
        db,
        agency_id=agency_id,
        name=agency_id,
        agency_type="childrens_services",
        role="duty_to_cooperate",
        area="barnet",
        scopes=["inbox:read"],
        jwks={"keys": [identity.signing_key.as_dict(private=False), *keys]},
        now=T0,
    )
    return identity


async def _sealed_to(db: Database, agency_id: str, now: dt.datetime) -> str:
    """The kid Sealer.seal takes: the last encryption key agency_public_jwks lists."""
    async with db.read() as session:
        keys = await agency_public_jwks(session, agency_id, "enc", now)
    return str(keys[-1]["kid"])


async def test_a_message_is_sealed_to_the_newest_current_key_never_a_retiring_one(
    db: Database,
) -> None:
    """During a rotation's overlap the agency's retiring key is still valid, but a new message
    is sealed to its current key (the keys were read in no order, and the last one taken)."""
    kept, dropped = _enc_key(), _enc_key()
    identity = await _agency(db, "cs-a", [kept, dropped])
    sig = identity.signing_key.as_dict(private=False)
    t1 = T0 + dt.timedelta(hours=1)
    await rotate_agency_keys(db, "cs-a", {"keys": [sig, kept]}, dt.timedelta(days=1), now=t1)
    assert await _sealed_to(db, "cs-a", t1) == kept["kid"]

    newer = _enc_key()
    t2 = T0 + dt.timedelta(hours=2)
    await rotate_agency_keys(db, "cs-a", {"keys": [sig, newer, kept]}, dt.timedelta(0), now=t2)
    assert await _sealed_to(db, "cs-a", t2) == newer["kid"]  # both current: the newest
