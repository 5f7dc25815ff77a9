"""``mappa-gateway audit``: every tampering in THREATS.md, done in the database, is detected.

The attacker here has the database (SQL access, or the file) but not the checkpoint key. The IG
officer saved a signed checkpoint earlier, somewhere the attacker cannot write.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from gateway.audit import entry_leaf_hash, parse_checkpoint, parse_signed_note, sign_checkpoint
from gateway.audit.checkpoint import Checkpoint
from gateway.audit.export import ExportError, verify_export
from gateway.audit.log import consistency_proof, entry_fields, inclusion_proof
from gateway.audit.merkle import Frontier, verify_consistency, verify_inclusion
from gateway.audit.service import open_audit_keys
from gateway.audit.witness import witness_path
from gateway.errors import AuditLogInconsistent
from gateway.settings import get_settings
from gateway.store import Database
from gateway.store.models import AuditEntry
from tests.gateway.audit.cli_support import Run, in_process_cli
from tests.gateway.audit.conftest import append_entries


@pytest.fixture
def cli(
    sqlite_url: str,
    audit_gateway_keys: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Run]:
    """Run mappa-gateway in-process on the test database; returns (exit status, output)."""
    keys_dir, kek_file = audit_gateway_keys
    environment = {
        "MAPPA_PROFILE": "test",
        "MAPPA_DATABASE_URL": sqlite_url,
        "MAPPA_ISSUER": "https://gateway.test",
        "MAPPA_KEYS_DIR": str(keys_dir),
        "MAPPA_KEK_FILE": str(kek_file),
    }
    yield from in_process_cli(environment, monkeypatch, capsys)


def _db_path(url: str) -> Path:
    return Path(url.split("///", 1)[1])


def _grow(url: str, count: int, start: int, run: Run) -> None:
    async def write() -> None:
        db = Database(url)
        try:
            await append_entries(db, count, start=start)
        finally:
            await db.dispose()

    asyncio.run(write())
    status, output = run("audit", "sequence")
    assert status == 0, output


@pytest.fixture
def saved(sqlite_url: str, cli: Run, tmp_path: Path) -> Path:
    """A log of 30 sequenced entries and the checkpoint the IG officer saved at size 30."""
    _grow(sqlite_url, 30, 0, cli)
    note = tmp_path / "saved-30.note"
    status, output = cli("audit", "checkpoint", "--out", str(note))
    assert status == 0, output
    return note


def _sql(url: str, *statements: str) -> None:
    with sqlite3.connect(_db_path(url)) as conn:
        for statement in statements:
            conn.execute(statement)


def _rehash(url: str, only: str | None = None) -> None:
    """What an attacker with the database can do: recompute stored leaf hashes (every one, or
    the entry ``only``)."""

    async def run() -> None:
        db = Database(url)
        try:
            async with db.write() as session:
                query = select(AuditEntry)
                if only is not None:
                    query = query.where(AuditEntry.entry_id == only)
                rows = (await session.execute(query)).scalars().all()
                for row in rows:
                    leaf = entry_leaf_hash(entry_fields(row)).hex()
                    await session.execute(
                        update(AuditEntry).where(AuditEntry.id == row.id).values(leaf_hash=leaf)
                    )
        finally:
            await db.dispose()

    asyncio.run(run())


def _shift_up_from(seq: int) -> list[str]:
    """Statements renumbering entries from ``seq`` on by +1 (unique seq kept throughout)."""
    return [
        f"UPDATE audit_entries SET seq = seq + 100000 WHERE seq >= {seq}",
        f"UPDATE audit_entries SET seq = seq - 99999 WHERE seq >= {seq + 100000}",
    ]


def _forged_insert(seq: int) -> str:
    return (
        "INSERT INTO audit_entries (entry_id, seq, leaf_hash, occurred_at, operation, outcome,"
        " recipients, record_refs, withheld, detail) VALUES ('forged-entry', "
        f"{seq}, NULL, '2026-11-23 09:00:00.000000', 'consultation', 'allowed', '[]', '[]',"
        " '[]', '{}')"
    )


TAMPERINGS: dict[str, tuple[list[str], bool]] = {
    # name: (SQL, then recompute every stored leaf hash? A forged entry always gets its own.)
    "edit": (["UPDATE audit_entries SET purpose = 'covert' WHERE seq = 12"], False),
    "edit_and_rehash": (["UPDATE audit_entries SET purpose = 'covert' WHERE seq = 12"], True),
    "delete": (["DELETE FROM audit_entries WHERE seq = 12"], False),
    "delete_and_renumber": (
        [
            "DELETE FROM audit_entries WHERE seq = 12",
            "UPDATE audit_entries SET seq = seq - 1 WHERE seq > 12",
        ],
        True,
    ),
    "reorder": (
        [
            "UPDATE audit_entries SET seq = -1 WHERE seq = 12",
            "UPDATE audit_entries SET seq = 12 WHERE seq = 13",
            "UPDATE audit_entries SET seq = 13 WHERE seq = -1",
        ],
        False,
    ),
    "insert": ([*_shift_up_from(12), _forged_insert(12)], False),
    "insert_and_rehash": ([*_shift_up_from(12), _forged_insert(12)], True),
}


@pytest.mark.parametrize(
    ("tampering", "problem"),
    [
        ("edit", "edited"),
        ("edit_and_rehash", "root_mismatch"),
        ("delete", "deleted"),
        ("delete_and_renumber", "truncated"),  # one fewer entry than the checkpoint signed
        ("reorder", "reordered"),
        ("insert", "inserted"),
        ("insert_and_rehash", "root_mismatch"),
    ],
)
def test_verify_detects_tampering_in_the_database_against_a_saved_checkpoint(
    sqlite_url: str, cli: Run, saved: Path, tampering: str, problem: str
) -> None:
    """Each tampering fails `audit verify --checkpoint`, naming entry 12 where one can be named."""
    status, output = cli("audit", "verify", "--checkpoint", str(saved))
    assert status == 0, output
    statements, rehash = TAMPERINGS[tampering]
    _sql(sqlite_url, *statements)
    _rehash(sqlite_url, None if rehash else "forged-entry")
    status, output = cli("audit", "verify", "--checkpoint", str(saved))
    assert status == 1, output
    assert f"FAILED verification: {problem}" in output
    if problem not in ("root_mismatch", "truncated"):  # only the root is signed
        assert "at entry seq 12" in output


def test_verify_detects_a_truncated_tail(sqlite_url: str, cli: Run, saved: Path) -> None:
    """The last entries and the checkpoints over them deleted: truncated, first missing seq 25."""
    _sql(
        sqlite_url,
        "DELETE FROM audit_entries WHERE seq >= 25",
        "DELETE FROM audit_checkpoints WHERE tree_size > 25",
    )
    # The checkpoint witness (the last checkpoint `audit sequence` signed, kept outside the
    # database) names the cut, before the database's own head is found to cover none of it.
    status, output = cli("audit", "verify")
    assert status == 1, output
    assert "FAILED verification: truncated at entry seq 25" in output
    assert "checkpoint witness covers 30 entries, log holds 25" in output
    status, output = cli("audit", "verify", "--checkpoint", str(saved))
    assert status == 1
    assert "FAILED verification: truncated at entry seq 25" in output
    # Without the witness file the database still shows that checkpoint rows were removed: its
    # latest one (the empty tree's) covers none of the entries left.
    witness_path(get_settings()).unlink()
    status, output = cli("audit", "verify")
    assert status == 1, output
    assert "FAILED verification: uncovered at entry seq 0" in output


def test_verify_fails_entries_sequenced_beyond_the_latest_stored_checkpoint(
    sqlite_url: str, cli: Run, saved: Path
) -> None:
    """The newest checkpoint rows deleted and an entry after the older head rewritten with its
    leaf hash, the witness file gone: `audit verify` exits 1, naming the first uncovered entry."""
    _grow(sqlite_url, 5, 30, cli)
    witness_path(get_settings()).unlink()
    _sql(
        sqlite_url,
        "DELETE FROM audit_checkpoints WHERE tree_size > 30",
        "UPDATE audit_entries SET purpose = 'covert' WHERE seq = 32",
    )
    _rehash(sqlite_url)
    for args in ((), ("--checkpoint", str(saved))):
        status, output = cli("audit", "verify", *args)
        assert status == 1, output
        assert "FAILED verification: uncovered at entry seq 30 (entry_id " in output
        assert "5 entries from seq 30 sequenced but not covered by any signed checkpoint" in output


def test_verify_detects_an_old_backup_restored(sqlite_url: str, cli: Run, tmp_path: Path) -> None:
    """A backup from size 20 restored over a log the officer saw at size 30: truncated at 20."""
    _grow(sqlite_url, 20, 0, cli)
    backup = tmp_path / "backup.db"
    shutil.copyfile(_db_path(sqlite_url), backup)
    _grow(sqlite_url, 10, 20, cli)
    note = tmp_path / "saved.note"
    assert cli("audit", "checkpoint", "--out", str(note))[0] == 0
    shutil.copyfile(backup, _db_path(sqlite_url))
    status, output = cli("audit", "verify", "--checkpoint", str(note))
    assert status == 1
    assert "FAILED verification: truncated at entry seq 20" in output


def test_verify_names_the_entry_id_of_the_first_bad_entry(
    sqlite_url: str, cli: Run, saved: Path
) -> None:
    """The report gives the bad entry's entry_id, for the IG officer to look up."""
    _sql(sqlite_url, "UPDATE audit_entries SET officer_id = 'someone-else' WHERE seq = 7")
    with sqlite3.connect(_db_path(sqlite_url)) as conn:
        (entry_id,) = conn.execute("SELECT entry_id FROM audit_entries WHERE seq = 7").fetchone()
    status, output = cli("audit", "verify")
    assert status == 1
    assert f"at entry seq 7 (entry_id {entry_id})" in output


