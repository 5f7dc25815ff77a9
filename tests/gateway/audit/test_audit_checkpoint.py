"""Signed checkpoints: C2SP note format, real Ed25519 keys, tampering, strict parsing; the
checkpoints the sequencer keeps (verified before it builds on one, re-signed after a key rotation)
and the checkpoint witness file."""

from __future__ import annotations

import base64
import hashlib
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from gateway.audit.checkpoint import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Checkpoint,
    CheckpointVerifier,
    VerifierKey,
    format_checkpoint,
    key_id,
    parse_checkpoint,
    parse_signed_note,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_note,
)
from gateway.audit.errors import CheckpointError, MalformedNoteError, NoteVerificationError
from gateway.audit.merkle import leaf_hash, root_hash
from gateway.audit.sequencer import sequence
from gateway.audit.witness import CheckpointWitness
from gateway.errors import AuditLogInconsistent
from gateway.store import Database
from gateway.store.models import AuditCheckpoint
from tests.gateway.audit.conftest import DB_ORIGIN, append_entries

if TYPE_CHECKING:
    from tests.gateway.audit.conftest import Ed25519NoteSigner


ORIGIN = "mappa.example/audit"
ROOT = root_hash([leaf_hash(bytes([i])) for i in range(7)])
CHECKPOINT = Checkpoint(ORIGIN, 7, ROOT)
ROOT_B64 = base64.b64encode(ROOT).decode()

Verify = Callable[[bytes, bytes, bytes], bool]
NewSigner = Callable[..., "Ed25519NoteSigner"]

# The Go reference implementation's example (golang.org/x/mod/sumdb/note): Ed25519 is
# deterministic, so signing the same text with the same key must give the same note, byte for byte.
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_PRIVATE_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIGNATURE = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
GO_NOTE = f"{GO_TEXT}\n\u2014 PeterNeumann {GO_SIGNATURE}\n"


def verify(note: str | bytes, signer: Ed25519NoteSigner, check: Verify, **kw: str) -> Checkpoint:
    return verify_checkpoint(note, keys=[signer.verifier_key], ed25519_verify=check, **kw)


def flip_signature(note: str) -> str:
    """Flip one bit of the Ed25519 signature in the note's first signature line."""
    text, _, block = note.rpartition("\n\n")
    dash_name, encoded = block.rstrip("\n").split("\n")[0].rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 0x01
    return f"{text}\n\n{dash_name} {base64.b64encode(bytes(raw)).decode()}\n"


# --- Round trip and format -------------------------------------------------------------------


def test_checkpoint_round_trips_with_a_real_ed25519_key(
    log_signer: Ed25519NoteSigner, verify_ed25519: Verify
) -> None:
    """A checkpoint signed with Ed25519 verifies and parses back to itself."""
    note = sign_checkpoint(CHECKPOINT, log_signer)
    assert verify(note, log_signer, verify_ed25519) == CHECKPOINT
    assert verify(note.encode(), log_signer, verify_ed25519) == CHECKPOINT


def test_signed_checkpoint_has_the_c2sp_layout(log_signer: Ed25519NoteSigner) -> None:
    """Origin, size, base64 root, blank line, then an em-dash line with key ID and signature."""
    note = sign_checkpoint(CHECKPOINT, log_signer)
    body, signature_line = note.split("\n\n")
    assert body == f"{ORIGIN}\n7\n{ROOT_B64}"
    match = re.fullmatch(r"\u2014 (\S+) ([A-Za-z0-9+/]+=*)\n", signature_line)
    assert match is not None
    assert match.group(1) == ORIGIN
    blob = base64.b64decode(match.group(2))
    assert len(blob) == 4 + 64
    assert blob[:4] == log_signer.verifier_key.key_id


def test_key_id_is_sha256_of_name_newline_type_and_key(log_signer: Ed25519NoteSigner) -> None:
    """key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4], as signed-note recommends."""
    expected = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + log_signer.public_key).digest()[:4]
    assert key_id(ORIGIN, log_signer.public_key) == expected


