"""Direct statements (gateway.store.direct) on both backends: the same rows as SQLAlchemy's
execution layer, in the session's own transaction, with SQLAlchemy's exceptions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.domain import NominalStatus
from gateway.errors import StoreUnavailable
from gateway.store import Database
from gateway.store.direct import ByKey, Direct
from gateway.store.models import Agency, AgencyKey, AuditEntry, Nominal, UsedJti
from tests.gateway.store.test_database import _agency

NOW = dt.datetime(2026, 6, 1, 12, 30, tzinfo=dt.UTC)
NOMINALS = Nominal.__table__
BY_ID = Direct(select(NOMINALS).where(NOMINALS.c.id == bindparam("id")))
KEYS = Direct(
    select(AgencyKey.use, AgencyKey.jwk, AgencyKey.not_after).where(
        AgencyKey.agency_id == bindparam("agency_id")
    )
)
JTIS: Table = UsedJti.__table__  # type: ignore[assignment]
SPENT = Direct(insert(JTIS))


def _jti(key: str) -> dict[str, Any]:
    return {"key": key, "kind": "dpop", "agency_id": "police-a", "seen_at": NOW, "expires_at": NOW}


async def _seed(db: Database) -> str:
    async with db.write() as session:
        session.add(_agency())
        await session.flush()
        session.add_all(
            [
                AgencyKey(agency_id="police-a", kid="s1", use="sig", jwk={"kty": "EC", "x": "1"}),
                AgencyKey(
                    agency_id="police-a",
                    kid="e1",
                    use="enc",
                    jwk={"kty": "EC", "nested": [1, {"a": None}]},
                    not_after=NOW,
                ),
            ]
        )
        nominal = Nominal(
            area="area-1",
            category=2,
            level=3,
            lead_agency_id="police-a",
            status=NominalStatus.ACTIVE,
            status_informed=True,
            level_changed_at=NOW,
            details_sealed=b"\x00sealed\xff",
        )
        session.add(nominal)
    return nominal.id


async def test_rows_are_those_sqlalchemy_gives(db: Database) -> None:
    """Times come back aware and in UTC, enums as enums, JSON parsed, bytes as bytes: the
    values ``session.execute`` gives for the same statement."""
    nominal_id = await _seed(db)
    async with db.read() as session:
        expected = [
            tuple(row) for row in (await session.execute(BY_ID.statement, {"id": nominal_id}))
        ]
        got = await BY_ID.rows(session, {"id": nominal_id})
        keys_expected = sorted(
            (tuple(r) for r in await session.execute(KEYS.statement, {"agency_id": "police-a"})),
            key=repr,
        )
        keys_got = sorted(await KEYS.rows(session, {"agency_id": "police-a"}), key=repr)
    assert got == expected and len(got) == 1
    row = dict(zip(NOMINALS.columns.keys(), got[0], strict=True))
    assert row["status"] is NominalStatus.ACTIVE
    assert row["level_changed_at"] == NOW and row["level_changed_at"].utcoffset() == dt.timedelta(0)
    assert row["details_sealed"] == b"\x00sealed\xff" and row["status_informed"] is True
    assert keys_got == keys_expected
    assert {"kty": "EC", "nested": [1, {"a": None}]} in [jwk for _, jwk, _ in keys_got]


async def test_no_row_and_a_literal_of_the_statement(db: Database) -> None:
    """An id that matches nothing gives no row; a statement's own literals need no value."""
    labelled = Direct(
        select(bindparam("kind", "fixed"), NOMINALS.c.id).where(NOMINALS.c.id == bindparam("id"))
    )
    nominal_id = await _seed(db)
    async with db.read() as session:
        assert await BY_ID.first(session, {"id": "no-such-id"}) is None
        assert await labelled.rows(session, {"id": nominal_id}) == [("fixed", nominal_id)]


async def test_by_key_gives_what_session_get_gives_outside_the_session(db: Database) -> None:
    """ByKey reads the row session.get reads, every attribute equal, as an instance the session
    does not hold; an unknown key gives None."""
    nominal_id = await _seed(db)
    async with db.read() as session:
        for model, key in ((Nominal, nominal_id), (Agency, "police-a")):
            got = await ByKey(model).get(session, key)
            expected = await session.get(model, key)
            assert got is not None and expected is not None and got is not expected
            for column in model.__table__.columns:
                name = model.__mapper__.get_property_by_column(column).key
                assert getattr(got, name) == getattr(expected, name), name
            assert got not in session
        assert await ByKey(Nominal).get(session, "no-such-id") is None