@pytest.mark.parametrize(
    "tampering", ["edit_and_rehash", "reorder", "insert_and_rehash", "delete_and_renumber"]
)
async def test_proofs_from_a_tampered_database_fail_against_the_saved_checkpoint(
    sqlite_url: str, saved: Path, tampering: str
) -> None:
    """Inclusion and consistency proofs the tampered store now serves do not verify (or cannot
    be built at all: a log shorter than the signed size has no proof at that size)."""
    signed = parse_checkpoint(parse_signed_note(await asyncio.to_thread(saved.read_bytes)).text)
    db = Database(sqlite_url)
    try:
        async with db.read() as session:
            early = await consistency_proof(session, 10, 30)
            root_10 = early.first_root
            (entry_id,) = (
                await session.execute(select(AuditEntry.entry_id).where(AuditEntry.seq == 5))
            ).one()
        statements, _ = TAMPERINGS[tampering]
        _sql(sqlite_url, *statements)
        await asyncio.to_thread(_rehash, sqlite_url)
        async with db.read() as session:
            row = (
                await session.execute(select(AuditEntry).where(AuditEntry.entry_id == entry_id))
            ).scalar_one()
            try:
                proof = await inclusion_proof(session, entry_id, 30)
                consistency = await consistency_proof(session, 10, 30)
            except AuditLogInconsistent:
                assert tampering == "delete_and_renumber"
                return
    finally:
        await db.dispose()
    leaf = entry_leaf_hash(entry_fields(row))
    assert not verify_inclusion(leaf, proof.leaf_index, 30, proof.path, signed.root_hash)
    assert not verify_consistency(10, 30, root_10, signed.root_hash, consistency.path)


