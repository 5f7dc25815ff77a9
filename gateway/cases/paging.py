"""Opaque cursor pagination for lists of the case API.

A cursor is base64url of the position after the last item returned (its creation time and id);
callers must treat it as opaque. Pages are ordered by (creation time, id), so items created while
a caller pages never make it skip or repeat one; :meth:`Page.select` narrows a query to its page.
Query parameters are strict: only ``cursor`` and ``limit``, each at most once; anything else is
400 ``invalid_parameter``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from starlette.requests import Request

from gateway import errors
from gateway.contract.types import is_resource_id

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Page",
    "collect",
    "decode_cursor",
    "encode_cursor",
    "page_of",
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
#: A ``limit`` is one to three ASCII digits (``str.isdigit`` also passes "\u00b2", which
#: ``int`` refuses, and other scripts' digits, which it reads).
_LIMIT = re.compile(r"[0-9]{1,3}")
Q = TypeVar("Q", bound=Select[Any])
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page:
    """Where a page starts (after ``after``, or at the beginning) and how long it is."""

    after: tuple[dt.datetime, str] | None
    limit: int

    def select(
        self,
        query: Q,
        moment: InstrumentedAttribute[dt.datetime],
        row_id: InstrumentedAttribute[str],
    ) -> Q:
        """``query`` ordered by (``moment``, ``row_id``), from after the cursor, one page long."""
        if self.after is not None:
            at, last = self.after
            query = query.where(or_(moment > at, and_(moment == at, row_id > last)))
        return query.order_by(moment, row_id).limit(self.limit)


async def collect(
    session: AsyncSession,
    page: Page,
    query: Select[Any],
    moment: InstrumentedAttribute[dt.datetime],
    row_id: InstrumentedAttribute[str],
    keep: Callable[[Any], T | None],
) -> tuple[list[tuple[Any, T]], str | None]:
    """A page of the rows of ``query`` that ``keep`` keeps (what it makes of each), and the
    cursor of the next page, or None when no kept row follows.

    For lists the caller sees only part of: a row it may not know of is read past, never
    counted, and never gives the cursor (which is made from the last row returned), so neither
    a short page nor a cursor says that such rows exist. Rows are read a page's length at a
    time until the page and one kept row more are found, or none are left."""
    kept: list[tuple[Any, T]] = []
    after = page.after
    while True:
        batch = (await session.scalars(Page(after, page.limit).select(query, moment, row_id))).all()
        for row in batch:
            made = keep(row)
            if made is None:
                continue
            if len(kept) == page.limit:  # one more beyond the page: there is a next page
                last = kept[-1][0]
                return kept, encode_cursor(getattr(last, moment.key), getattr(last, row_id.key))
            kept.append((row, made))
        if len(batch) < page.limit:
            return kept, None
        after = (getattr(batch[-1], moment.key), getattr(batch[-1], row_id.key))


def _invalid(name: str) -> errors.InvalidParameter:
    return errors.InvalidParameter(f"{name} is not valid", diagnostics={"parameter": name})


def encode_cursor(created_at: dt.datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """The position a cursor of `encode_cursor` names, the time in UTC; anything else (a
    malformed cursor, an id that is not a gateway id, a time the store cannot compare) is 400
    ``invalid_parameter`` before any query sees it."""
    if len(cursor) > 200:
        raise _invalid("cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, row_id = json.loads(raw)
        at = dt.datetime.fromisoformat(moment)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _invalid("cursor") from exc
    if at.tzinfo is None or not isinstance(row_id, str) or not is_resource_id(row_id):
        raise _invalid("cursor")
    try:  # the store compares in UTC, where a time near the calendar's ends may not exist
        return at.astimezone(dt.UTC), row_id
    except OverflowError as exc:
        raise _invalid("cursor") from exc


def page_of(request: Request) -> Page:
    """The page the request asks for; unknown, repeated or malformed parameters are 400."""
    params = request.query_params
    for name in params.keys():
        if name not in {"cursor", "limit"}:
            raise _invalid(name[:40])
        if len(params.getlist(name)) > 1:
            raise _invalid(name)
    limit = DEFAULT_LIMIT
    if "limit" in params:
        text = params["limit"]
        if _LIMIT.fullmatch(text) is None or not 1 <= int(text) <= MAX_LIMIT:
            raise _invalid("limit")
        limit = int(text)
    after = decode_cursor(params["cursor"]) if "cursor" in params else None
    return Page(after, limit)
