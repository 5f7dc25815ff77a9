"""What is recorded for a disclosure: every field issue 6 asks for, committed with the act."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.commit import Audited, commit_audited, payload_digest
from gateway.audit.export import read_export, write_export
from gateway.audit.sequencer import sequence
from gateway.audit.signer import RingNoteSigner
from gateway.flow.audit import AuditEvent, Operation, Outcome, Withheld
from gateway.store import Database
from tests.gateway.audit.conftest import DB_ORIGIN


def test_payload_digest_is_the_sha256_of_the_released_bytes() -> None:
    """The digest names its algorithm and covers exactly the bytes released."""
    body = b"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9..."
    assert payload_digest(body) == "sha256:" + hashlib.sha256(body).hexdigest()


async def test_disclosure_entry_keeps_every_field_and_no_withheld_value(
    db: Database, ring_signer: RingNoteSigner, tmp_path: Path
) -> None:
    """Recipients, references, basis, purpose, policy version, rule, withheld field names and
    rules, digest and request id survive the commit, the sequencer and the export pack."""
    released = b"sealed-jwe-for-housing"

    async def act(session: AsyncSession) -> Audited[bytes]:
        event = AuditEvent(
            operation=Operation.DISCLOSURE,
            outcome=Outcome.ALLOWED,
            agency_id="police-avon",
            officer_id="PC-4521",
            recipients=("housing-bristol",),
            nominal_ref="N00042",
            record_refs=("R000101", "R000102"),
            legal_basis="cja2003-s325",
            purpose="risk-management",
            policy_version="2026.11.1",
            rule="level2-attendee",
            withheld=(Withheld(field="sources[0]", rule="third-party-source"),),
            payload_digest=payload_digest(released),
            request_id="req-disclose-1",
        )
        return Audited(released, event)

    assert await commit_audited(db, act) == released
    await sequence(db, ring_signer, DB_ORIGIN)
    out = io.StringIO()
    write_export(db.url, out, verifier_keys=[])
    path = tmp_path / "pack.jsonl"
    await asyncio.to_thread(path.write_text, out.getvalue())
    with read_export(path) as (_, entries):
        (entry,) = list(entries)
    assert entry["seq"] == 0 and len(entry["leaf_hash"]) == 64
    assert entry["occurred_at"].endswith("Z")
    assert entry["recipients"] == ["housing-bristol"]
    assert entry["record_refs"] == ["R000101", "R000102"]
    assert (entry["legal_basis"], entry["purpose"]) == ("cja2003-s325", "risk-management")
    assert (entry["policy_version"], entry["rule"]) == ("2026.11.1", "level2-attendee")
    assert entry["withheld"] == [{"field": "sources[0]", "rule": "third-party-source"}]
    assert entry["payload_digest"] == payload_digest(released)
    assert entry["request_id"] == "req-disclose-1"
    assert "sealed-jwe-for-housing" not in out.getvalue()