def test_export_pack_verifies_offline_and_detects_an_edited_line(
    sqlite_url: str, cli: Run, saved: Path, tmp_path: Path
) -> None:
    """The pack verifies without the database; one edited entry line fails, naming its seq."""
    pack = tmp_path / "audit.jsonl"
    status, output = cli("audit", "export", "--out", str(pack))
    assert status == 0, output
    _sql(sqlite_url, "DELETE FROM audit_entries")  # offline: the database is no longer used
    status, output = cli("audit", "verify", "--export", str(pack), "--checkpoint", str(saved))
    assert status == 0, output
    assert "30 entries" in output
    lines = pack.read_text().splitlines()
    entry = json.loads(lines[1 + 17])
    entry["legal_basis"] = "none"
    lines[1 + 17] = json.dumps(entry)
    pack.write_text("\n".join(lines) + "\n")
    status, output = cli("audit", "verify", "--export", str(pack))
    assert status == 1
    assert "FAILED verification: edited at entry seq 17" in output


@pytest.mark.parametrize(
    "tree_size",
    [
        "1e400",  # infinity to the JSON parser: int() raised OverflowError out of the command
        "-1e400",
        '"\\u0663\\u0660"',  # "30" in Arabic-Indic digits, which int() reads
        '"30"',  # a string, not a JSON integer
        "30.0",
        "true",
        "-1",
        str(2**64),  # more than a checkpoint's uint64
    ],
)
def test_export_pack_whose_header_tree_size_is_not_a_json_integer_is_refused(
    cli: Run, saved: Path, tmp_path: Path, tree_size: str
) -> None:
    """The header's tree size is a JSON integer from 0 to 2**64 - 1, else the pack is malformed:
    the verifier says so (exit 2, as for any pack it cannot read), never a traceback or a pass."""
    pack = tmp_path / "audit.jsonl"
    assert cli("audit", "export", "--out", str(pack))[0] == 0
    lines = pack.read_text().splitlines()
    header = json.loads(lines[0])
    header["tree_size"] = "@tree_size@"
    lines[0] = json.dumps(header).replace('"@tree_size@"', tree_size)
    pack.write_text("\n".join(lines) + "\n")
    status, output = cli("audit", "verify", "--export", str(pack), "--checkpoint", str(saved))
    assert status == 2, output
    assert "cannot read the export pack: the pack's header is malformed" in output


