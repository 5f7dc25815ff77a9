"""Helpers shared by the adapter tests."""

from __future__ import annotations

import hashlib


def pnc_forms(pnc: str) -> set[str]:
    """A PNC id as it might leak: as written, its serial part, slash replaced or dropped, any
    case, and its unkeyed SHA-256 and SHA-1 (a few million PNC ids are quickly tried)."""
    serial = pnc.split("/")[1]
    spellings = {pnc, pnc.replace("/", "_"), pnc.replace("/", ""), pnc.replace("/", "-")}
    spellings |= {s.lower() for s in spellings}
    digests = {
        getattr(hashlib, name)(s.encode()).hexdigest()
        for name in ("sha256", "sha1")
        for s in spellings
    }
    return spellings | digests | {serial, serial[:-1], serial.lower()}
