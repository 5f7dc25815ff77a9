"""Moving the stored case data to the current KEK (``mappa-gateway db rewrap-case-data``).

The second half of a KEK rotation (keys/README.md, "Rotating the KEK"): ``keys rewrap`` moves
the key directory, this moves every sealed column of every table. Each value is rewrapped with
:meth:`keys.Envelope.rewrap`: only its wrapped data key changes, the record is never decrypted.
The gateway keeps serving meanwhile, since it opens values under the previous KEK
(``MAPPA_PREVIOUS_KEKS``, ``MAPPA_PREVIOUS_KEK_FILES``) and seals new ones under the current KEK.

The sealed columns are every ``*_sealed`` column of the models (:func:`sealed_columns`), so a
new one is moved without a change here. Each column is walked in primary-key order, one
transaction per batch; a value is replaced only if it is still the one read (``WHERE`` the old
value), so a row rewritten meanwhile keeps its new value. A value already under the current KEK
is left alone, so the command is idempotent, and one interrupted is finished by running it
again. The report counts, per column, the values moved and those left under another KEK (a KEK
not configured, or a damaged value): the previous KEK may be removed only when nothing is left.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Table, and_, select, tuple_, update

from gateway.store.database import Database
from gateway.store.models import Base
from keys import Envelope, KeysError, blob_kek_id

__all__ = ["ColumnReport", "rewrap_case_data", "sealed_columns"]

SEALED_SUFFIX = "_sealed"


def sealed_columns() -> list[tuple[Table, Column[Any]]]:
    """Every sealed column of the store: each ``*_sealed`` column of every table."""
    return [
        (table, column)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if column.name.endswith(SEALED_SUFFIX)
    ]


@dataclass
class ColumnReport:
    """What one column holds, after a run (or as it stands, with ``check``)."""

    table: str
    column: str
    #: Values moved to the current KEK by this run.
    rewrapped: int = 0
    #: Values already under the current KEK.
    current: int = 0
    #: Values changed by a writer between the read and the update (the next run sees them).
    raced: int = 0
    #: Values left under another KEK, by kek_id ("damaged" for a value that does not parse).
    left: Counter[str] = field(default_factory=Counter)

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


def _after(table: Table, last: tuple[Any, ...] | None) -> Any:
    keys = list(table.primary_key.columns)
    if last is None:
        return None
    if len(keys) == 1:
        return keys[0] > last[0]
    return tuple_(*keys) > tuple_(*last)


async def _column(
    db: Database,
    envelope: Envelope,
    table: Table,
    column: Column[Any],
    *,
    batch_size: int,
    check: bool,
) -> ColumnReport:
    report = ColumnReport(table.name, column.name)
    keys = list(table.primary_key.columns)
    # A rewrap changes no data: columns the table updates on any change (updated_at) keep theirs.
    kept = {other: other for other in table.columns if other.onupdate is not None}

    def values(moved: bytes) -> dict[Any, Any]:
        return {**kept, column: moved}

    last: tuple[Any, ...] | None = None
    while True:
        query = select(*keys, column).where(column.is_not(None)).order_by(*keys).limit(batch_size)
        after = _after(table, last)
        if after is not None:
            query = query.where(after)
        async with db.read() if check else db.write() as session:
            rows = (await session.execute(query)).all()
            for row in rows:
                blob = bytes(row[-1])
                try:
                    kek_id = blob_kek_id(blob)
                except KeysError:
                    report.left["damaged"] += 1
                    continue
                if kek_id == envelope.kek_id:
                    report.current += 1
                    continue
                if check:
                    report.left[kek_id] += 1
                    continue
                try:
                    moved = envelope.rewrap(blob)
                except KeysError:
                    report.left[kek_id] += 1
                    continue
                match = [key == value for key, value in zip(keys, row[:-1], strict=True)]
                done = await session.execute(
                    update(table).where(and_(*match, column == row[-1])).values(values(moved))
                )
                if getattr(done, "rowcount", 1) == 1:
                    report.rewrapped += 1
                else:
                    report.raced += 1
        if len(rows) < batch_size:
            return report
        last = tuple(rows[-1][:-1])


async def rewrap_case_data(
    db: Database, envelope: Envelope, *, batch_size: int = 500, check: bool = False
) -> list[ColumnReport]:
    """Rewrap every sealed value under ``envelope``'s current KEK (``check``: count only);
    a report per sealed column."""
    return [
        await _column(db, envelope, table, column, batch_size=batch_size, check=check)
        for table, column in sealed_columns()
    ]