def test_verifier_key_text_round_trips(log_signer: Ed25519NoteSigner) -> None:
    """A verifier key is name+hex key ID+base64(0x01 || key) and parses back to itself."""
    key = log_signer.verifier_key
    text = str(key)
    name, hex_id, encoded = text.split("+", 2)
    assert (name, hex_id) == (ORIGIN, key.key_id.hex())
    assert base64.b64decode(encoded) == b"\x01" + log_signer.public_key
    assert parse_verifier_key(text) == key


def test_go_reference_note_is_reproduced_and_verified(verify_ed25519: Verify) -> None:
    """The Go sumdb/note example key and note: same key ID, same signature, verifies."""
    key = parse_verifier_key(GO_VERIFIER_KEY)
    assert str(key) == GO_VERIFIER_KEY
    seed = base64.b64decode(GO_PRIVATE_KEY.split("+", 4)[4])[1:]

    class GoSigner:
        name = "PeterNeumann"
        private = Ed25519PrivateKey.from_private_bytes(seed)
        public_key = key.public_key

        def sign(self, message: bytes) -> bytes:
            return self.private.sign(message)

    assert sign_note(GO_TEXT, GoSigner()) == GO_NOTE
    assert verify_note(GO_NOTE, keys=[key], ed25519_verify=verify_ed25519).text == GO_TEXT
    with pytest.raises(NoteVerificationError):
        verify_note(
            GO_NOTE.replace("problem,", "problem;"), keys=[key], ed25519_verify=verify_ed25519
        )


def test_extension_lines_round_trip(log_signer: Ed25519NoteSigner, verify_ed25519: Verify) -> None:
    """Optional extension lines after the root are kept, in order."""
    checkpoint = Checkpoint(ORIGIN, 7, ROOT, ("batch 2026-03-01T09:00Z", "sequencer gw-2"))
    assert format_checkpoint(checkpoint).endswith("\nbatch 2026-03-01T09:00Z\nsequencer gw-2\n")
    assert verify(sign_checkpoint(checkpoint, log_signer), log_signer, verify_ed25519) == checkpoint


def test_empty_log_checkpoint_round_trips(
    log_signer: Ed25519NoteSigner, verify_ed25519: Verify
) -> None:
    """Size 0 is written "0" and carries the empty tree's root."""
    empty = Checkpoint(ORIGIN, 0, root_hash([]))
    assert format_checkpoint(empty).split("\n")[1] == "0"
    assert verify(sign_checkpoint(empty, log_signer), log_signer, verify_ed25519) == empty


# --- Signatures -------------------------------------------------------------------------------


def test_tampered_signature_is_refused(
    log_signer: Ed25519NoteSigner, verify_ed25519: Verify
) -> None:
    """One flipped bit in the Ed25519 signature fails verification of the whole note."""
    note = flip_signature(sign_checkpoint(CHECKPOINT, log_signer))
    with pytest.raises(NoteVerificationError) as caught:
        verify(note, log_signer, verify_ed25519)
    assert caught.value.code == "audit_note_unverified"


def test_any_changed_character_in_the_body_is_refused(
    log_signer: Ed25519NoteSigner, verify_ed25519: Verify
) -> None:
    """Changing any character of the signed body (size, root, origin) makes the note fail."""
    note = sign_checkpoint(CHECKPOINT, log_signer)
    body_length = len(format_checkpoint(CHECKPOINT))
    for i in range(body_length - 1):
        if note[i] == "\n":
            continue
        replacement = "8" if note[i] != "8" else "9"
        with pytest.raises(CheckpointError):
            verify(note[:i] + replacement + note[i + 1 :], log_signer, verify_ed25519)