@pytest.mark.parametrize("line", [0, 5], ids=["header", "entry"])
def test_export_pack_with_a_key_repeated_in_a_line_is_refused(
    cli: Run, saved: Path, tmp_path: Path, line: int
) -> None:
    """A line whose object gives a key twice says two things (this reader took the last, another
    may take the first): the pack cannot be read (exit 2), even when both values agree."""
    pack = tmp_path / "audit.jsonl"
    assert cli("audit", "export", "--out", str(pack))[0] == 0
    lines = pack.read_text().splitlines()
    key = "origin" if line == 0 else "outcome"
    lines[line] = (
        f"{lines[line][:-1]},{json.dumps(key)}:{json.dumps(json.loads(lines[line])[key])}}}"
    )
    pack.write_text("\n".join(lines) + "\n")
    status, output = cli("audit", "verify", "--export", str(pack), "--checkpoint", str(saved))
    assert status == 2, output
    assert f"cannot read the export pack: line {line + 1}: an object repeats a key" in output


def test_export_pack_with_a_foreign_verifier_key_does_not_verify(
    cli: Run, saved: Path, tmp_path: Path, new_signer: Callable[[str], object]
) -> None:
    """Checked against the key the officer trusts, a pack re-signed by someone else fails."""
    pack = tmp_path / "audit.jsonl"
    assert cli("audit", "export", "--out", str(pack))[0] == 0
    header = json.loads(pack.read_text().splitlines()[0])
    genuine = header["verifier_keys"][0]
    status, output = cli("audit", "verify", "--export", str(pack), "--verifier-key", genuine)
    assert status == 0, output
    other = new_signer("gateway.test/mappa-audit")
    status, output = cli(
        "audit",
        "verify",
        "--export",
        str(pack),
        "--verifier-key",
        str(other.verifier_key),  # type: ignore[attr-defined]
    )
    assert status == 1
    assert "checkpoint_invalid" in output


# --- A pack holds exactly what its checkpoint signs (security review 2, finding 4) -------------


def _forged(line: str, seq: int) -> str:
    """An entry made up from another: new seq, id and content, with its leaf hash (anyone can
    compute one; only a checkpoint is out of reach)."""
    entry = {key: value for key, value in json.loads(line).items() if key != "leaf_hash"}
    entry.update(
        seq=seq,
        entry_id=f"00000000-0000-4000-8000-{seq:012x}",
        agency_id="agency-framed",
        officer_id="officer-framed",
        recipients=["agency-x"],
        outcome="allowed",
        operation="disclosure",
        request_id="req-forged",
    )
    entry["leaf_hash"] = entry_leaf_hash(entry).hex()
    return json.dumps(entry)


def _with_header(lines: list[str], **fields: object) -> list[str]:
    header = {**json.loads(lines[0]), **fields}
    return [json.dumps(header), *lines[1:]]


def _swap(lines: list[str], a: int, b: int) -> list[str]:
    out = list(lines)
    out[a], out[b] = out[b], out[a]
    return out


