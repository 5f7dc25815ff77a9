"""Helpers for the delivery tests: partners with endpoints and keys, sealed-looking rows."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey
from sqlalchemy import select

from adapters.identity import AgencyIdentity
from gateway.agencies import add_agency
from gateway.delivery import enqueue
from gateway.delivery.endpoints import set_endpoint
from gateway.delivery.push import PushConfig
from gateway.delivery.relay import RelayConfig
from gateway.store import Database
from gateway.store.models import Meeting, MeetingAgency, Nominal, OutboxMessage

JWE = "eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00ifQ.a2V5.aXY.Y2lwaGVydGV4dA.dGFn"


def encryption_key() -> dict[str, Any]:
    """A new public encryption JWK, as an agency registers one."""
    key = ECKey.generate_key("P-256", private=False)
    data = key.as_dict(private=False)
    data.update({"kid": key.thumbprint(), "use": "enc", "alg": "ECDH-ES+A256KW"})
    return data


def sealed_to(kid: str) -> str:
    """A stored message as the outbox holds it, its JWE header naming the recipient key."""
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", "kid": kid}
    head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{head}.a2V5.aXY.Y2lwaGVydGV4dA.dGFn"


async def partner(
    db: Database,
    agency_id: str,
    url: str | None,
    ca_pem: str | None = None,
    *,
    agency_type: str = "childrens_services",
) -> AgencyIdentity:
    identity = AgencyIdentity.generate(agency_id)
    await add_agency(
        db,
        agency_id=agency_id,
        name=agency_id,
        agency_type=agency_type,
        role="duty_to_cooperate",
        area="barnet",
        scopes=["inbox:read"],
        jwks=identity.public_jwks(),
    )
    if url is not None:
        await set_endpoint(db, agency_id, url=url, ca_pem=ca_pem, development=True)
    return identity


async def known_nominal(
    db: Database, nominal_id: str, lead: str, *attending: str, held_on: dt.date | None = None
) -> None:
    """A level 2 nominal ``lead`` leads, and a level 2 meeting (held ``held_on``, today by
    default) the ``attending`` agencies attended: need-to-know lets each know of it, so the
    messages about it queued for them are delivered (the relay and the inbox decide again)."""
    day = held_on or dt.datetime.now(dt.UTC).date()
    async with db.write() as session:
        session.add(
            Nominal(
                id=nominal_id,
                area="barnet",
                category=1,
                level=2,
                lead_agency_id=lead,
                details_sealed=b"-",
            )
        )
        await session.flush()
        if attending:
            meeting_id = f"{nominal_id}-meeting"
            session.add(
                Meeting(
                    id=meeting_id,
                    nominal_id=nominal_id,
                    meeting_type="level_2",
                    chair_agency_id=lead,
                    chair_officer="DI-1",
                    held_on=day,
                    level_at_meeting=2,
                )
            )
            await session.flush()
            for agency_id in attending:
                session.add(
                    MeetingAgency(
                        meeting_id=meeting_id, agency_id=agency_id, participation="attended"
                    )
                )


async def queue(db: Database, agency_id: str, n: int = 1, kind: str = "hazard_flag") -> list[str]:
    ids = []
    async with db.write() as session:
        for _ in range(n):
            ids.append(await enqueue(session, recipient_agency_id=agency_id, kind=kind, body=JWE))
    return ids


async def rows(db: Database) -> dict[str, OutboxMessage]:
    async with db.read() as session:
        return {r.id: r for r in (await session.scalars(select(OutboxMessage))).all()}


def fast_config(**overrides: Any) -> RelayConfig:
    push = PushConfig(
        connect_timeout=overrides.pop("connect_timeout", 0.5),
        read_timeout=overrides.pop("read_timeout", 0.5),
        total_timeout=overrides.pop("total_timeout", 1.0),
        max_response_bytes=4096,
        partner_concurrency=overrides.pop("partner_concurrency", 2),
        unsafe_plain_http=overrides.pop("unsafe_plain_http", False),
        development=overrides.pop("development", True),  # the stubs listen on the loopback
    )
    values: dict[str, Any] = {
        "interval": 0.02,
        "lease_seconds": 5.0,
        "max_attempts": 4,
        "backoff_base": 0.01,
        "backoff_cap": 0.02,
        "breaker_threshold": 100,
        "breaker_cooldown": 0.2,
        "push": push,
    }
    values.update(overrides)
    return RelayConfig(**values)


async def until(predicate: Any, within: float = 10.0) -> None:
    import asyncio

    deadline = asyncio.get_running_loop().time() + within
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def development_keys(gateway_keys: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the session's gateway keys for an app started in the development profile (its
    stub partners listen on the loopback), which marks its key directory as development keys:
    the session's own directory must stay one that other profiles accept."""
    keys_dir, kek_file = gateway_keys
    return Path(shutil.copytree(keys_dir, tmp_path / "development-keys")), kek_file
