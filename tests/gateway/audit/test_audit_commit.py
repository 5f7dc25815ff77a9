"""No audit, no disclosure: an act commits with its audit entry, or nothing is released (503)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.app import create_app
from gateway.audit.commit import Audited, commit_audited, record_alone
from gateway.audit.sequencer import sequence_once
from gateway.audit.signer import RingNoteSigner
from gateway.domain import AgencyType, Role
from gateway.errors import AuditUnavailable
from gateway.flow.group_commit import GroupCommitter
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store import Database
from gateway.store.models import Agency, AuditEntry
from tests.gateway.audit.conftest import DB_ORIGIN, audit_event

SECRET = "RELEASED-CASE-DATA-7731"


def _disclosure_router() -> APIRouter:
    """A stand-in for the case API: stores a disclosure row and releases SECRET."""
    router = APIRouter()

    @router.post("/test/disclose")
    async def disclose(request: Request) -> JSONResponse:
        state: GatewayState = request.app.state.gateway

        async def act(session: AsyncSession) -> Audited[dict[str, str]]:
            session.add(
                Agency(
                    id="recipient-agency",
                    name="Recipient",
                    agency_type=AgencyType.HOUSING,
                    role=Role.DUTY_TO_COOPERATE,
                    area="area-1",
                    scopes=[],
                )
            )
            body = {"record": SECRET}
            digest = "sha256:" + hashlib.sha256(SECRET.encode()).hexdigest()
            # A large detail makes the audit entry the write that needs new pages.
            event = audit_event(1, payload_digest=digest, detail={"pad": "x" * 20_000})
            return Audited(body, event)

        return JSONResponse(await commit_audited(state.db, act))

    return router


def _settings(url: str, keys: tuple[Path, Path]) -> Settings:
    return Settings(
        profile="test",
        database_url=url,
        issuer="https://gateway.test",
        keys_dir=keys[0],
        kek_file=keys[1],
        audit_sequence_interval_seconds=0,
    )


@pytest.fixture
def disclosure_app(
    audit_gateway_keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[[str], Any]:
    """Start the gateway with the stand-in route on a given database URL."""
    monkeypatch.chdir(tmp_path)  # a file: URI must not leave directories in the repository

    def build(url: str) -> Any:
        app = create_app(_settings(url, audit_gateway_keys))
        app.include_router(_disclosure_router())
        return _running(app)

    return build


async def _running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://gateway.test") as c:
            yield c


async def _counts(url: str) -> tuple[int, int]:
    db = Database(url)
    try:
        async with db.read() as session:
            agencies = await session.scalar(select(func.count()).select_from(Agency))
            entries = await session.scalar(select(func.count()).select_from(AuditEntry))
    finally:
        await db.dispose()
    return int(agencies or 0), int(entries or 0)


def _assert_nothing_released(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "audit_unavailable"
    assert SECRET not in response.text


async def test_disclosure_commits_with_its_audit_entry(
    sqlite_url: str, disclosure_app: Callable[[str], Any]
) -> None:
    """The control: the act's row and its audit entry commit together and the data is released."""
    async for client in disclosure_app(sqlite_url):
        response = await client.post("/test/disclose")
    assert response.status_code == 200
    assert response.json() == {"record": SECRET}
    assert await _counts(sqlite_url) == (1, 1)


async def test_read_only_store_answers_503_and_releases_nothing(
    sqlite_url: str, disclosure_app: Callable[[str], Any]
) -> None:
    """Store opened read-only: 503 audit_unavailable, no data in the body, no row, no entry."""
    path = sqlite_url.split("///", 1)[1]
    read_only = f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"
    async for client in disclosure_app(read_only):
        response = await client.post("/test/disclose")
    _assert_nothing_released(response)
    assert await _counts(sqlite_url) == (0, 0)


