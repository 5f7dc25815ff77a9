"""Checkpoints as C2SP signed notes (c2sp.org/tlog-checkpoint, c2sp.org/signed-note), Ed25519.

A signed checkpoint looks like this (the em dash is U+2014)::

    mappa.example/audit
    20852163
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

    — mappa.example/audit Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhc...

The body is the origin, the tree size in decimal and the base64 root hash, each on its own line,
then optional extension lines. After a blank line, each signature line carries a key name and
``base64(key ID || signature)``, where the key ID is
``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]`` and the signature is Ed25519 over
the body. A verifier key is written ``<name>+<hex key ID>+<base64(0x01 || public key)>``.

Parsing is strict, beyond the letter of the specifications where they leave room: valid UTF-8, no
control characters but newline, base64 in its one canonical form, sizes in decimal without
leading zeros, no blank or space-padded lines in the body, origins and key names without spaces or
``+``, at most `MAX_SIGNATURES` signatures in at most `MAX_NOTE_BYTES`. Signatures by unknown keys
are ignored; a signature by a trusted key that fails rejects the whole note; at least one must
verify. Nothing here touches key material: signing and verifying are callables passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from gateway.audit.errors import MalformedNoteError, NoteVerificationError
from gateway.audit.merkle import HASH_SIZE

__all__ = [
    "ED25519_KEY_SIZE",
    "ED25519_SIGNATURE_SIZE",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Checkpoint",
    "CheckpointVerifier",
    "Ed25519Verify",
    "NoteSignature",
    "NoteSigner",
    "SignedNote",
    "VerifierKey",
    "format_checkpoint",
    "key_id",
    "parse_checkpoint",
    "parse_signed_note",
    "parse_verifier_key",
    "sign_checkpoint",
    "sign_note",
    "verify_checkpoint",
    "verify_note",
]

ED25519_KEY_SIZE: Final = 32
ED25519_SIGNATURE_SIZE: Final = 64
MAX_NOTE_BYTES: Final = 1 << 20
"""Largest signed note accepted, in UTF-8 bytes."""
MAX_SIGNATURES: Final = 100
"""Most signature lines accepted in one note (the specification asks for at least 16)."""

_ED25519_TYPE: Final = b"\x01"
_KEY_ID_SIZE: Final = 4
_SIGNATURE_PREFIX: Final = "\u2014 "
_DECIMAL: Final = re.compile(r"0|[1-9][0-9]*")
_HEX_KEY_ID: Final = re.compile(r"[0-9a-f]{8}")
_MAX_TREE_SIZE: Final = 2**64 - 1


class NoteSigner(Protocol):
    """Signs note text with an Ed25519 key (the private half stays in ``keys/``)."""

    @property
    def name(self) -> str:
        """The key name, usually the log's origin."""
        ...

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        ...

    def sign(self, message: bytes, /) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        ...


class Ed25519Verify(Protocol):
    """Checks an Ed25519 signature; returns ``True`` only when it verifies, and never raises."""

    def __call__(self, public_key: bytes, signature: bytes, message: bytes, /) -> bool: ...