# Each takes the pack's lines (the header, then entries seq 0..29 at lines 1..30).
PACK_TAMPERINGS: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "forged_entry_appended": (
        lambda lines: [*lines, _forged(lines[-1], 30)],
        "beyond_checkpoint at entry seq 30",
    ),
    "forged_entry_appended_header_size_raised": (
        lambda lines: _with_header([*lines, _forged(lines[-1], 30)], tree_size=31),
        "beyond_checkpoint at entry seq 30",
    ),
    "last_entry_repeated_at_the_end": (
        lambda lines: [*lines, lines[-1]],
        "beyond_checkpoint at entry seq 30",
    ),
    "entry_duplicated_in_the_middle": (
        lambda lines: [*lines[:11], lines[10], *lines[11:-1]],
        "inserted at entry seq 9",
    ),
    "entries_swapped": (lambda lines: _swap(lines, 13, 14), "reordered at entry seq 12"),
    "last_entry_dropped": (lambda lines: lines[:-1], "truncated at entry seq 29"),
    "middle_entry_dropped": (lambda lines: [*lines[:13], *lines[14:]], "deleted at entry seq 12"),
    "middle_entry_dropped_forged_one_appended": (
        lambda lines: [*lines[:13], *lines[14:], _forged(lines[-1], 30)],
        "deleted at entry seq 12",
    ),
    "header_size_lowered": (
        lambda lines: _with_header(lines, tree_size=29),
        "malformed: the header says 29 entries, its checkpoint signs 30",
    ),
}


@pytest.mark.parametrize("tampering", list(PACK_TAMPERINGS))
@pytest.mark.parametrize("against_saved", [False, True])
def test_export_pack_holding_other_entries_than_its_checkpoint_signs_fails(
    cli: Run, saved: Path, tmp_path: Path, tampering: str, against_saved: bool
) -> None:
    """An entry added after the export (the review's reproduction: "verified: 11 entries", exit
    0), repeated, moved or removed, or a header that disagrees with the checkpoint: exit 1 with
    the problem, whether or not a saved checkpoint is given too."""
    pack = tmp_path / "audit.jsonl"
    assert cli("audit", "export", "--out", str(pack))[0] == 0
    genuine = json.loads(pack.read_text().splitlines()[0])["verifier_keys"][0]
    args = ["audit", "verify", "--export", str(pack), "--verifier-key", genuine]
    if against_saved:
        args += ["--checkpoint", str(saved)]
    status, output = cli(*args)
    assert status == 0, output
    tamper, problem = PACK_TAMPERINGS[tampering]
    pack.write_text("\n".join(tamper(pack.read_text().splitlines())) + "\n")
    status, output = cli(*args)
    assert status == 1, output
    assert f"FAILED verification: {problem}" in output
    assert "verified:" not in output


def test_export_pack_larger_than_a_saved_checkpoint_verifies_against_both(
    sqlite_url: str, cli: Run, saved: Path, tmp_path: Path
) -> None:
    """A pack exported after the saved checkpoint holds more entries: its own checkpoint covers
    them all and the saved one is a prefix. Entries beyond the pack's own still fail."""
    _grow(sqlite_url, 5, 30, cli)
    pack = tmp_path / "audit.jsonl"
    assert cli("audit", "export", "--out", str(pack))[0] == 0
    status, output = cli("audit", "verify", "--export", str(pack), "--checkpoint", str(saved))
    assert status == 0, output
    assert "audit log verified: 35 entries" in output
    assert "checkpoint of size 30 verified" in output
    lines = pack.read_text().splitlines()
    pack.write_text("\n".join([*lines, _forged(lines[-1], 35)]) + "\n")
    status, output = cli("audit", "verify", "--export", str(pack), "--checkpoint", str(saved))
    assert status == 1
    assert "FAILED verification: beyond_checkpoint at entry seq 35" in output


def test_export_pack_with_a_saved_checkpoint_still_needs_its_own_to_verify(
    cli: Run, saved: Path, tmp_path: Path, new_signer: Callable[[str], object]
) -> None:
    """A pack whose own checkpoint was replaced (re-signed by another key) fails even when the
    entries agree with a saved checkpoint: nothing would vouch for the pack's length."""
    pack = tmp_path / "audit.jsonl"
    assert cli("audit", "export", "--out", str(pack))[0] == 0
    lines = pack.read_text().splitlines()
    header = json.loads(lines[0])
    signed = parse_checkpoint(parse_signed_note(header["checkpoint"]).text)
    header["checkpoint"] = sign_checkpoint(signed, new_signer(signed.origin))  # type: ignore[arg-type]
    pack.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    status, output = cli("audit", "verify", "--export", str(pack), "--checkpoint", str(saved))
    assert status == 1
    assert "FAILED verification: checkpoint_invalid" in output


def test_verify_a_healthy_log_reports_its_size_and_root(cli: Run, saved: Path) -> None:
    """`audit verify` on an untouched log exits 0 and reports what it covered."""
    status, output = cli("audit", "verify", "--checkpoint", str(saved))
    assert status == 0
    assert "audit log verified: 30 entries" in output
    assert "checkpoint of size 30 verified" in output


