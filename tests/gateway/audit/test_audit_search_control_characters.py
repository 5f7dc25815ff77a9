"""Audit search parameters PostgreSQL could not take, and time bounds at the calendar's ends.

A NUL in a filter value was a 500 on PostgreSQL (it cannot compare text holding one) and an
empty page on SQLite. Every control character in any search value is now a 400
``invalid_parameter`` on both backends, before anything is read; values that merely look like
SQL stay literal (an empty page). ``to=9999-12-31`` used to overflow (a 500 everywhere): a bound
beyond the calendar's ends now stops there.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from gateway.audit.search import parse_query
from gateway.errors import InvalidParameter
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store.models import AuditEntry
from tests.gateway.audit.conftest import append_entries
from tests.gateway.oauth.support import ISSUER, AgencyClient, Ledger

ENTRIES = ISSUER + "/v1/audit/entries"
FILTERS = ["nominal", "agency", "officer", "legal_basis", "purpose", "operation", "outcome"]
EVERY_PARAMETER = [*FILTERS, "from", "to", "limit", "cursor"]
#: A NUL where the review's probe put one, a NUL alone, a bell, a trailing newline, a tab.
CONTROL_VALUES = ["x\x00y", "\x00", "x\x07", "N00001\n", "a\tb", "\x1b[2J"]


@pytest.fixture
def oauth_settings(oauth_settings: Settings, database_url: str) -> Settings:
    """The audit API's settings (the sequencer left to the tests), on each backend."""
    return oauth_settings.model_copy(update={"database_url": database_url})


@pytest.fixture
async def entries(gateway_state: GatewayState) -> int:
    """Twelve entries of the sample log (nominals N00000 to N00011)."""
    await append_entries(gateway_state.db, 12)
    return 12


async def _search(http: httpx.AsyncClient, caller: AgencyClient, **params: Any) -> httpx.Response:
    token = await caller.token(http)
    headers = caller.resource_headers(token, url=ENTRIES, method="GET")
    return await http.get(ENTRIES, params=params, headers=headers)


async def _count(state: GatewayState) -> int:
    """Audit entries, less the token issues of the searches' own tokens."""
    async with state.db.read() as session:
        query = select(func.count(AuditEntry.id)).where(AuditEntry.operation != "token_issue")
        return int(await session.scalar(query) or 0)


def _sample(page: httpx.Response) -> list[dict[str, Any]]:
    """The entries of the sample log on a page (not the searches' own)."""
    return [e for e in page.json()["entries"] if (e["request_id"] or "").startswith("req-")]


@pytest.mark.parametrize("name", EVERY_PARAMETER)
async def test_a_control_character_in_any_search_value_is_400_and_nothing_is_read(
    http: httpx.AsyncClient,
    coordinator: AgencyClient,
    gateway_state: GatewayState,
    ledger: Ledger,
    entries: int,
    name: str,
) -> None:
    """400 invalid_parameter naming the parameter, no SQL or driver text in the answer, and no
    search recorded (none ran); never a 500 on either backend."""
    for value in CONTROL_VALUES:
        before = await _count(gateway_state)
        response = await _search(http, coordinator, **{name: value})
        assert response.status_code == 400, (name, repr(value), response.text)
        problem = response.json()
        assert problem["code"] == "invalid_parameter"
        assert response.headers["content-type"].startswith("application/problem+json")
        assert name in problem["detail"]
        for word in ("select", "where", "psycopg", "sqlite", "nul"):
            assert word not in response.text.lower().replace("null", ""), word
        assert await _count(gateway_state) == before  # nothing searched, nothing recorded
    assert await ledger.audit("consultation", "allowed") == []
    # the worker is fine: a good search still answers, and is recorded
    good = await _search(http, coordinator, nominal="N00003")
    assert good.status_code == 200
    assert [e["nominal_ref"] for e in good.json()["entries"]] == ["N00003"]


