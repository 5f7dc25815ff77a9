"""What one gateway process lets the console spend on its heavy pages: how many exports and
integrity runs at once, and how long an integrity verdict is reused.

The exports stream (a CSV page by page, the pack row by row), so memory stays bounded; what
they cost is database reads and a worker thread for as long as the download lasts. The
integrity page re-verifies the whole log. An officer (or whoever holds a stolen session) could
start either as often as they like; per process, at most `EXPORTS` exports (the audit API's
pack, ``GET /v1/audit/export``, among them: `gateway.console.exports`) and `INTEGRITY_RUNS`
runs go at once, and more are refused with 429 and Retry-After until one ends. The integrity
verdict is kept for `INTEGRITY_REUSE_SECONDS`, and only while the log's latest checkpoint, its
sequenced entries' count and last seq, and the witness file are as they were: a new checkpoint,
an entry removed, or the last seq changed is seen at once; an entry edited in place, or two
entries' seqs swapped, within that time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from gateway.audit.verify import VerificationReport

__all__ = [
    "EXPORTS",
    "INTEGRITY_REUSE_SECONDS",
    "INTEGRITY_RUNS",
    "RETRY_AFTER_SECONDS",
    "IntegrityCache",
    "LogState",
    "Slots",
]

EXPORTS: Final = 2
INTEGRITY_RUNS: Final = 1
INTEGRITY_REUSE_SECONDS: Final = 10.0
RETRY_AFTER_SECONDS: Final = 5


class Slots:
    """At most ``limit`` holders at once, in one process (the event loop is its only user, so
    no lock is needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self) -> bool:
        """Take a slot if one is free; the caller gives it back with :meth:`give_back`."""
        if self.held >= self.limit:
            return False
        self.held += 1
        return True

    def give_back(self) -> None:
        self.held = max(0, self.held - 1)


@dataclass(frozen=True, slots=True)
class LogState:
    """What an integrity verdict was computed on, as far as it can be read cheaply."""

    checkpoint_note: str | None
    sequenced: int
    last_seq: int | None
    witness_note: str | None
    witness_error: str | None


@dataclass(slots=True)
class IntegrityCache:
    """The last integrity verdict of this process, and the state of the log it was computed on."""

    state: LogState | None = None
    report: VerificationReport | None = None
    checked_at: dt.datetime | None = None

    def get(self, state: LogState, now: dt.datetime) -> tuple[VerificationReport, float] | None:
        """The verdict and its age in seconds, if it was computed on ``state`` recently."""
        if self.report is None or self.checked_at is None or self.state != state:
            return None
        age = (now - self.checked_at).total_seconds()
        if not 0 <= age < INTEGRITY_REUSE_SECONDS:
            return None
        return self.report, age

    def put(self, state: LogState, report: VerificationReport, now: dt.datetime) -> None:
        self.state, self.report, self.checked_at = state, report, now