def test_sequence_reports_what_it_integrated(sqlite_url: str, cli: Run) -> None:
    """`audit sequence` integrates pending entries once and says how many."""
    asyncio.run(_append(sqlite_url, 4))
    status, output = cli("audit", "sequence")
    assert status == 0
    assert "4 new entries sequenced; tree size 4" in output


def test_sequence_refuses_a_log_whose_checkpoints_were_deleted_and_says_why(
    sqlite_url: str, cli: Run, saved: Path
) -> None:
    """The review's second variant through the CLI: every checkpoint row deleted and every seq
    blanked. `audit sequence` held to its witness signs nothing and exits 1 with the reason."""
    _sql(
        sqlite_url,
        "DELETE FROM audit_entries WHERE seq = 3",
        "UPDATE audit_entries SET seq = NULL, leaf_hash = NULL",
        "DELETE FROM audit_checkpoints",
    )
    status, output = cli("audit", "sequence")
    assert status == 1, output
    assert (
        "audit log REFUSED to sequence: audit_log_inconsistent: checkpoint_behind_witness "
        "(witness_size 30, tree_size 0)"
    ) in output
    with sqlite3.connect(_db_path(sqlite_url)) as conn:
        assert conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone() == (0,)
    status, output = cli("audit", "verify", "--checkpoint", str(saved))
    assert status == 1
    assert "FAILED verification: truncated at entry seq 0" in output


async def _append(url: str, count: int) -> None:
    db = Database(url)
    try:
        await append_entries(db, count)
    finally:
        await db.dispose()


def test_service_opens_the_checkpoint_key_from_the_settings(cli: Run) -> None:
    """The CLI's settings open the development checkpoint key under the test issuer's origin."""
    service = open_audit_keys(get_settings())
    assert service.origin == "gateway.test/mappa-audit"
    assert len(service.verifier_keys()) == 1


def test_proof_of_a_deleted_entry_is_refused_as_inconsistent(
    sqlite_url: str, cli: Run, saved: Path
) -> None:
    """A gap in the stored leaves makes the proof builder refuse rather than prove over it."""
    _sql(sqlite_url, "DELETE FROM audit_entries WHERE seq = 3")

    async def prove() -> None:
        db = Database(sqlite_url)
        try:
            async with db.read() as session:
                (entry_id,) = (
                    await session.execute(select(AuditEntry.entry_id).where(AuditEntry.seq == 9))
                ).one()
                await inclusion_proof(session, entry_id, 30)
        finally:
            await db.dispose()

    with pytest.raises(AuditLogInconsistent):
        asyncio.run(prove())


# --- A pack is verified with a key from outside it (console review, finding 5) ----------------


def _forged_pack(pack: Path, forged: Path, signer: object) -> None:
    """What anyone can make from a genuine pack: an entry rewritten, every leaf hash and the
    root recomputed, the checkpoint signed with a fresh Ed25519 key of their own and that key
    put in the header."""
    lines = pack.read_text().splitlines()
    header = json.loads(lines[0])
    entries = [json.loads(line) for line in lines[1:]]
    entries[5]["legal_basis"] = "none"
    frontier = Frontier()
    for entry in entries:
        fields = {key: value for key, value in entry.items() if key != "leaf_hash"}
        entry["leaf_hash"] = entry_leaf_hash(fields).hex()
        frontier = frontier.append(bytes.fromhex(entry["leaf_hash"]))
    signed = parse_checkpoint(parse_signed_note(header["checkpoint"]).text)
    checkpoint = Checkpoint(signed.origin, frontier.size, frontier.root())
    header["checkpoint"] = sign_checkpoint(checkpoint, signer)  # type: ignore[arg-type]
    header["verifier_keys"] = [str(signer.verifier_key)]  # type: ignore[attr-defined]
    forged.write_text("\n".join(json.dumps(line) for line in [header, *entries]) + "\n")


@pytest.fixture
def forged(
    cli: Run, saved: Path, tmp_path: Path, new_signer: Callable[[str], object]
) -> tuple[Path, Path]:
    """A genuine pack of the 30 entries, and a forged one signed by the forger's own key."""
    pack, forged = tmp_path / "genuine.jsonl", tmp_path / "forged.jsonl"
    assert cli("audit", "export", "--out", str(pack))[0] == 0
    _forged_pack(pack, forged, new_signer("gateway.test/mappa-audit"))
    return pack, forged