def test_signature_under_another_key_name_is_not_trusted(
    log_signer: Ed25519NoteSigner, new_signer: NewSigner, verify_ed25519: Verify
) -> None:
    """The right key under the wrong name is an unknown key: no trusted signature."""
    impostor = new_signer("other.example/audit", log_signer.private_key)
    note = sign_checkpoint(CHECKPOINT, impostor)
    with pytest.raises(NoteVerificationError):
        verify(note, log_signer, verify_ed25519)


def test_signature_by_another_key_of_the_same_name_is_not_trusted(
    log_signer: Ed25519NoteSigner, new_signer: NewSigner, verify_ed25519: Verify
) -> None:
    """A different key using the log's name has another key ID and does not count."""
    note = sign_checkpoint(CHECKPOINT, new_signer(ORIGIN))
    with pytest.raises(NoteVerificationError):
        verify(note, log_signer, verify_ed25519)


def test_forged_signature_with_the_trusted_key_id_is_refused(
    log_signer: Ed25519NoteSigner, new_signer: NewSigner, verify_ed25519: Verify
) -> None:
    """A signature line claiming the trusted name and key ID but made by another key fails."""
    forger = new_signer(ORIGIN)
    body = format_checkpoint(CHECKPOINT)
    signature = forger.sign(body.encode())
    blob = base64.b64encode(log_signer.verifier_key.key_id + signature).decode()
    with pytest.raises(NoteVerificationError):
        verify(f"{body}\n\u2014 {ORIGIN} {blob}\n", log_signer, verify_ed25519)


def test_unknown_cosignatures_are_ignored_but_a_trusted_one_is_required(
    log_signer: Ed25519NoteSigner, new_signer: NewSigner, verify_ed25519: Verify
) -> None:
    """A witness cosignature does not matter; a note signed only by unknown keys is refused."""
    witness = new_signer("witness.example/w1")
    cosigned = sign_checkpoint(CHECKPOINT, witness, log_signer)
    assert verify(cosigned, log_signer, verify_ed25519) == CHECKPOINT
    with pytest.raises(NoteVerificationError):
        verify(sign_checkpoint(CHECKPOINT, witness), log_signer, verify_ed25519)


def test_a_failing_trusted_signature_rejects_the_whole_note(
    log_signer: Ed25519NoteSigner, new_signer: NewSigner, verify_ed25519: Verify
) -> None:
    """If any trusted key's signature fails, another trusted signature does not save the note."""
    second = new_signer(ORIGIN)
    note = flip_signature(sign_checkpoint(CHECKPOINT, log_signer, second))
    keys = [log_signer.verifier_key, second.verifier_key]
    with pytest.raises(NoteVerificationError):
        verify_checkpoint(note, keys=keys, ed25519_verify=verify_ed25519)


def test_rotated_keys_both_verify(new_signer: NewSigner, verify_ed25519: Verify) -> None:
    """A verifier trusting the old and the new log key accepts checkpoints from either."""
    old, new = new_signer(ORIGIN), new_signer(ORIGIN)
    verifier = CheckpointVerifier((old.verifier_key, new.verifier_key), verify_ed25519, ORIGIN)
    assert verifier.verify(sign_checkpoint(CHECKPOINT, old)) == CHECKPOINT
    assert verifier.verify(sign_checkpoint(CHECKPOINT, new)) == CHECKPOINT


def test_checkpoint_of_another_origin_is_refused(
    new_signer: NewSigner, verify_ed25519: Verify
) -> None:
    """A checkpoint for another log is refused, even when signed by a trusted key."""
    signer = new_signer("keys.example/gateway-2026")
    note = sign_checkpoint(CHECKPOINT, signer)
    with pytest.raises(NoteVerificationError):
        verify(note, signer, verify_ed25519)  # origin must then be the signing key's name
    with pytest.raises(NoteVerificationError):
        verify(note, signer, verify_ed25519, origin="other.example/audit")
    assert verify(note, signer, verify_ed25519, origin=ORIGIN) == CHECKPOINT