async def test_runs_in_the_sessions_transaction(db: Database) -> None:
    """Rolled back with the session's transaction, committed with it."""
    await _seed(db)
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            await SPENT.many(session, [_jti("a"), _jti("b")])
            raise RuntimeError("the act failed after its statements")
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(UsedJti)) == 0
    async with db.write() as session:
        await SPENT.many(session, [_jti("a"), _jti("b")])
    async with db.read() as session:
        stored = (await session.execute(select(UsedJti.key, UsedJti.seen_at))).all()
    assert sorted(stored) == [("a", NOW), ("b", NOW)]


async def test_each_transaction_of_a_session_uses_its_own_connection(db: Database) -> None:
    """The driver connection is found once per transaction: a session's next transaction (and
    a savepoint within one) runs its statements in that transaction, committed or rolled back
    with it, not in the one before."""
    await _seed(db)
    async with AsyncSession(db.writer) as session:
        async with session.begin():
            await SPENT.many(session, [_jti("first")])
        with pytest.raises(RuntimeError):
            async with session.begin():
                await SPENT.many(session, [_jti("second")])
                raise RuntimeError("rolled back")
        async with session.begin():
            with pytest.raises(RuntimeError):
                async with session.begin_nested():
                    await SPENT.many(session, [_jti("in-savepoint")])
                    raise RuntimeError("savepoint rolled back")
            await SPENT.many(session, [_jti("third")])
    async with db.read() as session:
        stored = sorted((await session.scalars(select(UsedJti.key))).all())
    assert stored == ["first", "third"]


async def test_pending_orm_objects_are_flushed_first(db: Database) -> None:
    """As SQLAlchemy's autoflush would: an object added to the session is seen by the statement."""
    async with db.write() as session:
        session.add(_agency())
        session.add(
            Nominal(
                id="n-pending",
                area="area-1",
                category=1,
                level=1,
                lead_agency_id="police-a",
                details_sealed=b"x",
            )
        )
        assert await BY_ID.first(session, {"id": "n-pending"}) is not None


async def test_a_drivers_error_is_sqlalchemys_and_nothing_is_kept(db: Database) -> None:
    """A duplicate key raises SQLAlchemy's IntegrityError (the group committer tells an act's
    own failure from the store's by it), and the transaction keeps nothing."""
    await _seed(db)
    with pytest.raises(IntegrityError):
        async with db.write() as session:
            await SPENT.many(session, [_jti("same"), _jti("same")])
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(UsedJti)) == 0


async def test_an_operational_failure_is_store_unavailable(sqlite_url: str) -> None:
    """The store failing (here: a table that is not there) is StoreUnavailable, as for any
    statement run through SQLAlchemy, and the database stays usable afterwards."""
    missing = Direct(select(bindparam("x", 1)).select_from(Table("not_a_table", MetaData())))
    db = Database(sqlite_url)
    try:
        with pytest.raises(StoreUnavailable):
            async with db.read() as session:
                await missing.rows(session, {})
        async with db.read() as session:
            assert await BY_ID.first(session, {"id": "none"}) is None
    finally:
        await db.dispose()


async def test_refuses_what_it_cannot_run_unchanged(db: Database) -> None:
    """A missing parameter, rows naming different columns, and an IN list expanded per call are
    refused before anything is sent."""
    in_list = Direct(
        select(NOMINALS.c.id).where(NOMINALS.c.id.in_(bindparam("ids", expanding=True)))
    )
    entries = Direct(insert(AuditEntry.__table__))  # type: ignore[arg-type]
    async with db.write() as session:
        with pytest.raises(KeyError, match="id"):
            await BY_ID.rows(session, {})
        with pytest.raises(ValueError, match="same columns"):
            await entries.many(session, [{"entry_id": "a"}, {"entry_id": "b", "rule": "r"}])
        with pytest.raises(ValueError, match="same columns"):  # as many columns, other names
            await entries.many(session, [{"entry_id": "a"}, {"rule": "r"}])
        with pytest.raises(ValueError, match="expanded"):
            await in_list.rows(session, {"ids": ["a"]})
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) == 0


async def test_statement_listeners_see_every_direct_statement(db: Database) -> None:
    """The engine's before_cursor_execute listeners (tracing, the tests' statement spies and
    fault injection) see a direct statement before it is sent, and one that raises stops it."""
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    nominal_id = await _seed(db)
    seen: list[tuple[str, bool]] = []

    def spy(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        seen.append((statement, many))
        if statement.startswith("INSERT INTO used_jtis"):
            raise OperationalError(statement, {}, Exception("database or disk is full"))

    engines = {db.engine.sync_engine, db.writer.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", spy)
    try:
        async with db.read() as session:
            assert await BY_ID.first(session, {"id": nominal_id}) is not None
        with pytest.raises(StoreUnavailable):
            async with db.write() as session:
                await SPENT.many(session, [_jti("a")])
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", spy)
    assert any("FROM nominals" in sql and not many for sql, many in seen)
    assert any(sql.startswith("INSERT INTO used_jtis") and many for sql, many in seen)
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(UsedJti)) == 0
