"""The canonical form of an audit entry: the bytes that become its Merkle leaf.

A leaf is the RFC 8785 (JSON Canonicalization Scheme) serialisation of::

    {"entry": {<every field of the schema>}, "format": "mappa-gateway/audit-entry/v1"}

The ``format`` member separates domains: a leaf of another format, or of another version of this
schema, can never serialise to the same bytes, so its hash cannot stand in for an entry's. The
leaf hash is then ``SHA-256(0x00 || leaf)`` (`gateway.audit.merkle.leaf_hash`).

An entry is a mapping holding exactly the fields of its schema (`AUDIT_ENTRY_FIELDS`). It may
also carry ``schema_version`` (an int; 1 when absent) to choose the schema. Values are checked
here, strictly, so that anything with a canonical form is a well-formed entry:

- ``seq``: int from 0 to 2**53 - 1; ``entry_id``, ``operation``, ``outcome``: non-empty text;
- ``occurred_at``: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, always six fraction digits, so that one
  instant has one form), or an aware `datetime`, which is written in that form;
- ``recipients``, ``record_refs``: lists of text; ``withheld``: list of ``{"field", "rule"}``;
- ``detail``: a JSON object of diagnostics (no NaN or infinities, integers within 2**53, at most
  8 levels deep);
- every other field: text or null.

Unknown or missing fields, other types and strings that are not Unicode scalar values are
refused. Text is otherwise taken literally: control characters, markup and quotes are escaped by
JSON, never altered, and parse back to the very same string.

To add a field, define the next schema version (a new tuple in `ENTRY_SCHEMAS`) and keep the old
ones, so that entries already in the log keep their canonical form.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final, TypeAlias, TypeGuard

import rfc8785

from gateway.audit.errors import MalformedEntryError
from gateway.audit.merkle import leaf_hash

__all__ = [
    "AUDIT_ENTRY_FIELDS",
    "ENTRY_SCHEMAS",
    "LEAF_FORMAT_PREFIX",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_KEY",
    "canonical_entry",
    "entry_leaf_hash",
    "format_occurred_at",
    "leaf_format",
]

SCHEMA_VERSION: Final = 1
"""The schema version new entries are written with."""

SCHEMA_VERSION_KEY: Final = "schema_version"
"""Optional entry key choosing the schema; an entry without it is version 1."""

LEAF_FORMAT_PREFIX: Final = "mappa-gateway/audit-entry/v"
"""The ``format`` member of a leaf is this prefix followed by the schema version."""

AUDIT_ENTRY_FIELDS: Final[tuple[str, ...]] = (
    "seq",
    "entry_id",
    "occurred_at",
    "operation",
    "outcome",
    "agency_id",
    "officer_id",
    "recipients",
    "nominal_ref",
    "record_refs",
    "legal_basis",
    "purpose",
    "policy_version",
    "rule",
    "withheld",
    "payload_digest",
    "request_id",
    "reason_code",
    "detail",
)
"""The fields of an audit entry at `SCHEMA_VERSION`, in the order the gateway stores them."""

ENTRY_SCHEMAS: Final[Mapping[int, tuple[str, ...]]] = MappingProxyType({1: AUDIT_ENTRY_FIELDS})
"""Field names of every schema version ever written; versions are never changed or removed."""

_MAX_JSON_INT: Final = 2**53 - 1  # the largest integer RFC 8785 (I-JSON) represents exactly
_OCCURRED_AT: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"
)
_WITHHELD_KEYS: Final = frozenset({"field", "rule"})
_MAX_DETAIL_DEPTH: Final = 8

_Json: TypeAlias = "str | int | float | bool | list[_Json] | dict[str, _Json] | None"
"""A JSON value, as RFC 8785 serialises it."""

# How each field is checked; fields in none of these sets are optional text (str or None).
_REQUIRED_TEXT: Final = frozenset({"entry_id", "operation", "outcome"})
_TEXT_LISTS: Final = frozenset({"recipients", "record_refs"})


def leaf_format(version: int) -> str:
    """Return the ``format`` member for leaves of schema ``version``."""
    return f"{LEAF_FORMAT_PREFIX}{version}"


def format_occurred_at(moment: datetime) -> str:
    """Return the canonical ``occurred_at`` text: UTC, microseconds, ``Z`` suffix."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("occurred_at must be an aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_entry(entry: Mapping[str, object]) -> bytes:
    """Return the leaf bytes of ``entry``, or raise `MalformedEntryError`."""
    if not isinstance(entry, Mapping):
        raise MalformedEntryError("an audit entry is a mapping")
    version = entry.get(SCHEMA_VERSION_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version not in ENTRY_SCHEMAS:
        raise MalformedEntryError("unknown audit entry schema version")
    fields = ENTRY_SCHEMAS[version]
    present = set(entry) - {SCHEMA_VERSION_KEY}
    if present != set(fields):
        missing = sorted(set(fields) - present)
        unknown = len(present - set(fields))
        raise MalformedEntryError(
            f"entry fields differ from schema: missing {missing}, {unknown} unknown"
        )
    plain = _Plain()
    body = {name: _check_field(name, entry[name], plain) for name in fields}
    document: dict[str, _Json] = {"entry": body, "format": leaf_format(version)}
    if plain.so_far:
        try:
            return _plain_dumps(document)
        except UnicodeEncodeError:
            pass  # a lone surrogate: RFC 8785 refuses it below
    try:
        return rfc8785.dumps(document)
    except rfc8785.CanonicalizationError as exc:
        raise MalformedEntryError("entry has no RFC 8785 canonical form") from exc


def entry_leaf_hash(entry: Mapping[str, object]) -> bytes:
    """Return the Merkle leaf hash of ``entry``: ``SHA-256(0x00 || canonical_entry(entry))``."""
    return leaf_hash(canonical_entry(entry))


class _Plain:
    """Whether a checked entry holds only what the standard library's JSON encoder writes
    exactly as RFC 8785 does: no float (ECMAScript number formatting differs from Python's) and
    no non-ASCII object key (RFC 8785 orders keys by UTF-16 code units, Python by code points).
    Strings are escaped alike (``\\b \\t \\n \\f \\r \\" \\\\`` and ``\\u00xx`` for the other
    control characters, nothing else), integers are in the exact range, and literals agree."""

    __slots__ = ("so_far",)

    def __init__(self) -> None:
        self.so_far = True


def _plain_dumps(document: _Json) -> bytes:
    """RFC 8785 bytes of a document :class:`_Plain` vouched for (the C encoder: about a tenth of
    the pure-Python canonicaliser's time, for the sequencer and for whoever verifies the log)."""
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def _check_field(name: str, value: object, plain: _Plain) -> _Json:
    """Return ``value`` in the JSON shape RFC 8785 serialises, or raise `MalformedEntryError`."""
    if name == "seq":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_JSON_INT:
            raise MalformedEntryError("seq must be an int from 0 to 2**53 - 1")
        return value
    if name == "occurred_at":
        return _check_occurred_at(value)
    if name == "withheld":
        return _check_withheld(value)
    if name == "detail":
        if not isinstance(value, Mapping):
            raise MalformedEntryError("detail must be a JSON object")
        return _check_json(value, _MAX_DETAIL_DEPTH, plain)
    if name in _TEXT_LISTS:
        if not _is_sequence(value):
            raise MalformedEntryError(f"{name} must be a list of strings")
        return [_check_text(name, item) for item in value]
    if name in _REQUIRED_TEXT:
        if not isinstance(value, str) or not value:
            raise MalformedEntryError(f"{name} must be a non-empty string")
        return value
    return None if value is None else _check_text(name, value)


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise MalformedEntryError(f"{name} must hold strings")
    return value


def _check_occurred_at(value: object) -> str:
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise MalformedEntryError("occurred_at must be timezone-aware")
        return format_occurred_at(value)
    if not isinstance(value, str) or _OCCURRED_AT.fullmatch(value) is None:
        raise MalformedEntryError("occurred_at must be YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC)")
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedEntryError("occurred_at is not a valid date and time") from exc
    return value


def _check_withheld(value: object) -> list[_Json]:
    if not _is_sequence(value):
        raise MalformedEntryError("withheld must be a list of {field, rule}")
    items: list[_Json] = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) != _WITHHELD_KEYS:
            raise MalformedEntryError("withheld must be a list of {field, rule}")
        items.append({key: _check_text("withheld", item[key]) for key in ("field", "rule")})
    return items


def _check_json(value: object, depth: int, plain: _Plain) -> _Json:
    """Copy a JSON value made of dicts, lists, text, ints, finite floats, booleans and null."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_JSON_INT:
            raise MalformedEntryError("detail holds an integer JSON cannot represent exactly")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedEntryError("detail holds a number JSON cannot represent")
        plain.so_far = False
        return value
    if depth <= 0:
        raise MalformedEntryError("detail is nested too deeply")
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise MalformedEntryError("detail object keys must be strings")
        if plain.so_far and not all(key.isascii() for key in value):
            plain.so_far = False
        return {key: _check_json(item, depth - 1, plain) for key, item in value.items()}
    if _is_sequence(value):
        return [_check_json(item, depth - 1, plain) for item in value]
    raise MalformedEntryError("detail holds a value that is not JSON")


def _is_sequence(value: object) -> TypeGuard[Sequence[object]]:
    return isinstance(value, list | tuple)
