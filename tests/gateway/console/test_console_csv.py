"""The console's CSV: no cell, nor any piece of one a spreadsheet might split off, runs as a
formula, whatever list separator the spreadsheet reads the file with."""

from __future__ import annotations

import csv
import io
import re

import httpx
import pytest

from gateway.console.render import csv_cell, csv_text
from tests.gateway.console.conftest import BASE, Log, csrf_in

#: The sign-in officer id of the review's reproduction: control characters are kept.
_TYPED = "x;=2+5*cmd|' /C calc'!A0;\n"

HOSTILE: list[object] = [
    _TYPED,
    "a,=1+1",
    'a\t=HYPERLINK("http://x")',
    "a;  +1",
    'a;"=1"',
    "a\n@SUM(A1)",
    "a\r-1+2",
    "a\r\n=1",
    "=1;=2",
    " =1",
    '"=1',
    "\t=1",
    "x;\n=1",
    {"subject_dn": "CN=a;=1,+2"},
    ["ok", "=1"],
]
_FORMULA = ("=", "+", "-", "@")


def _pieces(text: str) -> list[str]:
    """Every piece of ``text`` a reader could make a cell of, splitting at any comma, semicolon,
    tab or line break whether quoted or not, as it would start once blanks and quotes are
    trimmed."""
    return [piece.lstrip(' \t\r\n"') for piece in re.split(r"[,;\t\r\n]", text)]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_no_piece_of_a_hostile_cell_starts_a_formula(value: object) -> None:
    """Split at any separator or line break, quoted or not: no piece starts = + - @."""
    written = csv_text(["value", "after"], [[value, "plain"]])
    assert not [piece for piece in _pieces(written) if piece.startswith(_FORMULA)], written
    for delimiter in (",", ";", "\t"):
        for row in csv.reader(io.StringIO(written), delimiter=delimiter):
            assert not [cell for cell in row if cell.lstrip(' \t\r\n"').startswith(_FORMULA)]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (_TYPED, "x;'=2+5*cmd|' /C calc'!A0;\n"),
        ("a; +1", "a;' +1"),
        ("=1;=2", "'=1;'=2"),
        ('"=1', "'\"=1"),
        ("a, b; c - d", "a, b; c - d"),  # a separator not followed by a formula: unchanged
        ("2026-11-23", "2026-11-23"),
        ({"k": "a;=1"}, '{"k": "a;\'=1"}'),
        (None, ""),
    ],
)
def test_a_hostile_cell_is_defused_where_a_formula_could_start(value: object, cell: str) -> None:
    """A ' is put at the cell's start and after each separator where a formula could start,
    nowhere else: the text stays readable."""
    assert csv_cell(value) == cell


def test_every_cell_is_quoted() -> None:
    """QUOTE_ALL: a separator in a cell never ends it, for a reader that honours quotes."""
    written = csv_text(["a", "b"], [["x;y", None], ["1", "plain"]])
    assert written == '"a","b"\r\n"x;y",""\r\n"1","plain"\r\n'
    for delimiter in (",", ";"):
        rows = list(csv.reader(io.StringIO(written), delimiter=delimiter))
        assert all(len(row) == (2 if delimiter == "," else 1) for row in rows)


async def test_an_id_typed_at_sign_in_reaches_the_csv_defused(
    console_app: object, officer: httpx.AsyncClient, log: Log
) -> None:
    """The review's reproduction: an anonymous visitor signs in as ``x;=2+5*cmd|...``; in the
    refusals exported as CSV, no piece of the row starts a formula for a ';' reader either."""
    transport = httpx.ASGITransport(app=console_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as anonymous:
        page = await anonymous.get("/console/login")
        refused = await anonymous.post(
            "/console/login",
            data={"officer_id": _TYPED, "password": "p" * 12, "csrf_token": csrf_in(page.text)},
        )
    assert refused.status_code == 401
    export = await officer.get(
        "/console/export.csv", params={"outcome": "refused", "operation": "console"}
    )
    assert export.status_code == 200
    assert "x;'=2+5*cmd|' /C calc'!A0;\n" in export.text
    assert not [piece for piece in _pieces(export.text) if piece.startswith(_FORMULA)]
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [row["officer_id"] for row in rows] == ["x;'=2+5*cmd|' /C calc'!A0;\n"]
