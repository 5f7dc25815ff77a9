"""The store on both backends: migrations, constraints, concurrent writers, failure mapping."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.domain import AgencyType, Role
from gateway.errors import StoreUnavailable
from gateway.store import Database, database
from gateway.store.database import SQLITE_BUSY_TIMEOUT_MS
from gateway.store.models import Agency, AuditEntry, Nominal


def _agency(agency_id: str = "police-a") -> Agency:
    return Agency(
        id=agency_id,
        name="Test Police",
        agency_type=AgencyType.POLICE,
        role=Role.RESPONSIBLE_AUTHORITY,
        area="area-1",
        scopes=["case:read"],
    )


async def test_migrations_create_every_table(db: Database) -> None:
    """Alembic's head creates every table the models declare."""
    from gateway.store.models import Base

    async with db.read() as session:
        for table in Base.metadata.tables:
            await session.execute(text(f"SELECT count(*) FROM {table}"))


async def test_row_round_trips_with_utc_times(db: Database) -> None:
    """A written row reads back equal, with timezone-aware UTC times on both backends."""
    async with db.write() as session:
        session.add(_agency())
    async with db.read() as session:
        agency = (await session.execute(select(Agency))).scalar_one()
    assert agency.agency_type is AgencyType.POLICE
    assert agency.created_at.tzinfo is not None
    assert agency.created_at.utcoffset() == dt.timedelta(0)


async def test_write_rolls_back_on_error(db: Database) -> None:
    """An exception inside a write block leaves nothing behind."""
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            session.add(_agency())
            await session.flush()
            raise RuntimeError("boom")
    async with db.read() as session:
        assert (await session.execute(select(func.count(Agency.id)))).scalar_one() == 0


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("category", 5),  # there is no category 5
        ("category", 0),
        ("level", 0),  # levels are 1..3
        ("level", 4),
    ],
)
async def test_database_refuses_out_of_range_category_and_level(
    db: Database, column: str, value: int
) -> None:
    """The CHECK constraints hold even for a write that bypasses the model's validation."""
    async with db.write() as session:
        session.add(_agency())
    with pytest.raises(IntegrityError):
        async with db.write() as session:
            values = {
                "id": "n1",
                "area": "area-1",
                "category": 1,
                "level": 1,
                "lead_agency_id": "police-a",
                "status": "active",
                "status_informed": False,
                "details_sealed": b"x",
                "created_at": dt.datetime.now(dt.UTC),
                "updated_at": dt.datetime.now(dt.UTC),
                "version": 1,
            }
            values[column] = value
            await session.execute(Nominal.__table__.insert().values(**values))


async def test_enum_columns_refuse_unknown_values(db: Database) -> None:
    """An agency type outside the enumeration is refused by the database."""
    async with db.write() as session:
        session.add(_agency())
    with pytest.raises(IntegrityError):
        async with db.write() as session:
            await session.execute(
                text("UPDATE agencies SET agency_type = 'astrologer' WHERE id = 'police-a'")
            )


async def test_concurrent_writers_keep_every_row(db: Database) -> None:
    """200 concurrent write transactions all commit; none is lost or refused as locked."""
    writers = 200

    async def write(i: int) -> None:
        async with db.write() as session:
            session.add(AuditEntry(operation="consultation", outcome="allowed", request_id=f"r{i}"))
            await asyncio.sleep(0)

    await asyncio.gather(*(write(i) for i in range(writers)))
    async with db.read() as session:
        rows = (await session.execute(select(AuditEntry.request_id))).scalars().all()
    assert sorted(rows) == sorted(f"r{i}" for i in range(writers))


async def test_concurrent_writers_from_two_engines_keep_every_row(database_url: str) -> None:
    """Two independent Database objects (as two processes would) interleave without loss."""
    first, second = Database(database_url), Database(database_url)
    try:

        async def write(database: Database, i: int) -> None:
            async with database.write() as session:
                session.add(
                    AuditEntry(operation="collection", outcome="allowed", request_id=str(i))
                )

        await asyncio.gather(*(write(first if i % 2 else second, i) for i in range(100)))
        async with first.read() as session:
            count = (await session.execute(select(func.count(AuditEntry.id)))).scalar_one()
        assert count == 100
    finally:
        await first.dispose()
        await second.dispose()


