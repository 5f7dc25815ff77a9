"""The database: one embedded default (SQLite) and PostgreSQL for replicas, one interface.

SQLite runs in WAL mode with a busy timeout and foreign keys on. Writers open their transaction
with ``BEGIN IMMEDIATE`` so two writers never both read and then fail to upgrade their lock; in
one process they also queue on an asyncio lock, so the busy handler only arbitrates between
processes. Readers use deferred transactions and never block writers under WAL; nor does a
writer block them, so a reader's statements run on the event loop itself (a primary-key read
takes microseconds, a hand-off to aiosqlite's thread and back costs far more). A writer sends to
aiosqlite's thread only what can wait: ``COMMIT`` (the fsync, and any checkpoint), ``ROLLBACK``
and anything outside a transaction; the statements between, which run under the write lock
already held, run on the loop. ``BEGIN IMMEDIATE`` runs on the loop too, without SQLite's busy
handler: while another process holds the write lock it is tried again within a millisecond
(:func:`_begin_immediate`), because the busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ms... between
tries, and two worker processes then waited 4 ms at the median and 56 ms at p99 for a lock
held about a millisecond.
PostgreSQL uses
psycopg 3 with a connection pool, READ COMMITTED, and row locks where a flow needs them. Its
readers run in autocommit: under READ COMMITTED every statement takes its own snapshot whether
or not a transaction encloses it, so a read transaction would only add a ``BEGIN`` and a
``COMMIT`` round trip to each read.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import aiosqlite
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from gateway.errors import StoreUnavailable

__all__ = ["Database"]

SQLITE_BUSY_TIMEOUT_MS = 10_000


#: How long a new connection retries switching to WAL while another connection holds the lock
#: that the switch needs (SQLite answers "database is locked" there without its busy handler,
#: for instance while the last connection of another process checkpoints and removes the WAL).
_WAL_RETRY_SECONDS = 5.0


def _journal_wal(cursor: Any) -> None:
    deadline = time.monotonic() + _WAL_RETRY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)  # once per new connection at most, and only when it raced


#: A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: AsyncEngine, after: float) -> None:
    """Ping a pooled connection at checkout only if it sat idle for ``after`` seconds or more.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: a round trip that cost about 0.09 ms
    of CPU per request here, for connections back in the pool within milliseconds under load.
    A connection that sat idle is the one a database restart or an idle-connection timeout may
    have closed; it is pinged, and if the database has gone away the whole pool is discarded
    and a fresh connection handed out instead (``InvalidatePoolError``, as pre-ping does). A
    restart in the millisecond between two uses is met as SQLAlchemy meets any lost
    connection: that statement fails (503), the pool is invalidated, the next call reconnects.
    """
    sync = engine.sync_engine
    dialect = sync.dialect

    @event.listens_for(sync, "checkin")
    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(sync, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < after:
            return  # a new connection, or one in use a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise InvalidatePoolError() from exc
            raise


def _sqlite_pragmas(immediate: bool) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, issue BEGIN (see the "begin" listener below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The busy timeout first: switching to WAL takes a lock, and a second process opening
        # the file at the same moment must wait for it rather than fail "database is locked".
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _journal_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    return on_connect


class _InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose calls run on the event loop, not on its worker thread.

    For readers only: under WAL a read never waits for a lock, so running it inline blocks the
    loop for as long as the read itself. Opening and closing still go through the thread."""

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


#: Pauses between tries of BEGIN IMMEDIATE while another process holds the write lock; the last
#: repeats until SQLITE_BUSY_TIMEOUT_MS have passed.
_BEGIN_PAUSES = (0.0002, 0.0005, 0.001)
_BEGIN_IMMEDIATE = "BEGIN IMMEDIATE"


def _busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


