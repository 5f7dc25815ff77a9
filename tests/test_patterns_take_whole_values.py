"""Every anchored validation pattern of the product is applied to the whole value.

``re.match`` with a pattern ending in ``$`` also accepts the value followed by one newline
(``$`` matches before a final ``\\n``), so "police-avon\\n" passed an agency-id check written with
``match``. Each validating pattern is applied with ``fullmatch``; this reads the product's source
so that a new ``.match(`` on a compiled pattern is caught where it is written.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "adapters", "keys", "policies")
#: ``NAME.match(`` where NAME is a module-level compiled pattern (upper-case by convention).
_MATCH_CALL = re.compile(r"\b(_?[A-Z][A-Z0-9_]*)\.match\(")


def test_no_validation_pattern_is_applied_with_match() -> None:
    sources = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))
    assert len(sources) > 100  # the guard reads the product, not an empty folder
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _MATCH_CALL.search(line)
    ]
    assert not found, "use fullmatch: " + "; ".join(found)


def test_the_guard_sees_a_match_call() -> None:
    """The guard's own pattern finds what it is for (and not a fullmatch)."""
    assert _MATCH_CALL.search("    if not _AREA.match(area):")
    assert _MATCH_CALL.search("KID_FILE.match(name)")
    assert not _MATCH_CALL.search("    if not _AREA.fullmatch(area):")
