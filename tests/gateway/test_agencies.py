"""Onboarding grants only the scopes the gateway checks: any other is refused, naming them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey
from sqlalchemy import func, select

from adapters.kit import partner_init
from gateway import agencies
from gateway.cases import context
from gateway.demo import DEMO_SCOPES
from gateway.domain import KNOWN_SCOPES
from gateway.routes.audit import AUDIT_READ_SCOPE
from gateway.routes.inbox import INBOX_SCOPE
from gateway.store import Database
from gateway.store.models import Agency, AgencyKey

JWKS = {"keys": [{**ECKey.generate_key("P-256").as_dict(private=False), "kid": "p-1"}]}


@pytest.fixture
async def database(sqlite_url: str) -> AsyncIterator[Database]:
    db = Database(sqlite_url)
    try:
        yield db
    finally:
        await db.dispose()


async def _count(db: Database, model: Any) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def _add(db: Database, scopes: list[str]) -> Any:
    return agencies.add_agency(
        db,
        agency_id="police-avon",
        name="Avon and Somerset Police",
        agency_type="police",
        role="responsible_authority",
        area="avon-somerset",
        scopes=scopes,
        jwks=JWKS,
    )


def test_every_scope_an_endpoint_checks_is_known() -> None:
    """The case API's, the inbox's and the audit API's scopes are the known scopes, all of them,
    and what the demo and the partner kit ask for is among them."""
    checked = {context.READ, context.WRITE, INBOX_SCOPE, AUDIT_READ_SCOPE}
    assert checked == set(KNOWN_SCOPES)
    assert set(DEMO_SCOPES) <= set(KNOWN_SCOPES)


def test_the_partner_kit_requests_known_scopes(tmp_path: Path) -> None:
    """The registration request `partner init` writes asks only for scopes the gateway knows."""
    kit = tmp_path / "kit"
    partner_init(
        kit,
        agency_id="barnet-yot",
        name="Barnet YOT",
        agency_type="youth_offending",
        role="duty_to_cooperate",
        area="barnet",
        issuer="https://gateway.test",
    )
    request = json.loads((kit / "registration-request.json").read_text())
    assert request["scopes"] and set(request["scopes"]) <= set(KNOWN_SCOPES)


@pytest.mark.parametrize(
    "scope",
    [
        "nominals:read",  # the scope docs/authentication.md once showed: no endpoint checks it
        "referrals:write",  # likewise
        "case:admin",  # well formed, but nothing grants it meaning
        "CASE:READ",  # scopes are compared exactly
        "Nominals READ",  # not even of a scope's form
    ],
)
async def test_add_agency_refuses_an_unknown_scope_and_writes_nothing(
    database: Database, scope: str
) -> None:
    """An unknown scope is refused with the known scopes named, and nothing is written."""
    with pytest.raises(agencies.AgencyError, match="unknown scope") as refused:
        await _add(database, ["case:read", scope])
    assert all(known in str(refused.value) for known in KNOWN_SCOPES)
    assert await _count(database, Agency) == 0
    assert await _count(database, AgencyKey) == 0


async def test_add_agency_grants_every_known_scope(database: Database) -> None:
    """Each known scope may be granted; they are kept sorted, once each."""
    view = await _add(database, [*KNOWN_SCOPES, "case:read"])
    assert view.scopes == tuple(sorted(KNOWN_SCOPES))


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "agencies", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_add_refuses_an_unknown_scope(sqlite_url: str, tmp_path: Path) -> None:
    """`agencies add --scope nominals:read` exits 1 naming the known scopes; a known one works."""
    env = {**os.environ, "MAPPA_DATABASE_URL": sqlite_url, "MAPPA_PROFILE": "development"}
    jwks = tmp_path / "police.jwks.json"
    jwks.write_text(json.dumps(JWKS))
    common = [
        "--id",
        "police-avon",
        "--name",
        "Avon and Somerset Police",
        "--type",
        "police",
        "--role",
        "responsible_authority",
        "--area",
        "avon-somerset",
        "--jwks",
        str(jwks),
    ]
    refused = _cli("add", *common, "--scope", "case:read", "--scope", "nominals:read", env=env)
    assert refused.returncode == 1
    assert "unknown scope 'nominals:read'" in refused.stderr
    assert "case:read, case:write, inbox:read, audit:read" in refused.stderr
    assert "police-avon" not in _cli("list", env=env).stdout
    added = _cli("add", *common, "--scope", "case:read", "--scope", "inbox:read", env=env)
    assert added.returncode == 0, added.stderr
    assert "scopes: case:read inbox:read" in added.stdout


@pytest.mark.parametrize(
    ("field", "value"),
    [("agency_id", "police-avon\n"), ("area", "avon-somerset\n")],
)
async def test_add_agency_refuses_a_trailing_newline_and_writes_nothing(
    database: Database, field: str, value: str
) -> None:
    """The id and area checks take the whole value: a pattern's ``$`` also matches before a
    final newline, so "police-avon\\n" passed ``match`` and was stored as another agency."""
    arguments: dict[str, Any] = {
        "agency_id": "police-avon",
        "name": "Avon and Somerset Police",
        "agency_type": "police",
        "role": "responsible_authority",
        "area": "avon-somerset",
        "scopes": ["case:read"],
        "jwks": JWKS,
        field: value,
    }
    with pytest.raises(agencies.AgencyError):
        await agencies.add_agency(database, **arguments)
    assert await _count(database, Agency) == 0
