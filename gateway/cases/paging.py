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
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute
from starlette.requests import Request

from gateway import errors

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Page", "encode_cursor", "page_of"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
_ID = re.compile(r"^[0-9a-f-]{36}$")
Q = TypeVar("Q", bound=Select[Any])

#: A ``limit`` is one to three ASCII digits (``str.isdigit`` also passes "\u00b2", which
#: ``int`` refuses, and other scripts' digits, which it reads).
_LIMIT = re.compile(r"[0-9]{1,3}")

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


def _invalid(name: str) -> errors.InvalidParameter:
    return errors.InvalidParameter(f"{name} is not valid", diagnostics={"parameter": name})


def encode_cursor(created_at: dt.datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(cursor: str) -> tuple[dt.datetime, str]:
    if len(cursor) > 200:
        raise _invalid("cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, row_id = json.loads(raw)
        at = dt.datetime.fromisoformat(moment)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _invalid("cursor") from exc
    if at.tzinfo is None or not isinstance(row_id, str) or not _ID.match(row_id):
        raise _invalid("cursor")
    return at, row_id


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
    after = _decode(params["cursor"]) if "cursor" in params else None
    return Page(after, limit)
