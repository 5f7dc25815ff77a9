"""Direct statements: the few statements every call runs, on the driver's own connection.

Every call to the case API reads its nominal, the caller's involvements and keys, spends its
DPoP proof and appends its audit entry. Through SQLAlchemy's execution layer each of those costs
0.3 to 1 ms of CPU here, whatever it reads (compile-cache lookup, parameter and result
processing, the ORM's loading, a greenlet hand-off per call), against about 0.1 ms for the same
statement handed straight to psycopg or sqlite3; on the hot path that layer was most of a read.

A :class:`Direct` is a Core statement that SQLAlchemy compiles once per dialect, so the SQL, its
bind casts, its parameter order and the bind and result processors of its column types
(``UTCDateTime``, JSON, enums) are SQLAlchemy's own. At run time it is handed to the DBAPI
connection of the session's transaction (:meth:`Direct.rows`, :meth:`Direct.many`): it is part
of that transaction, committed or rolled back with the rest of it, and the session's pending
ORM objects are flushed first, as SQLAlchemy's autoflush would have. Rows come back as plain
tuples, processed as ``session.execute`` would have processed them.

Only fixed statements belong here (no ``IN`` lists expanded per call, no literal rendering);
:class:`Direct` refuses a statement it cannot run unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import bindparam, inspect, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import ClauseElement

__all__ = ["ByKey", "Direct"]

#: Where a session keeps the driver connection of its current transaction (see _Driver._of).
_KNOWN = "gateway.store.direct.driver"

_Processor = Callable[[Any], Any]
_M = TypeVar("_M")


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One statement as one dialect runs it."""

    sql: str
    #: The parameters' names, in the order a positional (qmark) driver takes them.
    names: tuple[str, ...]
    positional: bool
    #: The values of the statement's own parameters (literals); the caller gives the rest.
    fixed: dict[str, Any]
    #: The parameters the caller must give.
    required: frozenset[str]
    #: (name, processor) for each parameter whose type converts its value.
    binds: tuple[tuple[str, _Processor], ...]
    #: A processor per result column, or None where the driver's value is the value.
    results: tuple[_Processor | None, ...]

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        missing = self.required.difference(values)
        if missing:
            raise KeyError(f"parameters not given: {sorted(missing)}")
        named = {name: values[name] if name in values else self.fixed[name] for name in self.names}
        for name, process in self.binds:
            named[name] = process(named[name])
        return tuple(named[name] for name in self.names) if self.positional else named

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(
            value if process is None or value is None else process(value)
            for process, value in zip(self.results, raw, strict=True)
        )


class Direct:
    """A Core statement compiled once per dialect and run on the driver's connection.

    An INSERT run by :meth:`many` takes the columns its mappings name (all the same ones, every
    time: the columns' Python-side defaults are not applied here)."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def compiled(self, dialect: Dialect, column_keys: tuple[str, ...] = ()) -> _Compiled:
        known = self._compiled.get((dialect.name, column_keys))
        if known is None:
            known = self._compiled[dialect.name, column_keys] = self._compile(dialect, column_keys)
        return known

    def _compile(self, dialect: Dialect, column_keys: tuple[str, ...]) -> _Compiled:
        many = bool(column_keys)
        compiled: Any = self.statement.compile(
            dialect=dialect, column_keys=list(column_keys) or None, for_executemany=many
        )
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a Direct statement takes no parameters expanded per execution")
        positional = bool(dialect.positional)
        defaults = compiled.construct_params(_check=False)
        names = tuple(compiled.positiontup if positional else defaults)
        required = {compiled.bind_names[b] for b in compiled.binds.values() if b.required}
        required.update(key for key in column_keys if key in names)
        fixed = {name: value for name, value in defaults.items() if name not in required}
        binds = tuple(
            (name, process)
            for name, process in compiled._bind_processors.items()
            if name in names and process is not None
        )
        results = tuple(
            column[3]._cached_result_processor(dialect, None) for column in compiled._result_columns
        )
        return _Compiled(
            compiled.string, names, positional, fixed, frozenset(required), binds, results
        )

    async def rows(self, session: AsyncSession, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run once in the session's transaction; every row it returns, processed."""
        async with _Driver.of(session) as on:
            compiled = self.compiled(on.dialect)
            sql, parameters = on.announce(compiled.sql, compiled.parameters(values), many=False)
            cursor = await on.driver.execute(sql, parameters)
            try:
                fetched = await cursor.fetchall() if compiled.results else []
            finally:
                await cursor.close()
        return [compiled.row(raw) for raw in fetched]

    async def first(
        self, session: AsyncSession, values: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        """The first row, or None."""
        found = await self.rows(session, values)
        return found[0] if found else None

    async def first_of_each(
        self, session: AsyncSession, values: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...] | None]:
        """Run once per mapping of ``values``; the first row each run returned, or None.

        On psycopg one executemany, pipelined (one round trip for all of them); on sqlite3,
        whose executemany returns no rows, and for a single mapping, one statement each."""
        if not values:
            return []
        async with _Driver.of(session) as on:
            compiled = self.compiled(on.dialect)
            rows = [compiled.parameters(one) for one in values]
            sql, parameters = on.announce(compiled.sql, rows, many=True)
            fetched: list[Any] = []
            if compiled.positional or len(parameters) == 1:
                for one in parameters:
                    cursor = await on.driver.execute(sql, one)
                    try:
                        fetched.append(await cursor.fetchone())
                    finally:
                        await cursor.close()
            else:
                async with on.driver.cursor() as cursor:
                    await cursor.executemany(sql, parameters, returning=True)
                    while True:
                        fetched.append(await cursor.fetchone())
                        if not cursor.nextset():
                            break
        if len(fetched) != len(values):
            raise RuntimeError("the driver did not return one result per row given")
        return [None if raw is None else compiled.row(raw) for raw in fetched]

    async def many(self, session: AsyncSession, values: Sequence[Mapping[str, Any]]) -> None:
        """Run once per mapping of ``values`` (an executemany) in the session's transaction."""
        if not values:
            return
        columns = tuple(values[0])
        if any(one.keys() != values[0].keys() for one in values):
            raise ValueError("every row of an executemany names the same columns")
        async with _Driver.of(session) as on:
            compiled = self.compiled(on.dialect, columns)
            rows = [compiled.parameters(one) for one in values]
            sql, parameters = on.announce(compiled.sql, rows, many=True)
            if compiled.positional:  # sqlite3 (aiosqlite): executemany is the connection's
                cursor = await on.driver.executemany(sql, parameters)
                await cursor.close()
            else:
                async with on.driver.cursor() as cursor:  # psycopg: a cursor's, pipelined
                    await cursor.executemany(sql, parameters)