async def test_unreachable_database_raises_store_unavailable() -> None:
    """A database that cannot be reached is a StoreUnavailable, not a raw driver error."""
    database = Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    try:
        assert await database.ping() is False
        with pytest.raises(StoreUnavailable):
            async with database.write() as session:
                session.add(_agency())
    finally:
        await database.dispose()


async def test_read_only_sqlite_raises_store_unavailable(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database opened read-only refuses writes with StoreUnavailable and keeps its rows; its
    URI (``file:...``) is not taken for a folder to make under the working directory."""
    monkeypatch.chdir(tmp_path)
    path = sqlite_url.split("///", 1)[1]
    database = Database(sqlite_url)
    async with database.write() as session:
        session.add(_agency())
    await database.dispose()
    read_only = Database(f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            async with read_only.write() as session:
                session.add(_agency("police-b"))
        assert caught.value.code == "store_unavailable"
        async with read_only.read() as session:
            ids = (await session.execute(select(Agency.id))).scalars().all()
        assert ids == ["police-a"]
    finally:
        await read_only.dispose()
    assert not (tmp_path / "file:").exists()


async def test_full_sqlite_disk_raises_store_unavailable(sqlite_url: str) -> None:
    """A full disk (page limit reached) is a StoreUnavailable and the transaction leaves nothing."""
    database = Database(sqlite_url)
    try:
        async with database.write() as session:
            session.add(_agency())
        async with database.writer.connect() as conn:
            pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()
        # Every pooled writer connection gets the cap, as a full disk would apply to all.
        from sqlalchemy import event

        @event.listens_for(database.writer.sync_engine, "connect")
        def cap(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.cursor().execute(f"PRAGMA max_page_count={pages}")

        await database.writer.dispose()
        with pytest.raises(StoreUnavailable):
            async with database.write() as session:
                for i in range(2000):
                    session.add(
                        AuditEntry(
                            operation="collection", outcome="allowed", request_id=f"{i:0>60}"
                        )
                    )
        async with database.read() as session:
            assert (await session.execute(select(func.count(AuditEntry.id)))).scalar_one() == 0
    finally:
        await database.dispose()


async def test_sqlite_readers_run_on_the_loop_and_never_wait_for_a_writer(sqlite_url: str) -> None:
    """SQLite readers run their statements on the event loop (no thread hand-off per statement),
    which is safe only because under WAL a reader never waits: while another process's writer
    holds the write lock mid-transaction, reads answer at once with the last committed state, and
    the loop keeps turning (a ticker advances meanwhile)."""
    db, other = Database(sqlite_url), Database(sqlite_url)
    try:
        async with db.write() as session:
            session.add(_agency("police-a"))
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        async with other.write() as writing:  # BEGIN IMMEDIATE: the write lock is taken
            writing.add(_agency("police-b"))
            await writing.flush()
            for _ in range(20):
                async with db.read() as session:
                    ids = (await session.execute(select(Agency.id))).scalars().all()
                    assert ids == ["police-a"]  # committed state only, no wait for the lock
                await asyncio.sleep(0)
        stop.set()
        await ticking
        assert ticks >= 20
        async with db.read() as session:
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            assert type(raw.driver_connection).__name__ == "_InlineConnection"
            assert sorted((await session.execute(select(Agency.id))).scalars()) == [
                "police-a",
                "police-b",
            ]
    finally:
        await db.dispose()
        await other.dispose()


async def test_sqlite_writers_hand_only_the_waits_to_the_thread(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite writer sends only COMMIT (the fsync) or ROLLBACK to aiosqlite's thread; BEGIN
    IMMEDIATE (tried again in short pauses while another process holds the lock) and the
    statements between, run under the lock it holds, go inline. Ten inserts cost one hand-off,
    not twelve, and every row commits."""
    import aiosqlite

    handed: list[str] = []
    original = aiosqlite.Connection._execute

    async def spy(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        sql = args[0] if args and isinstance(args[0], str) else ""
        handed.append(sql.split()[0] if sql else getattr(fn, "__name__", "?"))
        return await original(self, fn, *args, **kwargs)

    db = Database(sqlite_url)
    try:
        async with db.write() as session:  # the connection is opened (and set up) here
            session.add(_agency("police-0"))
        monkeypatch.setattr(aiosqlite.Connection, "_execute", spy)
        async with db.write() as session:
            for i in range(1, 11):
                session.add(_agency(f"police-{i}"))
                await session.flush()
        assert handed == ["commit"]
        handed.clear()
        with pytest.raises(RuntimeError):
            async with db.write() as session:
                session.add(_agency("police-x"))
                await session.flush()
                raise RuntimeError("the act failed")
        assert handed == ["rollback"]
        async with db.read() as session:
            count = (await session.execute(select(func.count(Agency.id)))).scalar_one()
        assert count == 11  # police-x was rolled back
    finally:
        await db.dispose()


async def test_sqlite_writer_waiting_for_another_process_lock_does_not_stall_the_loop(
    sqlite_url: str,
) -> None:
    """While another process holds the write lock, a writer's BEGIN IMMEDIATE waits in short
    pauses on the loop: the loop keeps turning (and reads answer) meanwhile, and the writer goes
    on once the lock is released."""
    db, other = Database(sqlite_url), Database(sqlite_url)
    try:
        async with db.write() as session:
            session.add(_agency("police-a"))
        ticks = 0

        async def write_b() -> None:
            async with db.write() as session:
                session.add(_agency("police-c"))

        async with other.write() as holding:
            holding.add(_agency("police-b"))
            await holding.flush()
            waiting = asyncio.create_task(write_b())
            for _ in range(10):
                await asyncio.sleep(0.01)
                ticks += 1
                async with db.read() as session:
                    assert (await session.execute(select(Agency.id))).scalars().all() == [
                        "police-a"
                    ]
            assert not waiting.done()  # still waiting for the lock, the loop free
        await asyncio.wait_for(waiting, timeout=15)
        assert ticks == 10
        async with db.read() as session:
            ids = sorted((await session.execute(select(Agency.id))).scalars())
        assert ids == ["police-a", "police-b", "police-c"]
    finally:
        await db.dispose()
        await other.dispose()


async def test_sqlite_writer_tries_again_without_the_busy_handler_while_the_lock_is_held(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process holds the write lock, the waiting writer's BEGIN IMMEDIATE is
    tried again and again with the busy handler off (busy_timeout 0 at every try: no try sleeps
    in SQLite, the pauses are the loop's), and it begins once the lock is released; inside the
    transaction the busy timeout is back to its setting."""
    tries: list[int] = []
    original = database._begin_immediate

    async def counting(connection: Any, fn: Any, args: Any, kwargs: Any) -> Any:
        def attempt(*a: Any, **k: Any) -> Any:
            tries.append(connection.execute("PRAGMA busy_timeout").fetchone()[0])
            return fn(*a, **k)

        return await original(connection, attempt, args, kwargs)

    monkeypatch.setattr(database, "_begin_immediate", counting)
    db, other = Database(sqlite_url), Database(sqlite_url)
    try:
        async with db.write() as session:
            session.add(_agency("police-a"))
        tries.clear()

        async def write_b() -> int:
            async with db.write() as session:
                timeout = (await session.execute(text("PRAGMA busy_timeout"))).scalar_one()
                session.add(_agency("police-c"))
                return int(timeout)

        async with other.write() as holding:
            holding.add(_agency("police-b"))
            await holding.flush()
            waiting = asyncio.create_task(write_b())
            await asyncio.sleep(0.03)
            assert not waiting.done()
            held = len(tries)
        assert await asyncio.wait_for(waiting, timeout=15) == SQLITE_BUSY_TIMEOUT_MS
        assert held >= 2 and len(tries) > held  # tried while held, began after the release
        assert set(tries) == {0}
    finally:
        await db.dispose()
        await other.dispose()


async def test_sqlite_writer_gives_up_after_the_busy_timeout_with_a_503(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock held for longer than the busy timeout: the writer gives up with StoreUnavailable
    (503), writes nothing, and its connection works again once the lock is free."""
    monkeypatch.setattr(database, "SQLITE_BUSY_TIMEOUT_MS", 50)
    db, other = Database(sqlite_url), Database(sqlite_url)
    try:
        async with db.write() as session:
            session.add(_agency("police-a"))
        async with other.write() as holding:
            holding.add(_agency("police-b"))
            await holding.flush()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                async with db.write() as session:
                    session.add(_agency("police-c"))
            assert time.monotonic() - started >= 0.05  # it waited out the timeout first
        async with db.write() as session:
            session.add(_agency("police-d"))
        async with db.read() as session:
            ids = sorted((await session.execute(select(Agency.id))).scalars())
        assert ids == ["police-a", "police-b", "police-d"]
    finally:
        await db.dispose()
        await other.dispose()


def test_switching_a_new_connection_to_wal_retries_a_lock_race_and_nothing_else() -> None:
    """SQLite can answer "database is locked" to PRAGMA journal_mode=WAL without consulting its
    busy handler (another process's last connection checkpointing and removing the WAL): a new
    connection retries that briefly; any other error is raised at once."""
    import sqlite3

    from gateway.store.database import _journal_wal

    class Racing:
        def __init__(self, failures: int, message: str = "database is locked") -> None:
            self.failures, self.message, self.calls = failures, message, 0

        def execute(self, sql: str) -> None:
            assert sql == "PRAGMA journal_mode=WAL"
            self.calls += 1
            if self.calls <= self.failures:
                raise sqlite3.OperationalError(self.message)

    racing = Racing(failures=3)
    _journal_wal(racing)
    assert racing.calls == 4
    broken = Racing(failures=1, message="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        _journal_wal(broken)
    assert broken.calls == 1


async def _backend_pid(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(postgres_url: str, pid: int) -> None:
    killer = Database(postgres_url)
    try:
        async with killer.read() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await killer.dispose()


async def test_postgres_reads_run_in_autocommit_and_writes_in_a_transaction(
    postgres_url: str,
) -> None:
    """A read runs each statement in a transaction of its own (no BEGIN and COMMIT round
    trips); a write's statements share one, and the read's connection goes back to the pool as
    it came (a write on it later is transactional again, and rolls back as a whole)."""
    db = Database(postgres_url, pool_size=1)
    try:
        async with db.read() as session:
            first = (await session.execute(text("SELECT now()"))).scalar()
            await asyncio.sleep(0.01)
            second = (await session.execute(text("SELECT now()"))).scalar()
            assert first != second  # now() is the start of each statement's own transaction
        async with db.write() as session:
            first = (await session.execute(text("SELECT now()"))).scalar()
            await asyncio.sleep(0.01)
            second = (await session.execute(text("SELECT now()"))).scalar()
            assert first == second  # one transaction: now() is its start
        with pytest.raises(RuntimeError):
            async with db.write() as session:
                session.add(_agency("rolled-back"))
                await session.flush()
                raise RuntimeError("abort")
        async with db.read() as session:
            assert await session.get(Agency, "rolled-back") is None
    finally:
        await db.dispose()


async def test_postgres_idle_connection_is_pinged_and_replaced_when_the_server_dropped_it(
    postgres_url: str,
) -> None:
    """A pooled connection that sat idle is pinged at checkout; one the server closed (a
    restart, an idle timeout) is replaced, and the call that checked it out succeeds."""
    db = Database(postgres_url, pool_size=1, ping_after=0.0)
    try:
        async with db.read() as session:
            pid = await _backend_pid(session)
        await _terminate(postgres_url, pid)
        async with db.read() as session:
            assert await _backend_pid(session) != pid
            assert await session.get(Agency, "nobody") is None
    finally:
        await db.dispose()


async def test_postgres_connection_in_use_a_moment_ago_is_not_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load a connection is back in the pool within milliseconds: handing it out again
    costs no ping (the round trip pre-ping paid on every checkout); one idle longer is pinged."""
    db = Database(postgres_url, pool_size=1, ping_after=0.5)
    dialect = db.engine.sync_engine.dialect
    pings: list[object] = []
    original = dialect.do_ping
    monkeypatch.setattr(dialect, "do_ping", lambda conn: pings.append(conn) or original(conn))
    try:
        for _ in range(5):
            async with db.read() as session:
                await _backend_pid(session)
        assert pings == []
        await asyncio.sleep(0.6)
        async with db.read() as session:
            await _backend_pid(session)
        assert len(pings) == 1
    finally:
        await db.dispose()


async def test_postgres_connection_dropped_while_in_use_is_a_503_and_the_next_call_reconnects(
    postgres_url: str,
) -> None:
    """Not pinged (used a moment ago) and dropped: that one call fails as the store being
    unavailable, nothing half-done stays, and the pool is renewed for the next call."""
    db = Database(postgres_url, pool_size=1, ping_after=60.0)
    try:
        async with db.read() as session:
            pid = await _backend_pid(session)
        await _terminate(postgres_url, pid)
        with pytest.raises(StoreUnavailable):
            async with db.write() as session:
                session.add(_agency("lost"))
                await session.flush()
        async with db.read() as session:
            assert await _backend_pid(session) != pid
            assert await session.get(Agency, "lost") is None
    finally:
        await db.dispose()