def test_verify_callable_must_answer_true(log_signer: Ed25519NoteSigner) -> None:
    """A verify callable answering anything but True (None, 1) is a failure: fail closed."""
    note = sign_checkpoint(CHECKPOINT, log_signer)
    for answer in (None, 1, "yes"):
        with pytest.raises(NoteVerificationError):
            verify(note, log_signer, lambda *_: answer)  # type: ignore[arg-type,return-value]


def test_signer_with_a_bad_signature_size_is_refused(log_signer: Ed25519NoteSigner) -> None:
    """Signing refuses a signer that returns something other than 64 bytes."""

    class Broken:
        name = ORIGIN
        public_key = log_signer.public_key

        def sign(self, message: bytes) -> bytes:
            return b"\x00" * 63

    with pytest.raises(ValueError):
        sign_checkpoint(CHECKPOINT, Broken())


# --- Strict parsing -------------------------------------------------------------------------


def non_canonical_b64(raw: bytes) -> str:
    """Base64 of ``raw`` with non-zero spare bits: decodes to the same bytes, but not canonical."""
    encoded = base64.b64encode(raw).decode()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = encoded.rstrip("=")[-1]
    bumped = alphabet[alphabet.index(last) ^ 1]
    candidate = encoded.rstrip("=")[:-1] + bumped + "=" * encoded.count("=")
    assert base64.b64decode(candidate) == raw and candidate != encoded
    return candidate


URL_SAFE_ROOT = base64.urlsafe_b64encode(bytes([0xFF]) * 32).decode()

MALFORMED_BODIES = [
    f"{ORIGIN}\n007\n{ROOT_B64}\n",  # leading zeros in the size
    f"{ORIGIN}\n+7\n{ROOT_B64}\n",  # a sign
    f"{ORIGIN}\n-1\n{ROOT_B64}\n",  # a negative size
    f"{ORIGIN}\n0x7\n{ROOT_B64}\n",  # hexadecimal
    f"{ORIGIN}\n7.0\n{ROOT_B64}\n",  # a fraction
    f"{ORIGIN}\n7 \n{ROOT_B64}\n",  # trailing space after the size
    f"{ORIGIN}\n\u0667\n{ROOT_B64}\n",  # a non-ASCII digit
    f"{ORIGIN}\n18446744073709551616\n{ROOT_B64}\n",  # 2**64
    f"{ORIGIN}\n{'9' * 5000}\n{ROOT_B64}\n",  # a very long number
    f" {ORIGIN}\n7\n{ROOT_B64}\n",  # leading space before the origin
    f"{ORIGIN} \n7\n{ROOT_B64}\n",  # trailing space after the origin
    f"mappa.example/audit log\n7\n{ROOT_B64}\n",  # a space inside the origin
    f"mappa+example/audit\n7\n{ROOT_B64}\n",  # a plus in the origin
    f"{ORIGIN}\n7\n{ROOT_B64} \n",  # trailing space after the root
    f"{ORIGIN}\n7\n{ROOT_B64.rstrip('=')}\n",  # unpadded base64
    f"{ORIGIN}\n7\n{non_canonical_b64(ROOT)}\n",  # non-canonical base64
    f"{ORIGIN}\n7\n{URL_SAFE_ROOT}\n",  # URL-safe alphabet
    f"{ORIGIN}\n7\n{ROOT.hex()}\n",  # hex, not base64
    f"{ORIGIN}\n7\n{base64.b64encode(ROOT[:31]).decode()}\n",  # a 31-byte root
    f"{ORIGIN}\n7\n",  # no root line
    f"{ORIGIN}\n7\n{ROOT_B64}\n\nextension\n",  # a blank line in the body
    f"{ORIGIN}\n7\n{ROOT_B64}\n extension\n",  # a space-padded extension line
    f"{ORIGIN}\n7\n{ROOT_B64}",  # no final newline (signing adds one: blank-line confusion)
]


