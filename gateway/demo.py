"""``mappa-gateway demo init``: a working gateway on one machine, for a newcomer.

In the ``development`` profile only, and idempotently: migrate the database, generate the
gateway's development keys, onboard one agency of each kind that the Barnet procedure (seed
``004``) names, each with its own freshly generated keys saved for its adapter under
``var/demo/agencies/<id>/``, and create an IG officer account reviewing the Barnet area, whose
password is written to ``var/demo/ig-officer.txt`` (mode 0600). Nothing here runs in any other
profile.

Each demo agency's push endpoint is its demo receiver over https on 127.0.0.1, registered with
that agency's own development CA (``var/demo/agencies/<id>/tls/ca.pem``, made with its server
certificate by :func:`adapters.demo.ensure_demo_tls`; renewed, and registered again, when near
expiry). The relay pushes to them as to any partner: TLS trusting that partner's CA alone, no
plain-http allowance needed. An endpoint registered by hand elsewhere is left alone.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from adapters.identity import AgencyIdentity
from gateway.agencies import add_agency, list_agencies
from gateway.console.accounts import add_officer
from gateway.console.scope import ReviewScope
from gateway.domain import AgencyType, Role
from gateway.settings import Settings
from gateway.store import Database, upgrade
from gateway.store.models import Agency, IGOfficer

__all__ = ["DEMO_AGENCIES", "DEMO_AREA", "DemoAgency", "init_demo"]

DEMO_AREA = "barnet"
DEMO_SCOPES = ("case:read", "case:write", "inbox:read")
DEMO_OFFICER = "ig.officer"


@dataclass(frozen=True)
class DemoAgency:
    id: str
    name: str
    agency_type: AgencyType
    role: Role


DEMO_AGENCIES = (
    DemoAgency(
        "barnet-police",
        "Metropolitan Police, Barnet",
        AgencyType.POLICE,
        Role.RESPONSIBLE_AUTHORITY,
    ),
    DemoAgency(
        "barnet-probation",
        "Probation Service, Barnet",
        AgencyType.PROBATION,
        Role.RESPONSIBLE_AUTHORITY,
    ),
    DemoAgency(
        "barnet-childrens-services",
        "Barnet Children's Services",
        AgencyType.CHILDRENS_SERVICES,
        Role.DUTY_TO_COOPERATE,
    ),
    DemoAgency("barnet-housing", "Barnet Homes", AgencyType.HOUSING, Role.DUTY_TO_COOPERATE),
)


class DemoRefused(RuntimeError):
    pass


def _demo_dir(settings: Settings) -> Path:
    return Path(settings.keys_dir).parent / "demo"


async def _onboard(settings: Settings, demo_dir: Path) -> list[str]:
    db = Database(settings.database_url)
    done: list[str] = []
    try:
        existing = {agency.id for agency in await list_agencies(db)}
        for agency in DEMO_AGENCIES:
            if agency.id in existing:
                continue
            identity = AgencyIdentity.generate(agency.id)
            identity.save(demo_dir / "agencies" / agency.id)
            await add_agency(
                db,
                agency_id=agency.id,
                name=agency.name,
                agency_type=agency.agency_type,
                role=agency.role,
                area=DEMO_AREA,
                scopes=DEMO_SCOPES,
                jwks=identity.public_jwks(),
            )
            done.append(agency.id)
        await _register_demo_endpoints(db, demo_dir)
        async with db.write() as session:
            if await session.get(IGOfficer, DEMO_OFFICER) is None:
                password = secrets.token_urlsafe(18)
                await add_officer(
                    session,
                    DEMO_OFFICER,
                    "Demo IG officer",
                    password,
                    scope=ReviewScope(areas=(DEMO_AREA,)),
                )
                path = demo_dir / "ig-officer.txt"
                path.unlink(missing_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(f"officer: {DEMO_OFFICER}\npassword: {password}\n")
                done.append(DEMO_OFFICER)
    finally:
        await db.dispose()
    return done


async def _register_demo_endpoints(db: Database, demo_dir: Path) -> None:
    """Point each demo agency at its demo adapter (``demo adapters``) over https with its demo
    CA, unless it has an endpoint of its own; an earlier demo's registration (plain http, or
    an older CA) is replaced."""
    from adapters.demo import DEMO_PORTS, demo_endpoint, ensure_demo_tls
    from gateway.delivery.endpoints import set_endpoint

    for agency in DEMO_AGENCIES:
        url = demo_endpoint(agency.id)
        ca_pem = ensure_demo_tls(demo_dir, agency.id)
        demo_urls = {url, f"http://127.0.0.1:{DEMO_PORTS[agency.id][1]}/mappa/deliveries"}
        async with db.read() as session:
            found = await session.get(Agency, agency.id)
            if found is None:
                continue
            current = (found.endpoint_url, found.endpoint_ca_pem)
        if (current[0] is None or current[0] in demo_urls) and current != (url, ca_pem):
            # init_demo runs in the development profile only: the loopback is allowed
            await set_endpoint(db, agency.id, url=url, ca_pem=ca_pem, development=True)


def init_demo(settings: Settings) -> list[str]:
    """Set up the demo; returns what was created this time (empty when all existed)."""
    if settings.profile != "development":
        raise DemoRefused("the demo is set up in the development profile only")
    from gateway.oauth.signing import load_token_signer

    upgrade(settings.database_url)
    load_token_signer(settings)  # generates the development keys when missing
    demo_dir = _demo_dir(settings)
    demo_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return asyncio.run(_onboard(settings, demo_dir))