def key_id(name: str, public_key: bytes) -> bytes:
    """Return the 4-byte key ID of an Ed25519 key: ``SHA-256(name || 0x0A || 0x01 || key)[:4]``."""
    _check_name(name, "key name")
    _check_public_key(public_key)
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + _ED25519_TYPE + public_key).digest()
    return digest[:_KEY_ID_SIZE]


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A trusted Ed25519 note key: its name and raw public key. ``str()`` gives the vkey text."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name, "key name")
        _check_public_key(self.public_key)

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID that signature lines carry."""
        return key_id(self.name, self.public_key)

    def __str__(self) -> str:
        encoded = _b64encode(_ED25519_TYPE + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{encoded}"


def parse_verifier_key(text: str) -> VerifierKey:
    """Parse ``<name>+<hex key ID>+<base64(0x01 || public key)>``, checking the key ID."""
    if not isinstance(text, str):
        raise MalformedNoteError("a verifier key is text")
    parts = text.split("+", 2)  # names have no "+"; base64 may
    if len(parts) != 3 or _HEX_KEY_ID.fullmatch(parts[1]) is None:
        raise MalformedNoteError("a verifier key is name+keyid+key")
    name, hex_id, encoded = parts
    raw = _b64decode(encoded, "verifier key")
    if len(raw) != 1 + ED25519_KEY_SIZE or raw[:1] != _ED25519_TYPE:
        raise MalformedNoteError("a verifier key holds 0x01 and a 32-byte Ed25519 key")
    key = VerifierKey(name, raw[1:])
    if key.key_id.hex() != hex_id:
        raise MalformedNoteError("verifier key ID does not match its name and key")
    return key


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: origin, tree size, root hash and optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_name(self.origin, "origin")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise MalformedNoteError("tree size must be an int")
        if not 0 <= self.size <= _MAX_TREE_SIZE:
            raise MalformedNoteError("tree size out of range")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise MalformedNoteError(f"root hash must be {HASH_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            raise MalformedNoteError("extensions must be a tuple of lines")
        for line in self.extensions:
            if (
                not isinstance(line, str)
                or not line
                or line != line.strip()
                or _has_control(line)
                or not _is_utf8(line)
            ):
                raise MalformedNoteError("extension lines are non-empty, unpadded, one line")


def format_checkpoint(checkpoint: Checkpoint) -> str:
    """Return the note text (body) of ``checkpoint``, ending in a newline."""
    lines = [
        checkpoint.origin,
        str(checkpoint.size),
        _b64encode(checkpoint.root_hash),
        *checkpoint.extensions,
    ]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body (the note text without its signatures)."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise MalformedNoteError("a checkpoint body is text ending in a newline")
    if _has_control(text.replace("\n", "")) or not _is_utf8(text):
        raise MalformedNoteError("control characters or invalid text in checkpoint")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedNoteError("a checkpoint has origin, size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    if len(size_text) > len(str(_MAX_TREE_SIZE)) or _DECIMAL.fullmatch(size_text) is None:
        raise MalformedNoteError("tree size must be decimal without leading zeros")
    root = _b64decode(root_text, "root hash")
    checkpoint = Checkpoint(origin, int(size_text), root, tuple(extensions))
    if format_checkpoint(checkpoint) != text:
        raise MalformedNoteError("checkpoint is not in canonical form")
    return checkpoint


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a note, not yet verified."""

    key_name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A note split into its text (ending in a newline) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]


def parse_signed_note(note: str | bytes) -> SignedNote:
    """Split a signed note into text and signatures, checking its syntax only."""
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise MalformedNoteError("note too large")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNoteError("note is not valid UTF-8") from exc
    if not isinstance(note, str) or not _is_utf8(note):
        raise MalformedNoteError("note is not valid UTF-8 text")
    if len(note.encode("utf-8")) > MAX_NOTE_BYTES:
        raise MalformedNoteError("note too large")
    if _has_control(note.replace("\n", "")):
        raise MalformedNoteError("note contains control characters")
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedNoteError("note has no signatures, or no final newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError("note has too many signatures")
    return SignedNote(text, tuple(_parse_signature_line(line) for line in lines))


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise MalformedNoteError("signature line does not start with an em dash and a space")
    parts = line[len(_SIGNATURE_PREFIX) :].split(" ")
    if len(parts) != 2 or not _is_name(parts[0]):
        raise MalformedNoteError("signature line is not: key name, space, signature")
    raw = _b64decode(parts[1], "signature")
    if len(raw) <= _KEY_ID_SIZE:
        raise MalformedNoteError("signature too short")
    return NoteSignature(parts[0], raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:])


def sign_note(text: str, signer: NoteSigner, *cosigners: NoteSigner) -> str:
    """Return ``text`` as a signed note, signed by ``signer`` then each cosigner."""
    if (
        not isinstance(text, str)
        or not text.endswith("\n")
        or not _is_utf8(text)
        or _has_control(text.replace("\n", ""))
    ):
        raise MalformedNoteError(
            "note text is UTF-8 ending in a newline, without control characters"
        )
    message = text.encode("utf-8")
    lines: list[str] = []
    for each in (signer, *cosigners):
        key = VerifierKey(each.name, each.public_key)
        signature = each.sign(message)
        if not isinstance(signature, bytes) or len(signature) != ED25519_SIGNATURE_SIZE:
            raise ValueError("an Ed25519 signature is 64 bytes")
        lines.append(f"{_SIGNATURE_PREFIX}{key.name} {_b64encode(key.key_id + signature)}\n")
    note = text + "\n" + "".join(lines)
    parse_signed_note(note)  # within the limits a verifier applies
    return note


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner, *cosigners: NoteSigner) -> str:
    """Return ``checkpoint`` as a signed note, signed by ``signer`` then each cosigner."""
    return sign_note(format_checkpoint(checkpoint), signer, *cosigners)