async def test_full_disk_answers_503_and_releases_nothing(
    sqlite_url: str, disclosure_app: Callable[[str], Any]
) -> None:
    """Disk full (page cap on every writer connection): 503, no data, the act rolled back."""
    async for client in disclosure_app(sqlite_url):
        state: GatewayState = client._transport.app.state.gateway  # type: ignore[attr-defined]
        writer = state.db.writer
        async with writer.connect() as conn:
            pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()

        @event.listens_for(writer.sync_engine, "connect")
        def cap(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.cursor().execute(f"PRAGMA max_page_count={pages}")

        await writer.dispose()
        response = await client.post("/test/disclose")
    _assert_nothing_released(response)
    assert await _counts(sqlite_url) == (0, 0)


async def test_read_only_postgres_answers_503_and_releases_nothing(
    postgres_url: str, disclosure_app: Callable[[str], Any]
) -> None:
    """PostgreSQL refusing writes (read-only transactions): the same 503, nothing stored."""
    async for client in disclosure_app(postgres_url):
        state: GatewayState = client._transport.app.state.gateway  # type: ignore[attr-defined]

        @event.listens_for(state.db.writer.sync_engine, "connect")
        def read_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET default_transaction_read_only = on")
            cursor.close()
            dbapi_connection.commit()  # a SET in a rolled-back transaction would be undone

        await state.db.writer.dispose()
        response = await client.post("/test/disclose")
    _assert_nothing_released(response)
    assert await _counts(postgres_url) == (0, 0)


async def test_record_alone_raises_audit_unavailable_on_a_read_only_store(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An entry recorded on its own fails as AuditUnavailable, so its caller can stop."""
    monkeypatch.chdir(tmp_path)
    path = sqlite_url.split("///", 1)[1]
    db = Database(f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true")
    try:
        with pytest.raises(AuditUnavailable):
            await record_alone(db, audit_event(0))
    finally:
        await db.dispose()


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"d": value}
    return value


#: Entries with no canonical form, which the sequencer could never integrate.
UNCANONICAL: dict[str, dict[str, Any]] = {
    "int_beyond_2_53": {"detail": {"n": 2**53}},
    "nan": {"detail": {"x": float("nan")}},
    "too_deep": {"detail": _nested(10)},
    "lone_surrogate_in_detail": {"detail": {"code": "\ud800"}},
    "lone_surrogate_in_text": {"officer_id": "officer-\udfff"},
}


@pytest.mark.parametrize("bad", list(UNCANONICAL))
async def test_an_entry_without_a_canonical_form_fails_its_act_and_never_reaches_the_log(
    db: Database, ring_signer: RingNoteSigner, bad: str
) -> None:
    """Alone, with an act, or in a group-commit batch beside a sound act: the bad entry's act
    fails as an audit failure (nothing of it stored), the others commit, and the sequencer
    goes on integrating the log."""
    event = audit_event(1, **UNCANONICAL[bad])
    with pytest.raises(AuditUnavailable) as caught:
        await record_alone(db, event)
    assert caught.value.diagnostics["reason"] == "audit_entry_malformed"

    async def act(session: AsyncSession) -> Audited[str]:
        session.add(
            Agency(
                id="released",
                name="x",
                agency_type=AgencyType.HOUSING,
                area="a",
                role=Role.DUTY_TO_COOPERATE,
                scopes=[],
            )
        )
        return Audited("released", event)

    with pytest.raises(AuditUnavailable):
        await commit_audited(db, act)

    async def sound(_session: AsyncSession) -> Audited[str]:
        return Audited("sound", audit_event(2))

    committer = GroupCommitter(db)
    outcomes = await asyncio.gather(
        committer.audited(act), committer.audited(sound), return_exceptions=True
    )
    assert isinstance(outcomes[0], AuditUnavailable) and outcomes[1] == "sound"
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Agency)) == 0
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == 1
    step = await sequence_once(db, ring_signer, DB_ORIGIN)
    assert step.tree_size == 1
