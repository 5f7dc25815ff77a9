"""benchmarks/soak.py: what it expects of the audit log, and a short soak end to end."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.soak import audit_mismatches

ROOT = Path(__file__).resolve().parents[2]


def _counts(**overrides: int) -> Counter[tuple[str, str, str]]:
    counts: Counter[tuple[str, str, str]] = Counter(
        {
            ("housing", "disclosure", "allowed"): 40,
            ("probation", "collection", "allowed"): 10,
            ("probation", "disclosure", "allowed"): 10,
            ("housing", "token_issue", "allowed"): 1,
        }
    )
    for key, n in overrides.items():
        agency, operation, outcome = key.split("__")
        counts[(agency, operation, outcome)] = n
    return counts


def _check(counts: Counter[tuple[str, str, str]]) -> list[str]:
    return audit_mismatches(counts, reader="housing", writer="probation", reads=40, writes=10)


def test_one_entry_per_disclosure_is_a_match_token_issues_aside() -> None:
    assert _check(_counts()) == []


@pytest.mark.parametrize(
    ("override", "named"),
    [
        # a read served with no audit entry
        ({"housing__disclosure__allowed": 39}, "housing disclosure/allowed: 39 entries, 40"),
        # a push to the lead without its disclosure entry
        ({"probation__disclosure__allowed": 9}, "probation disclosure/allowed: 9 entries, 10"),
        # an entry twice
        ({"probation__collection__allowed": 11}, "probation collection/allowed: 11"),
        # a refusal nobody was served
        ({"housing__authentication__refused": 1}, "housing authentication/refused: 1 entries, 0"),
    ],
)
def test_a_missing_or_extra_entry_is_named(override: dict[str, int], named: str) -> None:
    problems = _check(_counts(**override))
    assert len(problems) == 1 and problems[0].startswith(named)


@pytest.mark.slow
def test_a_short_soak_serves_everything_and_audits_each_disclosure_once() -> None:
    """Five seconds at 10 requests a second against the real two-worker gateway: no error, and
    the audit log holds exactly one entry per disclosure (the exit status says both)."""
    done = subprocess.run(
        [sys.executable, "benchmarks/soak.py", "--duration", "5", "--peak", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit: one entry per disclosure, none missing, none extra" in done.stdout
    served = re.search(r"^reads (\d+) .*; writes (\d+) ", done.stdout, re.MULTILINE)
    assert served is not None and int(served[1]) > 0 and int(served[2]) > 0