@pytest.mark.parametrize("body", MALFORMED_BODIES)
def test_validly_signed_malformed_bodies_are_refused(
    body: str, log_signer: Ed25519NoteSigner, verify_ed25519: Verify
) -> None:
    """A body outside the strict checkpoint grammar is refused even with a valid signature."""
    with pytest.raises(MalformedNoteError):
        parse_checkpoint(body)
    if not body.endswith("\n"):
        return
    note = sign_note(body, log_signer)
    with pytest.raises(CheckpointError):
        verify(note, log_signer, verify_ed25519)


def good_note(signer: Ed25519NoteSigner) -> str:
    return sign_checkpoint(CHECKPOINT, signer)


MALFORMED_NOTES: list[tuple[str, Callable[[str], str | bytes]]] = [
    ("no blank line before the signatures", lambda n: n.replace("\n\n", "\n")),
    ("CRLF line endings", lambda n: n.replace("\n", "\r\n")),
    ("a tab after the origin", lambda n: n.replace(ORIGIN + "\n", ORIGIN + "\t\n", 1)),
    ("a NUL character", lambda n: n.replace("\n7\n", "\n7\x00\n")),
    ("no signature lines", lambda n: n.split("\n\n")[0] + "\n\n"),
    ("no final newline", lambda n: n.rstrip("\n")),
    ("two dashes for the em dash", lambda n: n.replace("\u2014 ", "-- ")),
    ("an en dash for the em dash", lambda n: n.replace("\u2014 ", "\u2013 ")),
    ("no space after the dash", lambda n: n.replace("\u2014 ", "\u2014")),
    ("two spaces before the signature", lambda n: n.replace(f"{ORIGIN} ", f"{ORIGIN}  ", 2)),
    ("a trailing space on the signature line", lambda n: n[:-1] + " \n"),
    ("a third field on the signature line", lambda n: n[:-1] + " extra\n"),
    ("a plus in the key name", lambda n: n.replace(f"\u2014 {ORIGIN}", "\u2014 a+b")),
    ("a blank line after the signatures", lambda n: n + "\n"),
    ("invalid UTF-8", lambda n: n.encode().replace(b"\n7\n", b"\n7\xff\n")),
    ("a signature too short", lambda n: n.split("\n\n")[0] + f"\n\n\u2014 {ORIGIN} AAAAAA==\n"),
    ("too large", lambda n: n.replace(ORIGIN, "o" * MAX_NOTE_BYTES, 1)),
    (
        "non-canonical base64 signature",
        lambda n: (
            n.rsplit(" ", 1)[0]
            + " "
            + non_canonical_b64(base64.b64decode(n.rsplit(" ", 1)[1]))
            + "\n"
        ),
    ),
    (
        "too many signatures",
        lambda n: n + n.split("\n\n")[1] * MAX_SIGNATURES,
    ),
]


@pytest.mark.parametrize(
    "mangle", [m for _, m in MALFORMED_NOTES], ids=[name for name, _ in MALFORMED_NOTES]
)
def test_malformed_notes_are_refused(
    mangle: Callable[[str], str | bytes],
    log_signer: Ed25519NoteSigner,
    verify_ed25519: Verify,
) -> None:
    """Notes that break the signed-note syntax are refused before any signature is checked."""
    note = mangle(good_note(log_signer))
    with pytest.raises(MalformedNoteError):
        parse_signed_note(note)
    with pytest.raises(CheckpointError):
        verify(note, log_signer, verify_ed25519)


def test_up_to_the_signature_limit_is_accepted(
    log_signer: Ed25519NoteSigner, verify_ed25519: Verify
) -> None:
    """A note with MAX_SIGNATURES signature lines (unknown keys and the log's) is accepted."""
    note = good_note(log_signer)
    unknown_line = f"\u2014 witness.example/w {base64.b64encode(bytes(68)).decode()}\n"
    note += unknown_line * (MAX_SIGNATURES - 1)
    assert len(parse_signed_note(note).signatures) == MAX_SIGNATURES
    assert verify(note, log_signer, verify_ed25519) == CHECKPOINT