@pytest.mark.parametrize("name", FILTERS)
@pytest.mark.parametrize(
    "value",
    ["' OR '1'='1", "N00001'; DROP TABLE audit_entries; --", "%", "N0000_", "\u00e9" * 200],
)
async def test_filter_values_that_look_like_sql_are_literal_on_both_backends(
    http: httpx.AsyncClient,
    coordinator: AgencyClient,
    gateway_state: GatewayState,
    entries: int,
    name: str,
    value: str,
) -> None:
    """SQL, wildcards and long non-ASCII text match nothing: 200 and an empty page; the table
    is intact."""
    response = await _search(http, coordinator, **{name: value})
    assert response.status_code == 200, response.text
    assert response.json() == {"entries": [], "next_cursor": None}
    assert len(_sample(await _search(http, coordinator, limit="500"))) == 12


@pytest.mark.parametrize(
    ("params", "all_of_them"),
    [
        ({"to": "9999-12-31"}, True),  # the last day: its end is the calendar's
        ({"to": "9999-12-31T23:00:00-05:00"}, True),  # in year 10000 in UTC
        ({"from": "0001-01-01T00:30:00+01:00"}, True),  # in year 0 in UTC
        ({"from": "0001-01-01"}, True),
        ({"from": "9999-12-31"}, False),
        ({"from": "9999-12-31T23:00:00-05:00"}, False),
        ({"to": "0001-01-01T00:30:00+01:00"}, False),
        ({"to": "0001-01-01"}, False),
    ],
)
async def test_time_bounds_at_the_ends_of_the_calendar_answer(
    http: httpx.AsyncClient,
    coordinator: AgencyClient,
    entries: int,
    params: dict[str, str],
    all_of_them: bool,
) -> None:
    """``to=9999-12-31`` overflowed (a 500); a bound beyond either end of the calendar now
    stops at it: every entry, or none, on both backends."""
    response = await _search(http, coordinator, limit="500", **params)
    assert response.status_code == 200, response.text
    assert len(_sample(response)) == (12 if all_of_them else 0)


# -- the parser alone ---------------------------------------------------------------------------

END = dt.datetime.max.replace(tzinfo=dt.UTC)
START = dt.datetime.min.replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("name", "value", "bound"),
    [
        ("to", "9999-12-31", END),
        ("to", "9999-12-30", dt.datetime(9999, 12, 31, tzinfo=dt.UTC)),
        ("to", "9999-12-31T23:00:00-05:00", END),
        ("from", "9999-12-31T23:00:00-05:00", END),
        ("from", "0001-01-01T00:30:00+01:00", START),
        ("to", "0001-01-01T00:30:00+01:00", START),
        ("from", "0001-01-01", START),
    ],
)
def test_bounds_beyond_the_calendar_stop_at_its_ends(
    name: str, value: str, bound: dt.datetime
) -> None:
    query = parse_query([(name, value)])
    assert (query.filter.since if name == "from" else query.filter.until) == bound
    assert query.filter.as_detail()[name] == bound.isoformat()


@pytest.mark.parametrize("name", [*EVERY_PARAMETER, "csrf_token"])
@pytest.mark.parametrize("value", CONTROL_VALUES)
def test_the_parser_refuses_control_characters_in_every_value(name: str, value: str) -> None:
    """The console's search, CSV export and the IG API share this parser (and the console's
    extra CSRF field gets the same rule)."""
    with pytest.raises(InvalidParameter, match="control characters"):
        parse_query([(name, value)], extra=("csrf_token",))


async def test_an_inclusion_proof_of_an_id_no_entry_can_have_is_the_unknown_entry_s_404(
    http: httpx.AsyncClient,
    gateway_state: GatewayState,
    coordinator: AgencyClient,
    entries: int,
) -> None:
    """A NUL in entry_id was a 500 on PostgreSQL (the id went to the query as it came); any id
    not shaped as an entry's is now answered as an unknown one is, before anything is read."""
    url = ISSUER + "/v1/audit/proof/inclusion"
    answers = []
    for entry_id in ("a\x00b", "00000000-0000-4000-8000-000000000000", "x" * 36):
        token = await coordinator.token(http)
        headers = coordinator.resource_headers(token, url=url, method="GET")
        response = await http.get(url, params={"entry_id": entry_id}, headers=headers)
        answers.append((response.status_code, response.json()["code"]))
    assert answers == [(404, "not_found")] * 3