async def _begin_immediate(connection: sqlite3.Connection, fn: Any, args: Any, kwargs: Any) -> Any:
    """Run ``BEGIN IMMEDIATE`` (``fn``) on the loop with the busy handler off, and while another
    process holds the write lock pause briefly and try again, until the busy timeout has passed
    (then SQLite's "database is locked" stands, as the busy handler's would). Each try costs a
    few microseconds; the loop serves other requests during the pauses."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pauses = iter(_BEGIN_PAUSES)
    connection.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(next(pauses, _BEGIN_PAUSES[-1]))
    finally:
        connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


class _WriterConnection(aiosqlite.Connection):
    """An aiosqlite connection for writers: what may wait runs on its worker thread, the rest on
    the event loop.

    Waiting is confined to the ends of a transaction: ``BEGIN IMMEDIATE`` waits for another
    process to release the write lock (on the loop, in short pauses: :func:`_begin_immediate`),
    ``COMMIT`` waits for the fsync and runs any automatic checkpoint, and a statement outside a
    transaction takes a lock of its own. Once ``BEGIN IMMEDIATE`` has returned, this connection
    holds the database's one write lock, so the statements of the transaction wait for nobody:
    they run inline, and a write transaction of ten statements pays one thread hand-off (its
    ``COMMIT``) instead of eleven."""

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        connection = self._connection
        if connection is None or not self._running:
            waits = True  # aiosqlite raises "Connection closed"
        elif connection.in_transaction:
            waits = fn == connection.commit or fn == connection.rollback
        elif args and args[0] == _BEGIN_IMMEDIATE:
            return await _begin_immediate(connection, fn, args, kwargs)
        else:  # making a cursor, or the pool's reset (a rollback of nothing), takes no lock
            waits = fn != connection.rollback and fn != connection.cursor
        if waits:
            return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
        return fn(*args, **kwargs)


def _connection_creator(database: str, timeout: float, *, immediate: bool) -> Any:
    kind = _WriterConnection if immediate else _InlineConnection

    def creator() -> aiosqlite.Connection:
        # Opened on the worker thread, used (also) on the loop's: hence check_same_thread=False
        # (one connection is still used by one task at a time, through the pool).
        return kind(
            lambda: sqlite3.connect(database, timeout=timeout, check_same_thread=False),
            iter_chunk_size=64,
        )

    return creator


class Database:
    """Engines and sessions for one database URL."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        ping_after: float = PING_AFTER_IDLE_SECONDS,
    ) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._write_lock: asyncio.Lock | None = None
        if self.is_sqlite:
            # A plain file's folder is made; an SQLite URI (``file:...?uri=true``) names its
            # file itself, and is not a folder to make under the working directory.
            uri = str(parsed.query.get("uri", "")).lower() in ("true", "1")
            if parsed.database and parsed.database != ":memory:" and not uri:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # A pool as large as the concurrency it serves: an overflow connection is a new
            # thread and a new SQLite connection per checkout, closed again at check-in.
            pool = pool_size if parsed.database and parsed.database != ":memory:" else None
            self.engine = self._sqlite_engine(url, immediate=False, echo=echo, pool_size=pool)
            self.writer = self._sqlite_engine(url, immediate=True, echo=echo, pool_size=pool)
            self._write_lock = asyncio.Lock()
        else:
            self.engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=pool_size, echo=echo
            )
            _ping_when_idle(self.engine, ping_after)
            self.writer = self.engine
        # One pool: a reader's checkout switches its connection to autocommit (a flag psycopg
        # keeps on the client) and its check-in switches it back.
        readers = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._reader_sessions = async_sessionmaker(readers, expire_on_commit=False)
        self._writer_sessions = async_sessionmaker(self.writer, expire_on_commit=False)

    @staticmethod
    def _sqlite_engine(
        url: str, *, immediate: bool, echo: bool, pool_size: int | None
    ) -> AsyncEngine:
        sizing: dict[str, Any] = (
            {"pool_size": pool_size, "max_overflow": pool_size} if pool_size is not None else {}
        )
        parsed = make_url(url)
        database = parsed.database
        # A plain file path; a URI filename (``?uri=true``, e.g. ``mode=ro``) keeps the
        # dialect's own connect, which understands it.
        if database and database != ":memory:" and "uri" not in parsed.query:
            sizing["async_creator"] = _connection_creator(database, 30, immediate=immediate)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30}, **sizing)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(immediate))

        @event.listens_for(engine.sync_engine, "begin")
        def do_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed when the block ends, rolled back on any exception."""
        lock = self._write_lock or contextlib.nullcontext()
        async with lock:
            try:
                async with self._writer_sessions() as session, session.begin():
                    yield session
            except DBAPIError as exc:
                _raise_translated(exc)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read on the readers' engine: a deferred transaction on SQLite (never blocks
        writers), autocommit on PostgreSQL (each statement its own snapshot, as under READ
        COMMITTED anyway). Objects read stay usable after the block; writing from here is a bug
        (on PostgreSQL it would commit at once, statement by statement)."""
        try:
            async with self._reader_sessions() as session, session.begin():
                yield session
        except DBAPIError as exc:
            _raise_translated(exc)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (OSError, OperationalError, DBAPIError):
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.writer is not self.engine:
            await self.writer.dispose()


_UNAVAILABLE = {"OperationalError", "DiskFull", "ReadOnlySqlTransaction", "AdminShutdown"}


def _raise_translated(exc: DBAPIError) -> NoReturn:
    """Operational failures (locked, read-only, disk full, connection lost) become
    :class:`StoreUnavailable`; anything else (a constraint, a bug) is re-raised as it is."""
    name = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
    if isinstance(exc, OperationalError) or exc.connection_invalidated or name in _UNAVAILABLE:
        raise StoreUnavailable(diagnostics={"db_error": name}) from exc
    raise exc
