"""Rendering the console: Jinja2 with autoescaping, the `literal` filter, strict headers, CSV.

Everything from the audit log is shown *literally*: Jinja2 escapes markup, and `literal` first
turns control characters (C0, DEL, C1), Unicode bidirectional controls, zero-width and other
format characters, line and paragraph separators, private-use and unassigned code points into
visible escapes (``\\x07``, ``\\u202e``; :func:`gateway.labels.visible`), so that text can
neither hide nor reorder what is around it, nor pass for other text.

Every console response carries a strict Content-Security-Policy (scripts and styles from the
gateway itself only, no inline script, no framing, forms posting back to the gateway only).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from gateway.labels import visible

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "csv_cell",
    "csv_rows",
    "csv_text",
    "literal",
    "render",
    "secure_headers",
]

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
#: A cell starting with one of these (after blanks and double quotes) is run as a formula, or
#: (tab, carriage return) may be trimmed until one does.
_FORMULA_START: Final = re.compile(r'\A(?:[\t\r]|[\s"]*[=+\-@])')
#: A list separator (comma, semicolon, tab) or line break inside a cell, followed (after blanks
#: and double quotes) by what starts a formula: a spreadsheet reading the file with another
#: separator than the comma, or without honouring the quotes, makes a new cell there.
_FORMULA_AFTER_SPLIT: Final = re.compile(r'([,;\t\r\n])(?=[\s"]*[=+\-@])')

_environment = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    auto_reload=False,
)


def literal(value: object) -> str:
    """The text of ``value`` with invisible and reordering characters made visible."""
    if value is None:
        return ""
    return visible(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


_environment.filters["literal"] = literal


def secure_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def render(
    template: str, context: Mapping[str, Any], *, status: int = 200, headers: Mapping[str, str] = {}
) -> HTMLResponse:
    """Render ``template`` into an HTML response with the console's security headers."""
    html = _environment.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={**secure_headers(), **headers})


def csv_cell(value: object) -> str:
    """A cell a spreadsheet will not run, however it splits it: text starting = + - @ (after
    blanks and double quotes), or a tab or CR, gets a leading ``'``; so does every place inside
    it where a separator (``,`` ``;`` tab) or a line break is followed by one of = + - @ (after
    blanks and double quotes): ``x;=1`` is written ``x;'=1``."""
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
    text = _FORMULA_AFTER_SPLIT.sub(r"\1'", text)
    return "'" + text if _FORMULA_START.search(text) else text  # \A: at the start only


def csv_rows(header: Sequence[str] | None, rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """The CSV lines of ``header`` (if given) and ``rows``, one string a row as it is made:
    every cell quoted (a separator or line break in a cell never ends it, whatever separator
    the reader takes), and neutralised (`csv_cell`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    if header is not None:
        writer.writerow(header)
        yield out.getvalue()
    for row in rows:
        out.seek(0)
        out.truncate()
        writer.writerow([csv_cell(value) for value in row])
        yield out.getvalue()


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    return "".join(csv_rows(header, rows))