# A verifier key whose base64 holds a "+" (transparency-dev/formats, note_cosigv1_test.go).
PLUS_VERIFIER_KEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"


def test_verifier_key_with_a_plus_in_its_base64_parses() -> None:
    """Only the first two "+" separate the parts: base64 may contain "+" itself."""
    key = parse_verifier_key(PLUS_VERIFIER_KEY)
    assert key.name == "TEST"
    assert key.key_id.hex() == "7997405c"
    assert str(key) == PLUS_VERIFIER_KEY


GO_KEY_B64 = GO_VERIFIER_KEY.split("+")[2]
OTHER_TYPE_KEY = base64.b64encode(bytes([2]) + bytes(32)).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"PeterNeumann+0c74f20a3+{GO_KEY_B64}",  # a nine-digit key ID
        f"PeterNeumann+C74F20A3+{GO_KEY_B64}",  # upper-case hex
        f"PeterNeumann+00000000+{GO_KEY_B64}",  # a key ID that does not match
        f"PeterNeumann+c74f20a3+{GO_KEY_B64}=",  # extra padding
        f"PeterNeumann+c74f20a3+{GO_KEY_B64[:-1]}",  # a byte short
        f"PeterNeumann+c74f20a3+{OTHER_TYPE_KEY}",  # key type 0x02 (ECDSA), not Ed25519
        f"Peter Neumann+c74f20a3+{GO_KEY_B64}",  # a space in the name
        f"PeterNeumann+c74f20a3+{GO_KEY_B64}+extra",  # a fourth part
        f"+c74f20a3+{GO_KEY_B64}",  # no name
        f"PeterNeumann+c74f20a3+{GO_KEY_B64} ",  # trailing space
    ],
)
def test_malformed_verifier_keys_are_refused(text: str) -> None:
    """Verifier key text that is not exactly name+hex8+base64(0x01||key), consistent, fails."""
    assert parse_verifier_key(GO_VERIFIER_KEY).name == "PeterNeumann"
    with pytest.raises(MalformedNoteError):
        parse_verifier_key(text)


@pytest.mark.parametrize(
    ("origin", "size", "root"),
    [
        ("", 1, ROOT),  # empty origin
        ("with space", 1, ROOT),  # a space
        ("a\nb", 1, ROOT),  # a newline
        (ORIGIN, -1, ROOT),  # negative size
        (ORIGIN, 2**64, ROOT),  # too large
        (ORIGIN, True, ROOT),  # a bool
        (ORIGIN, 1, ROOT[:31]),  # short root
        (ORIGIN, 1, ROOT.hex()),  # text root
    ],
)
def test_checkpoint_objects_validate_when_built(origin: str, size: int, root: bytes) -> None:
    """A Checkpoint that exists is well formed: bad parts are refused at construction."""
    with pytest.raises(MalformedNoteError):
        Checkpoint(origin, size, root)


def test_verifier_needs_a_key() -> None:
    """A checkpoint verifier with no trusted key cannot be built."""
    with pytest.raises(ValueError):
        CheckpointVerifier((), lambda *_: True)


def test_verifier_key_refuses_a_short_public_key() -> None:
    """An Ed25519 public key is 32 bytes."""
    with pytest.raises(MalformedNoteError):
        VerifierKey(ORIGIN, bytes(31))


# --- The checkpoints the sequencer keeps: verified before use, re-signed after a rotation -------