def test_a_pack_is_not_verified_with_the_key_inside_it(
    cli: Run, forged: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no gateway keys are (an auditor's machine), `verify --export` without
    --verifier-key verifies nothing: exit 2 saying so, for a forged, self-signed pack (which
    passed, exit 0, when the pack's own key was trusted) and for a genuine one alike."""
    genuine, forgery = forged
    monkeypatch.setenv("MAPPA_KEYS_DIR", str(tmp_path / "no-gateway-here"))
    get_settings.cache_clear()
    for pack in (forgery, genuine):
        status, output = cli("audit", "verify", "--export", str(pack))
        assert status == 2, output
        assert "export pack NOT verified: no trusted verifier key" in output
        assert "--verifier-key" in output
        assert "audit log verified" not in output
    assert not (tmp_path / "no-gateway-here").exists()  # no key generated on the way
    key = json.loads(genuine.read_text().splitlines()[0])["verifier_keys"][0]
    status, output = cli("audit", "verify", "--export", str(forgery), "--verifier-key", key)
    assert status == 1 and "checkpoint_invalid" in output
    status, output = cli("audit", "verify", "--export", str(genuine), "--verifier-key", key)
    assert status == 0 and "audit log verified: 30 entries" in output


def test_a_pack_is_verified_with_the_gateways_own_key_where_its_keys_are(
    cli: Run, forged: tuple[Path, Path]
) -> None:
    """On the gateway host, without --verifier-key, the gateway's own checkpoint key is the
    trusted one: the genuine pack verifies, the self-signed forgery fails."""
    genuine, forgery = forged
    status, output = cli("audit", "verify", "--export", str(forgery))
    assert status == 1, output
    assert "checkpoint_invalid" in output
    status, output = cli("audit", "verify", "--export", str(genuine))
    assert status == 0, output
    assert "this gateway's own checkpoint key, not the pack's" in output


def test_verify_export_takes_no_key_from_the_pack(forged: tuple[Path, Path]) -> None:
    """The library function has no default to the pack's keys: none given is an error."""
    with pytest.raises(ExportError, match="no trusted verifier key"):
        verify_export(forged[1], verifier_keys=())


def test_a_scoped_pack_of_an_area_is_written_and_verified_offline(
    sqlite_url: str, cli: Run, saved: Path, tmp_path: Path
) -> None:
    """``audit export --area`` writes the area's entries, each with its inclusion proof, and
    ``audit verify --export`` proves them with the gateway's own key, saying what a scoped pack
    cannot prove; an entry edited in it fails, naming its seq. Held to a checkpoint saved
    earlier, it needs the consistency proof from that checkpoint's tree, which ``--since``
    puts in it. An area no agency is registered in is refused, no file left."""
    from gateway.audit.scoped import NOT_PROVEN
    from gateway.audit.search import of_area
    from gateway.flow.audit import AuditEvent, Operation, Outcome, record
    from tests.gateway.audit.conftest import register_sample_agencies

    async def prepare() -> list[str]:
        db = Database(sqlite_url)
        try:
            await register_sample_agencies(db, "avon-somerset")
            async with db.write() as session:  # an agency of no registered area
                record(
                    session,
                    AuditEvent(
                        operation=Operation.DISCLOSURE,
                        outcome=Outcome.ALLOWED,
                        agency_id="wilts-police",
                    ),
                )
            async with db.read() as session:
                statement = of_area(select(AuditEntry.entry_id), "avon-somerset")
                return list(await session.scalars(statement))
        finally:
            await db.dispose()

    expected = asyncio.run(prepare())
    assert cli("audit", "sequence")[0] == 0
    pack = tmp_path / "scoped.jsonl"
    status, output = cli("audit", "export", "--area", "avon-somerset", "--out", str(pack))
    assert status == 0, output
    assert f"scoped export pack of {len(expected)} entries" in output
    lines = pack.read_text().splitlines()
    assert sorted(json.loads(line)["entry"]["entry_id"] for line in lines[1:-1]) == sorted(expected)
    assert json.loads(lines[-1]) == {"end": {"entries": len(expected)}}
    held = tmp_path / "held.jsonl"
    args = ("audit", "export", "--area", "avon-somerset", "--out", str(held))
    status, output = cli(*args, "--since", str(saved))
    assert status == 0, output
    assert json.loads(held.read_text().splitlines()[0])["consistency"]["from_size"] == 30
    _sql(sqlite_url, "DELETE FROM audit_entries")  # offline: the database is no longer used

    status, output = cli("audit", "verify", "--export", str(pack))
    assert status == 0, output
    assert f"scoped export pack verified: {len(expected)} entries of avon-somerset" in output
    assert NOT_PROVEN in output
    status, output = cli("audit", "verify", "--export", str(pack), "--checkpoint", str(saved))
    assert status == 2 and "holds no consistency proof, not from your checkpoint's 30" in output
    assert "since 30" in output

    status, output = cli("audit", "verify", "--export", str(held), "--checkpoint", str(saved))
    assert status == 0, output
    assert "the pack's tree extends the tree of your saved checkpoint" in output

    line = json.loads(lines[5])
    line["entry"]["purpose"] = "none"
    lines[5] = json.dumps(line)
    pack.write_text("\n".join(lines) + "\n")
    status, output = cli("audit", "verify", "--export", str(pack))
    assert status == 1
    assert f"FAILED verification: edited at entry seq {line['entry']['seq']}" in output
    assert "entries proved before it: 4" in output

    nowhere = tmp_path / "nowhere.jsonl"
    status, output = cli("audit", "export", "--area", "atlantis", "--out", str(nowhere))
    assert status == 2 and not nowhere.exists(), output
    assert "atlantis" in output, output


def test_export_since_a_checkpoint_is_for_a_scoped_pack_of_one_that_verifies(
    cli: Run, saved: Path, tmp_path: Path
) -> None:
    """``--since`` without ``--area`` is refused (the full pack needs no consistency proof), as
    is a checkpoint that this gateway's keys do not verify; no file is left either way."""
    out = tmp_path / "pack.jsonl"
    status, output = cli("audit", "export", "--out", str(out), "--since", str(saved))
    assert status == 2 and "--since is for a scoped pack" in output and not out.exists()
    args = ("audit", "export", "--area", "avon-somerset", "--out", str(out))
    for name, content in (("garbage", b"not a checkpoint\n"), ("binary", b"\xff\xfe\n")):
        bad = tmp_path / name
        bad.write_bytes(content)
        status, output = cli(*args, "--since", str(bad))
        assert status == 2 and "is no checkpoint" in output and not out.exists(), output


def test_a_scoped_pack_held_to_a_saved_checkpoint_fails_if_forked_or_behind_it(
    sqlite_url: str, cli: Run, saved: Path, tmp_path: Path
) -> None:
    """``audit verify --export --checkpoint`` of a scoped pack exits 1 when its consistency
    proof does not lead from the saved tree to the pack's (``root_mismatch``) and when the
    saved tree is larger than the pack's (``truncated``); a checkpoint file that is not UTF-8,
    or larger than any checkpoint, exits 2 with a message, never a traceback."""
    from tests.gateway.audit.conftest import register_sample_agencies

    async def register() -> None:
        db = Database(sqlite_url)
        try:
            await register_sample_agencies(db, "avon-somerset")
        finally:
            await db.dispose()

    asyncio.run(register())
    _grow(sqlite_url, 5, 30, cli)
    pack = tmp_path / "held.jsonl"
    args = ("audit", "export", "--area", "avon-somerset", "--out", str(pack))
    assert cli(*args, "--since", str(saved))[0] == 0
    lines = pack.read_text().splitlines()
    header = json.loads(lines[0])
    proof = header["consistency"]["proof"]
    proof[0] = ("0" if proof[0][0] != "0" else "1") + proof[0][1:]
    forked = tmp_path / "forked.jsonl"
    forked.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    status, output = cli("audit", "verify", "--export", str(forked), "--checkpoint", str(saved))
    assert status == 1 and "root_mismatch" in output and "rewritten or forked" in output, output

    _grow(sqlite_url, 5, 35, cli)
    newer = tmp_path / "newer.note"
    assert cli("audit", "checkpoint", "--out", str(newer))[0] == 0
    status, output = cli("audit", "verify", "--export", str(pack), "--checkpoint", str(newer))
    assert status == 1 and "truncated" in output and "behind what you saw" in output, output

    for name, content in (("binary.note", b"\xff\xfe\n"), ("huge.note", b"a" * 70_000)):
        bad = tmp_path / name
        bad.write_bytes(content)
        status, output = cli("audit", "verify", "--export", str(pack), "--checkpoint", str(bad))
        assert status == 2 and "cannot read the checkpoint" in output, output
        assert "Traceback" not in output
