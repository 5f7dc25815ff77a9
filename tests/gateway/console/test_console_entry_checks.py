"""An entry's page and the search list, after someone with database access removed what would
vouch for a tampered entry: checkpoint rows, the entry's ``seq``, its leaf hash."""

from __future__ import annotations

import datetime as dt
import re

import httpx
import pytest
from sqlalchemy import select, text, update

from gateway.console.checks import pending_bound
from gateway.state import GatewayState
from gateway.store.models import AuditEntry
from tests.gateway.console.conftest import Log

_PROOF = re.compile(r'class="card proof proof-(\w+)".*?<p>(.*?)</p>', re.S)
_SEQ_CELL = re.compile(r"<td>(?:<strong[^>]*>)?(pending|suspect|FAILED|\d+)(?:</strong>)?</td>")


async def _entry_id(state: GatewayState, nominal: str) -> str:
    async with state.db.read() as session:
        found = await session.scalar(
            select(AuditEntry.entry_id).where(AuditEntry.nominal_ref == nominal)
        )
    assert found is not None
    return found


async def _proof(officer: httpx.AsyncClient, entry_id: str) -> tuple[str, str]:
    page = await officer.get(f"/console/entries/{entry_id}")
    assert page.status_code == 200
    match = _PROOF.search(page.text)
    assert match, page.text
    return match.group(1), match.group(2)


async def _listed_seq(officer: httpx.AsyncClient, nominal: str) -> str:
    page = await officer.get("/console/entries", params={"nominal": nominal})
    (cell,) = _SEQ_CELL.findall(page.text)
    return str(cell)


async def _sql(state: GatewayState, statement: str, **params: object) -> None:
    async with state.db.write() as session:
        await session.execute(text(statement), params)


def _drop_witness(state: GatewayState) -> None:
    assert state.audit is not None and state.audit.witness is not None
    state.audit.witness.path.unlink()


@pytest.mark.parametrize("witness", [True, False], ids=["with-witness", "without-witness"])
async def test_an_edited_entry_is_failed_after_the_checkpoint_rows_are_deleted(
    officer: httpx.AsyncClient, state: GatewayState, log: Log, witness: bool
) -> None:
    """The content is re-hashed before anything else: an edit shows, whatever was removed."""
    entry_id = await _entry_id(state, "N00003")
    assert (await _proof(officer, entry_id))[0] == "verified"
    if not witness:
        _drop_witness(state)
    await _sql(state, "UPDATE audit_entries SET purpose = 'other' WHERE entry_id = :e", e=entry_id)
    await _sql(state, "DELETE FROM audit_checkpoints")
    status, detail = await _proof(officer, entry_id)
    assert status == "failed"
    assert "edited" in detail and "no longer matches" in detail


async def test_a_sequenced_entry_no_checkpoint_covers_is_failed_uncovered(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """Checkpoint rows deleted on a host without the witness file: a sequenced entry, even one
    unchanged, is FAILED (uncovered), never pending."""
    _drop_witness(state)
    entry_id = await _entry_id(state, "N00002")
    await _sql(state, "DELETE FROM audit_checkpoints")
    status, detail = await _proof(officer, entry_id)
    assert status == "failed"
    assert detail.startswith("uncovered: the entry has place ")
    assert "the latest covers 0" in detail


async def test_an_entry_beyond_the_latest_remaining_checkpoint_is_failed_uncovered(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """The newest checkpoint row deleted (an older genuine one remains): entries only the
    deleted one covered are FAILED, not 'not yet covered'."""
    for i in range(20, 23):
        await log.add(i)
    await log.sequence()
    _drop_witness(state)
    entry_id = await _entry_id(state, "N00021")
    await _sql(
        state,
        "DELETE FROM audit_checkpoints WHERE tree_size = (SELECT max(tree_size) FROM "
        "audit_checkpoints)",
    )
    status, detail = await _proof(officer, entry_id)
    assert status == "failed"
    assert detail.startswith("uncovered:")


async def test_checkpoint_rows_deleted_behind_the_witness_fail_every_entry(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """With the witness file: checkpoint rows deleted and an entry's seq and leaf hash blanked
    (it then reads as never sequenced) is FAILED, held to the checkpoint outside the database."""
    entry_id = await _entry_id(state, "N00004")
    await _sql(state, "DELETE FROM audit_checkpoints")
    await _sql(
        state,
        "UPDATE audit_entries SET purpose = 'other', seq = NULL, leaf_hash = NULL "
        "WHERE entry_id = :e",
        e=entry_id,
    )
    status, detail = await _proof(officer, entry_id)
    assert status == "failed"
    assert "checkpoint witness" in detail and "checkpoint_behind_witness" in detail


async def test_an_entry_whose_seq_was_blanked_is_failed_in_its_page_and_the_list(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """An edited entry's seq set to NULL: its leaf hash says it was sequenced."""
    entry_id = await _entry_id(state, "N00004")
    await _sql(
        state,
        "UPDATE audit_entries SET purpose = 'other', seq = NULL WHERE entry_id = :e",
        e=entry_id,
    )
    status, detail = await _proof(officer, entry_id)
    assert status == "failed"
    assert "no place (seq) in the tree" in detail
    assert await _listed_seq(officer, "N00004") == "FAILED"


async def test_an_old_unsequenced_entry_is_suspect_and_a_new_one_pending(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """An entry the sequencer has not signed after the bound (seq and leaf hash blanked, the
    witness gone too) is suspect in its page and the list; a fresh one is pending."""
    _drop_witness(state)
    await _sql(state, "DELETE FROM audit_checkpoints")
    await _sql(state, "UPDATE audit_entries SET seq = NULL, leaf_hash = NULL")
    async with state.db.write() as session:
        await session.execute(
            update(AuditEntry).values(occurred_at=state.clock() - dt.timedelta(minutes=2))
        )
    old = await _entry_id(state, "N00006")
    status, detail = await _proof(officer, old)
    assert status == "suspect"
    assert "Nothing vouches for this entry" in detail
    assert await _listed_seq(officer, "N00006") == "suspect"
    await log.add(98)
    assert (await _proof(officer, await _entry_id(state, "N00098")))[0] == "pending"
    assert await _listed_seq(officer, "N00098") == "pending"


def test_the_pending_bound_is_a_minute_or_five_sequencer_intervals() -> None:
    assert pending_bound(1) == dt.timedelta(seconds=60)
    assert pending_bound(0) == dt.timedelta(seconds=60)
    assert pending_bound(30) == dt.timedelta(seconds=150)


async def test_an_unreadable_witness_is_not_called_verified(
    officer: httpx.AsyncClient, state: GatewayState, log: Log
) -> None:
    """A witness file that is there but cannot be read (here, garbled) leaves nothing to hold
    the log to, as the sequencer too refuses to sign over it: the entry page says FAILED and
    why, not verified."""
    entry_id = await _entry_id(state, "N00004")
    assert state.audit is not None and state.audit.witness is not None
    state.audit.witness.path.write_bytes(b"\xff\xfe not a signed note")
    status, detail = await _proof(officer, entry_id)
    assert status == "failed"
    assert "checkpoint witness" in detail and "cannot be read" in detail