class ByKey(Generic[_M]):
    """One row of a mapped class by its primary key, read as a :class:`Direct` statement.

    The instance is a read-only copy, not in the session, built as the ORM builds a loaded row:
    its column values set in its dict, no attribute events or validators run on values the
    database holds (``Model(**row)`` runs both for every column, and ``session.get`` the ORM's
    whole loading path; each cost more than the statement here)."""

    def __init__(self, model: type[_M]) -> None:
        mapper = inspect(model)
        table = mapper.local_table
        (key,) = mapper.primary_key
        self._statement = Direct(select(table).where(key == bindparam("key")))
        self._attributes = tuple(mapper.get_property_by_column(c).key for c in table.columns)
        self._new: Callable[[], _M] = mapper.class_manager.new_instance

    async def get(self, session: AsyncSession, key: Any) -> _M | None:
        """The row with primary key ``key``, or None."""
        row = await self._statement.first(session, {"key": key})
        if row is None:
            return None
        instance = self._new()
        instance.__dict__.update(zip(self._attributes, row, strict=True))
        return instance


@dataclass(frozen=True, slots=True)
class _Driver:
    """The DBAPI connection of a session's transaction, its dialect, and SQLAlchemy's own
    connection over it (whose events and invalidation still apply)."""

    driver: Any
    dialect: Dialect
    connection: AsyncConnection

    @classmethod
    @contextlib.asynccontextmanager
    async def of(cls, session: AsyncSession) -> AsyncIterator[_Driver]:
        """The session's connection, its transaction begun. A driver's error leaves as
        SQLAlchemy's own exception for it (OperationalError, IntegrityError, ...), as
        ``session.execute`` would have raised it, and a connection the driver lost is
        invalidated so that the pool does not hand it out again."""
        if session.new or session.dirty or session.deleted:
            await session.flush()  # what autoflush does before session.execute
        on = await cls._of(session)
        dialect = on.dialect
        try:
            yield on
        except dialect.loaded_dbapi.Error as exc:
            lost = _is_disconnect(dialect, exc, on.driver)
            translated = DBAPIError.instance(
                None,
                None,
                exc,
                dialect.loaded_dbapi.Error,
                connection_invalidated=lost,
                dialect=dialect,
            )
            if lost:
                await on.connection.invalidate(exc)
            raise translated from exc

    @classmethod
    async def _of(cls, session: AsyncSession) -> _Driver:
        """The session's connection, found once per transaction: a transaction keeps its
        connection until it ends, and asking the session for it again costs a greenlet
        hand-off and the ORM's bookkeeping on every statement."""
        transaction = session.sync_session.get_transaction()
        known = session.info.get(_KNOWN)
        if known is not None and known[0] is transaction and not known[1].connection.invalidated:
            driver: _Driver = known[1]
            return driver
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        driver = cls(raw.driver_connection, connection.dialect, connection)
        session.info[_KNOWN] = (session.sync_session.get_transaction(), driver)
        return driver

    def announce(self, sql: str, parameters: Any, *, many: bool) -> tuple[str, Any]:
        """Run the engine's ``before_cursor_execute`` listeners, as SQLAlchemy does before every
        statement it sends (statement tracing, instrumentation, tests' fault injection), with no
        cursor or execution context; they may raise, or return the statement to send."""
        sync = self.connection.sync_connection
        if sync is not None and (sync._has_events or sync.engine._has_events):
            for listener in sync.dispatch.before_cursor_execute:
                sql, parameters = listener(sync, None, sql, parameters, None, many)
        return sql, parameters


def _is_disconnect(dialect: Dialect, exc: BaseException, driver: Any) -> bool:
    try:
        return bool(dialect.is_disconnect(exc, driver, None))  # type: ignore[arg-type]
    except Exception:  # a dialect that cannot tell: assume the connection still stands
        return False