def verify_note(
    note: str | bytes, *, keys: Sequence[VerifierKey], ed25519_verify: Ed25519Verify
) -> SignedNote:
    """Return the note once a trusted key has verified it.

    Signatures by unknown keys (another name or key ID) are ignored. Raises `MalformedNoteError`
    for bad syntax, and `NoteVerificationError` when a trusted key's signature fails or when no
    trusted key signed.
    """
    signed = parse_signed_note(note)
    trusted = {(key.name, key.key_id): key for key in keys}
    message = signed.text.encode("utf-8")
    verified = False
    for signature in signed.signatures:
        key = trusted.get((signature.key_name, signature.key_id))
        if key is None:
            continue  # an unknown key, e.g. a witness or a rotated-out log key
        if (
            len(signature.signature) != ED25519_SIGNATURE_SIZE
            or ed25519_verify(key.public_key, signature.signature, message) is not True
        ):
            raise NoteVerificationError("a signature by a trusted key does not verify")
        verified = True
    if not verified:
        raise NoteVerificationError("no signature by a trusted key")
    return signed


def verify_checkpoint(
    note: str | bytes,
    *,
    keys: Sequence[VerifierKey],
    ed25519_verify: Ed25519Verify,
    origin: str | None = None,
) -> Checkpoint:
    """Verify a signed checkpoint against trusted keys and return it.

    As `verify_note`, and the body must be a checkpoint whose origin is ``origin`` when given, or
    else the name of a trusted key that signed it.
    """
    signed = verify_note(note, keys=keys, ed25519_verify=ed25519_verify)
    checkpoint = parse_checkpoint(signed.text)
    trusted = {(key.name, key.key_id) for key in keys}
    signers = {sig.key_name for sig in signed.signatures if (sig.key_name, sig.key_id) in trusted}
    if checkpoint.origin not in ({origin} if origin is not None else signers):
        raise NoteVerificationError("checkpoint origin is not the expected log")
    return checkpoint


@dataclass(frozen=True, slots=True)
class CheckpointVerifier:
    """The trust needed to accept a log's checkpoints: its keys, the Ed25519 check, its origin."""

    keys: tuple[VerifierKey, ...]
    ed25519_verify: Ed25519Verify
    origin: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.keys, tuple) or not self.keys:
            raise ValueError("a checkpoint verifier needs at least one trusted key")

    def verify(self, note: str | bytes) -> Checkpoint:
        """Return the checkpoint in ``note`` if it is validly signed; see `verify_checkpoint`."""
        return verify_checkpoint(
            note, keys=self.keys, ed25519_verify=self.ed25519_verify, origin=self.origin
        )


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Decode standard base64, accepting only its canonical form (padding, zero spare bits)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise MalformedNoteError(f"{what} is not base64") from exc
    if _b64encode(raw) != text:
        raise MalformedNoteError(f"{what} is not canonical base64")
    return raw


def _has_control(text: str) -> bool:
    return any(ord(char) < 0x20 for char in text)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_name(name: object) -> bool:
    """Key names and origins: non-empty UTF-8, no Unicode spaces, no ``+``, no controls."""
    return (
        isinstance(name, str)
        and bool(name)
        and _is_utf8(name)
        and not _has_control(name)
        and "+" not in name
        and not any(char.isspace() or unicodedata.category(char).startswith("Z") for char in name)
    )


def _check_name(name: object, what: str) -> None:
    if not _is_name(name):
        raise MalformedNoteError(f"invalid {what}")


def _check_public_key(public_key: object) -> None:
    if not isinstance(public_key, bytes) or len(public_key) != ED25519_KEY_SIZE:
        raise MalformedNoteError("an Ed25519 public key is 32 bytes")
