"""The tamper-evident audit log: pure hashing, proofs, signed checkpoints and verification.

- `gateway.audit.merkle`: RFC 9162 Merkle tree hashing, inclusion and consistency proofs, and the
  compact `Frontier` a sequencer appends to.
- `gateway.audit.canonical`: an audit entry's canonical form (RFC 8785), the bytes of its leaf.
- `gateway.audit.checkpoint`: checkpoints as C2SP signed notes, Ed25519 through callables.
- `gateway.audit.verify`: the verifier that names the first bad entry of a log.
- `gateway.audit.errors`: the errors these raise, each with a stable code.

Nothing here does I/O or holds a private key; storage, the sequencer and the keys live elsewhere.
"""

from gateway.audit.canonical import (
    AUDIT_ENTRY_FIELDS,
    ENTRY_SCHEMAS,
    LEAF_FORMAT_PREFIX,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    canonical_entry,
    entry_leaf_hash,
    format_occurred_at,
    leaf_format,
)
from gateway.audit.checkpoint import (
    ED25519_KEY_SIZE,
    ED25519_SIGNATURE_SIZE,
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Checkpoint,
    CheckpointVerifier,
    Ed25519Verify,
    NoteSignature,
    NoteSigner,
    SignedNote,
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
from gateway.audit.errors import (
    AuditError,
    CheckpointError,
    MalformedEntryError,
    MalformedNoteError,
    NoteVerificationError,
)
from gateway.audit.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Frontier,
    MerkleTree,
    MissingTile,
    TiledTree,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from gateway.audit.verify import (
    HEX_HASH,
    LEAF_HASH_KEY,
    Problem,
    VerificationReport,
    stored_leaf_hash,
    verify_entries,
    without_leaf_hash,
)

__all__ = [
    "AUDIT_ENTRY_FIELDS",
    "ED25519_KEY_SIZE",
    "ED25519_SIGNATURE_SIZE",
    "EMPTY_ROOT",
    "ENTRY_SCHEMAS",
    "HASH_SIZE",
    "HEX_HASH",
    "LEAF_FORMAT_PREFIX",
    "LEAF_HASH_KEY",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_KEY",
    "AuditError",
    "Checkpoint",
    "CheckpointError",
    "CheckpointVerifier",
    "Ed25519Verify",
    "Frontier",
    "MalformedEntryError",
    "MalformedNoteError",
    "MerkleTree",
    "MissingTile",
    "NoteSignature",
    "NoteSigner",
    "NoteVerificationError",
    "Problem",
    "SignedNote",
    "TiledTree",
    "VerificationReport",
    "VerifierKey",
    "canonical_entry",
    "entry_leaf_hash",
    "format_checkpoint",
    "format_occurred_at",
    "key_id",
    "leaf_format",
    "leaf_hash",
    "node_hash",
    "parse_checkpoint",
    "parse_signed_note",
    "parse_verifier_key",
    "root_hash",
    "sign_checkpoint",
    "sign_note",
    "stored_leaf_hash",
    "verify_checkpoint",
    "verify_consistency",
    "verify_entries",
    "verify_inclusion",
    "verify_note",
    "without_leaf_hash",
]
