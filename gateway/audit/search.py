"""Searching the audit log: filters, limits and opaque cursors, for the IG API and the console.

Parameters (all optional, each at most once, values at most 200 characters and without control
characters, U+0000 to U+001F):

- ``nominal``, ``agency``, ``officer``, ``legal_basis``, ``purpose``, ``operation``, ``outcome``:
  exact match on the entry's field. Values are only ever bound parameters: one that looks like
  SQL (or like anything else) simply matches no entry.
- ``from`` (inclusive) and ``to`` (exclusive): ISO 8601 times with an offset, or dates
  (``to=2026-03-01`` then means up to the end of that day, UTC). A bound beyond the calendar's
  ends (``to=9999-12-31``, or a time whose offset takes it past them) stops at the end: no
  entry lies beyond it.
- ``limit``: 1 to `MAX_LIMIT` (default `DEFAULT_LIMIT`); ``cursor``: the ``next_cursor`` of the
  previous page.

An empty value means "no filter" (what an empty form field sends). Anything else unknown,
repeated or malformed raises `InvalidParameter` (400), and so does a control character in any
value: PostgreSQL cannot compare text with a NUL at all (it would be a 500 on the production
backend, and no match on SQLite), and one rule for every control character is simpler to state
than a list. Results come newest first (by insertion), unsequenced entries included: the IG
officer sees an act before the sequencer has signed it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Select, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.contract.types import control_character_in, is_resource_id
from gateway.errors import InvalidParameter
from gateway.store.models import Agency, AuditEntry, Nominal

__all__ = [
    "DEFAULT_LIMIT",
    "FILTER_FIELDS",
    "MAX_LIMIT",
    "EntryFilter",
    "Page",
    "SearchQuery",
    "SeenPage",
    "encode_cursor",
    "entry_within",
    "of_area",
    "parse_query",
    "search_entries",
    "search_seen",
    "within",
]

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
MAX_VALUE_LENGTH: Final = 200

#: Query parameter -> column it matches exactly.
FILTER_FIELDS: Final[dict[str, str]] = {
    "nominal": "nominal_ref",
    "agency": "agency_id",
    "officer": "officer_id",
    "legal_basis": "legal_basis",
    "purpose": "purpose",
    "operation": "operation",
    "outcome": "outcome",
}
_RANGE: Final = ("from", "to")
_PAGING: Final = ("limit", "cursor")
_KNOWN: Final = frozenset((*FILTER_FIELDS, *_RANGE, *_PAGING))
_CURSOR_PREFIX: Final = "e1:"
_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: ASCII digits only (``str.isdigit`` also passes "\u00b2", which ``int`` refuses, and other
#: scripts' digits, which it reads), bounded in length before ``int`` reads them.
_LIMIT_DIGITS: Final = re.compile(r"[0-9]{1,3}")
_CURSOR_DIGITS: Final = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """Exact-match filters (by query parameter name) and a time range."""

    equals: tuple[tuple[str, str], ...] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def as_detail(self) -> dict[str, str]:
        """The filters as given, for the audit entry that records the search."""
        detail = dict(self.equals)
        if self.since is not None:
            detail["from"] = self.since.isoformat()
        if self.until is not None:
            detail["to"] = self.until.isoformat()
        return detail

    def apply(self, query: Select[Any]) -> Select[Any]:
        for name, value in self.equals:
            query = query.where(getattr(AuditEntry, FILTER_FIELDS[name]) == value)
        if self.since is not None:
            query = query.where(AuditEntry.occurred_at >= self.since)
        if self.until is not None:
            query = query.where(AuditEntry.occurred_at < self.until)
        return query


@dataclass(frozen=True, slots=True)
class SearchQuery:
    filter: EntryFilter = field(default_factory=EntryFilter)
    limit: int = DEFAULT_LIMIT
    after_id: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    entries: Sequence[AuditEntry]
    next_cursor: str | None


#: The calendar's ends, in UTC: where a bound beyond them stops.
_EARLIEST: Final = dt.datetime.min.replace(tzinfo=dt.UTC)
_LATEST: Final = dt.datetime.max.replace(tzinfo=dt.UTC)


def _time(name: str, value: str) -> dt.datetime:
    try:
        if _DATE.fullmatch(value):
            day = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
            if name != "to":
                return day
            # the end of the day; the end of the calendar for its last day
            return _LATEST if day.date() == dt.date.max else day + dt.timedelta(days=1)
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidParameter(f"{name}: an ISO 8601 date, or time with offset") from exc
    if moment.tzinfo is None:
        raise InvalidParameter(f"{name}: a time needs its UTC offset")
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        # past an end of the calendar in UTC (9999-12-31T23:00-05:00, 0001-01-01T00:00+01:00)
        return _LATEST if moment.year == dt.MAXYEAR else _EARLIEST


def encode_cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{entry_id}".encode()).decode().rstrip("=")


def _decode_cursor(value: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidParameter("cursor: not one this gateway issued") from exc
    number = raw.removeprefix(_CURSOR_PREFIX)
    if not raw.startswith(_CURSOR_PREFIX) or _CURSOR_DIGITS.fullmatch(number) is None:
        raise InvalidParameter("cursor: not one this gateway issued")
    return int(number)


def parse_query(items: Iterable[tuple[str, str]], *, extra: Iterable[str] = ()) -> SearchQuery:
    """Build a `SearchQuery` from query parameters, refusing unknown or repeated ones.

    Names in ``extra`` are tolerated and ignored (a caller's own parameters, e.g. a CSRF field).
    """
    seen: dict[str, str] = {}
    allowed = _KNOWN | set(extra)
    for name, value in items:
        if name not in allowed:
            raise InvalidParameter(f"unknown parameter {name[:40]!r}")
        if name in seen:
            raise InvalidParameter(f"parameter {name!r} given more than once")
        if len(value) > MAX_VALUE_LENGTH:
            raise InvalidParameter(f"{name}: at most {MAX_VALUE_LENGTH} characters")
        if control_character_in(value):
            raise InvalidParameter(f"{name}: control characters are not accepted")
        seen[name] = value
    equals = tuple((name, seen[name]) for name in FILTER_FIELDS if seen.get(name))
    since = _time("from", seen["from"]) if seen.get("from") else None
    until = _time("to", seen["to"]) if seen.get("to") else None
    limit = DEFAULT_LIMIT
    if seen.get("limit"):
        text = seen["limit"]
        if _LIMIT_DIGITS.fullmatch(text) is None or not 1 <= int(text) <= MAX_LIMIT:
            raise InvalidParameter(f"limit: a whole number from 1 to {MAX_LIMIT}")
        limit = int(text)
    after = _decode_cursor(seen["cursor"]) if seen.get("cursor") else None
    return SearchQuery(EntryFilter(equals, since, until), limit, after)


def of_area(statement: Select[Any], *areas: str) -> Select[Any]:
    """``statement`` narrowed to the entries of the MAPPA ``areas``: those made by one of their
    agencies, or about one of their nominals (neither area's unit sees the other's own
    business). An agency reader sees of these only what need-to-know lets it
    (`gateway.audit.agency_view`): an entry about a nominal only if it may know of that
    nominal. No area: no entry. An entry that names neither an agency nor a nominal of the
    areas (a console action, an administration entry, a refused client id no agency holds) is
    of no area."""
    if not areas:
        return statement.where(false())
    return statement.where(
        or_(
            AuditEntry.agency_id.in_(select(Agency.id).where(Agency.area.in_(areas))),
            AuditEntry.nominal_ref.in_(select(Nominal.id).where(Nominal.area.in_(areas))),
        )
    )


def within(statement: Select[Any], areas: Sequence[str] | None) -> Select[Any]:
    """``statement`` as a reader of ``areas`` may read it: None, the whole log (a national IG
    officer); else the entries of those areas (`of_area`), and of none when there are none."""
    return statement if areas is None else of_area(statement, *areas)


async def entry_within(
    session: AsyncSession, entry_id: str, areas: Sequence[str] | None
) -> AuditEntry | None:
    """The entry ``entry_id`` if a reader of ``areas`` may read it (`within`; None: any area or
    none), else None: an entry outside the areas is found exactly as one that does not exist,
    by the same query. An id not of the resource-id form is never looked up. What else the
    reader may see of the entry (an agency's need-to-know) is the caller's to check."""
    if not is_resource_id(entry_id):
        return None
    statement = within(select(AuditEntry).where(AuditEntry.entry_id == entry_id), areas)
    return (await session.scalars(statement.limit(1))).first()


def _matching(query: SearchQuery, areas: Sequence[str] | None, after_id: int | None) -> Select[Any]:
    statement = within(query.filter.apply(select(AuditEntry)), areas)
    if after_id is not None:
        statement = statement.where(AuditEntry.id < after_id)
    return statement.order_by(AuditEntry.id.desc())


async def search_entries(
    session: AsyncSession, query: SearchQuery, *, areas: Sequence[str] | None = None
) -> Page:
    """One page of matching entries, newest first, and the cursor of the next page; with
    ``areas``, only those areas' entries (`within`)."""
    statement = _matching(query, areas, query.after_id).limit(query.limit + 1)
    rows = list((await session.execute(statement)).scalars())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return Page(rows, encode_cursor(rows[-1].id) if more and rows else None)


#: How many matching rows a filtered search reads at a time.
SCAN_BATCH: Final = 200
#: How many batches one agency search reads at most: past them the page ends where the scan
#: stopped (`search_seen`).
SCAN_BATCHES: Final = 10
Seen = Callable[[AsyncSession, Sequence[AuditEntry]], Awaitable[list[dict[str, object] | None]]]


@dataclass(frozen=True, slots=True)
class SeenPage:
    """A page of entries as a reader sees them, and the cursor of the next page."""

    records: Sequence[dict[str, object]]
    next_cursor: str | None


async def search_seen(
    session: AsyncSession, query: SearchQuery, seen: Seen, *, areas: Sequence[str] | None = None
) -> SeenPage:
    """As `search_entries`, each entry as ``seen`` shows it (None: not at all). Entries left out
    leave no trace: the page is filled from further rows, the cursor is the last entry shown,
    and there is a next cursor only if one more entry would be shown.

    One call reads at most `SCAN_BATCHES` batches (each of `SCAN_BATCH` rows, or the page's
    limit and one): a reader that sees little of much would otherwise read its whole area's
    log, need-to-know decided for each of its nominals, and again for each next page. When the
    cap is reached before the page is full, the page ends there, with what it holds (maybe
    nothing) and a cursor at the last row read, from which the next page goes on."""
    records: list[dict[str, object]] = []
    last: int | None = None
    after = query.after_id
    batch = max(query.limit + 1, SCAN_BATCH)
    for _ in range(SCAN_BATCHES):
        rows = list((await session.scalars(_matching(query, areas, after).limit(batch))).all())
        for row, record in zip(rows, await seen(session, rows), strict=True):
            if record is None:
                continue
            if len(records) == query.limit:
                return SeenPage(records, encode_cursor(last) if last is not None else None)
            records.append(record)
            last = row.id
        if len(rows) < batch:
            return SeenPage(records, None)
        after = rows[-1].id
    return SeenPage(records, encode_cursor(after) if after is not None else None)
