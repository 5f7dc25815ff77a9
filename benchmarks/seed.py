"""The case API benchmarks' set-up, done before the server starts.

Onboards three agencies of one area with their own keys (a police force that leads the case, a
probation service that writes records, a housing provider that reads the nominal through a
level 2 meeting it attended), registers one level 2 nominal with sealed details, and writes what
the load generator's plans need (the issuer, the agencies' key directories, the ids) to a JSON
file. The plans then do everything an adapter does: ``private_key_jwt`` tokens, a fresh DPoP
proof per request, sealed bodies.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

from adapters.identity import AgencyIdentity
from gateway.agencies import add_agency
from gateway.domain import MeetingType, NominalStatus, Participation
from gateway.keyring import open_key_repository
from gateway.settings import Settings
from gateway.store import Database
from gateway.store.models import Meeting, MeetingAgency, Nominal
from gateway.store.sealed import open_case_sealer

__all__ = ["AREA", "seed"]

#: Fresh ids each run, so a PostgreSQL database can be reused.
_RUN = uuid.uuid4().hex[:6]
AREA = f"bench-{_RUN}"
AGENCIES = {
    "lead": (f"bench-police-{_RUN}", "police", "responsible_authority"),
    "writer": (f"bench-probation-{_RUN}", "probation", "responsible_authority"),
    "reader": (f"bench-housing-{_RUN}", "housing", "duty_to_cooperate"),
}
DETAILS: dict[str, Any] = {
    "names": {"family_name": "Benchmark", "given_names": "Subject Example"},
    "aliases": ["S. Example"],
    "date_of_birth": "1980-01-01",
    "address": "1 Example Street, London",
    "pnc_id": "2000/0000001X",
    "crn": "X000001",
    "risk": [{"group": "children", "level": "high"}, {"group": "public", "level": "medium"}],
}


async def _seed(settings: Settings, workdir: Path) -> dict[str, Any]:
    open_key_repository(settings)  # development keys, generated once before the workers start
    sealer = open_case_sealer(settings)
    db = Database(settings.database_url)
    now = dt.datetime.now(dt.UTC)
    state: dict[str, Any] = {"issuer": settings.issuer, "agencies": {}}
    try:
        for role_name, (agency_id, agency_type, role) in AGENCIES.items():
            identity = AgencyIdentity.generate(agency_id)
            folder = workdir / "agencies" / agency_id
            identity.save(folder)
            await add_agency(
                db,
                agency_id=agency_id,
                name=agency_id,
                agency_type=agency_type,
                role=role,
                area=AREA,
                scopes=["case:read", "case:write"],
                jwks=identity.public_jwks(),
                now=now,
            )
            state["agencies"][role_name] = {"id": agency_id, "dir": str(folder)}
        nominal_id = str(uuid.uuid4())
        meeting_id = str(uuid.uuid4())
        async with db.write() as session:
            session.add(
                Nominal(
                    id=nominal_id,
                    area=AREA,
                    category=2,
                    level=2,
                    lead_agency_id=AGENCIES["lead"][0],
                    status=NominalStatus.ACTIVE,
                    details_sealed=sealer.seal("nominals", nominal_id, "details_sealed", DETAILS),
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
            session.add(
                Meeting(
                    id=meeting_id,
                    nominal_id=nominal_id,
                    meeting_type=MeetingType.LEVEL_2,
                    chair_agency_id=AGENCIES["lead"][0],
                    chair_officer="DI-1",
                    held_on=now.date(),
                    level_at_meeting=2,
                    confidentiality_statement_signed=True,
                    created_at=now,
                )
            )
            await session.flush()
            for agency_id in (AGENCIES["lead"][0], AGENCIES["reader"][0]):
                session.add(
                    MeetingAgency(
                        meeting_id=meeting_id,
                        agency_id=agency_id,
                        participation=Participation.ATTENDED,
                    )
                )
        state["nominal_id"] = nominal_id
    finally:
        await db.dispose()
    return state


def seed(settings: Settings, workdir: Path) -> Path:
    """Set the benchmark up; the path of the plans' state file."""
    state = asyncio.run(_seed(settings, workdir))
    path = workdir / "bench-state.json"
    path.write_text(json.dumps(state, indent=2))
    return path


def main() -> int:
    """Run from ``run.py`` with the benchmark gateway's environment."""
    settings = Settings()
    seed(settings, Path(settings.keys_dir).parent)
    return 0