async def test_sequencer_re_signs_the_latest_head_when_the_checkpoint_key_rotates(
    db: Database, new_signer: NewSigner, verify_ed25519: Verify
) -> None:
    """During a rotation's overlap an idle step signs the same head again with the new key, so
    retiring the old key never leaves the log with a head the sequencer cannot verify."""
    old, new = new_signer(DB_ORIGIN), new_signer(DB_ORIGIN)
    both = CheckpointVerifier((new.verifier_key, old.verifier_key), verify_ed25519, DB_ORIGIN)
    new_only = CheckpointVerifier((new.verifier_key,), verify_ed25519, DB_ORIGIN)
    await append_entries(db, 4)
    first = await sequence(db, old, DB_ORIGIN)
    assert first.note is not None

    resigned = await sequence(db, new, DB_ORIGIN, verifier=both)
    assert resigned.appended == 0 and resigned.note not in (None, first.note)
    assert new_only.verify(str(resigned.note)) == both.verify(first.note)  # same size and root
    async with db.read() as session:
        rows = (await session.scalars(select(AuditCheckpoint))).all()
    assert [(row.tree_size, row.note) for row in rows] == [(4, resigned.note)]

    assert (await sequence(db, new, DB_ORIGIN, verifier=new_only)).note is None  # old retired
    await append_entries(db, 1, start=4)
    assert (await sequence(db, new, DB_ORIGIN, verifier=new_only)).tree_size == 5


async def test_sequencer_refuses_a_head_no_trusted_key_signed(
    db: Database, new_signer: NewSigner, verify_ed25519: Verify
) -> None:
    """A head signed only by a key no longer trusted (retired before any step re-signed it, or
    never the log's) is not built on."""
    old, new = new_signer(DB_ORIGIN), new_signer(DB_ORIGIN)
    await append_entries(db, 2)
    await sequence(db, old, DB_ORIGIN)
    await append_entries(db, 1, start=2)
    new_only = CheckpointVerifier((new.verifier_key,), verify_ed25519, DB_ORIGIN)
    with pytest.raises(AuditLogInconsistent) as caught:
        await sequence(db, new, DB_ORIGIN, verifier=new_only)
    assert caught.value.diagnostics["reason"] == "checkpoint_unverified"
    assert caught.value.diagnostics["code"] == "audit_note_unverified"


# --- The checkpoint witness file ---------------------------------------------------------------


def _note(signer: Ed25519NoteSigner, size: int, seed: bytes = b"") -> str:
    root = root_hash([leaf_hash(seed + bytes([i])) for i in range(size)])
    return sign_checkpoint(Checkpoint(ORIGIN, size, root), signer)


def test_witness_file_only_moves_forward(tmp_path: Path, log_signer: Ed25519NoteSigner) -> None:
    """A larger tree replaces the witnessed one; a smaller one, or another tree of the same
    size, never does; the same tree signed again (a key rotation) does."""
    witness = CheckpointWitness(tmp_path / "checkpoints" / "log.note")
    assert witness.read() is None
    assert witness.record(_note(log_signer, 10))
    assert not witness.record(_note(log_signer, 5))
    assert not witness.record(_note(log_signer, 10, seed=b"fork"))
    assert witness.read() == _note(log_signer, 10)
    again = sign_checkpoint(Checkpoint(ORIGIN, 10, ROOT_OF_10), log_signer, log_signer)
    assert witness.record(again) and witness.read() == again
    assert witness.record(_note(log_signer, 12))
    assert parse_checkpoint(parse_signed_note(str(witness.read())).text).size == 12
    assert stat.S_IMODE(witness.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(witness.path.stat().st_mode) == 0o644
    assert sorted(p.name for p in witness.path.parent.iterdir()) == ["log.note", "log.note.lock"]


def test_witness_file_that_is_not_a_note_is_not_read_as_one(tmp_path: Path) -> None:
    witness = CheckpointWitness(tmp_path / "log.note")
    witness.path.write_bytes(b"x" * 70_000)
    with pytest.raises(ValueError):
        witness.read()
    witness.path.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError):
        witness.read()


ROOT_OF_10 = root_hash([leaf_hash(bytes([i])) for i in range(10)])
