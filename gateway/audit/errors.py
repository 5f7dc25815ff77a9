"""Errors raised by the audit log's pure modules.

```
AuditError                      code "audit_error"
 ├── MalformedEntryError        code "audit_entry_malformed"
 └── CheckpointError            code "audit_checkpoint_error"
      ├── MalformedNoteError    code "audit_note_malformed"
      └── NoteVerificationError code "audit_note_unverified"
```

The codes are stable: they go into problem+json bodies and audit records. The tree stands alone so
that these modules import nothing else from the gateway; `AuditError` is the one class to graft
under the gateway's root error. Messages carry codes, sizes and positions, never field values.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "CheckpointError",
    "MalformedEntryError",
    "MalformedNoteError",
    "NoteVerificationError",
]


class AuditError(Exception):
    """Base of every error raised by `gateway.audit`."""

    code: str = "audit_error"


class MalformedEntryError(AuditError, ValueError):
    """An audit entry does not fit its schema, so it has no canonical form."""

    code = "audit_entry_malformed"


class CheckpointError(AuditError):
    """A checkpoint, signed note or verifier key could not be accepted."""

    code = "audit_checkpoint_error"


class MalformedNoteError(CheckpointError, ValueError):
    """The text is not a well-formed signed note, checkpoint or verifier key."""

    code = "audit_note_malformed"


class NoteVerificationError(CheckpointError):
    """No trusted key verified the note, or a trusted key's signature failed."""

    code = "audit_note_unverified"
