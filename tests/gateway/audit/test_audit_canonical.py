"""Canonical leaves of audit entries: RFC 8785, domain separation, strict schema, literal text."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
import rfc8785

from gateway.audit import canonical
from gateway.audit.canonical import (
    AUDIT_ENTRY_FIELDS,
    ENTRY_SCHEMAS,
    SCHEMA_VERSION,
    canonical_entry,
    entry_leaf_hash,
    format_occurred_at,
    leaf_format,
)
from gateway.audit.errors import MalformedEntryError
from gateway.audit.merkle import leaf_hash

if TYPE_CHECKING:
    from conftest import LogFactory


def content(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if key != "leaf_hash"}


def test_field_list_is_the_documented_schema() -> None:
    """The entry fields are exactly those the gateway records (issue 6, item 1), in order."""
    assert AUDIT_ENTRY_FIELDS == (
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
    assert ENTRY_SCHEMAS[SCHEMA_VERSION] == AUDIT_ENTRY_FIELDS


def test_leaf_is_rfc8785_json_with_a_format_member(logs: LogFactory) -> None:
    """The leaf is sorted-key, whitespace-free JSON: {"entry": {...}, "format": "...v1"}."""
    entry = content(logs.entry(4))
    leaf = canonical_entry(entry)
    expected = json.dumps(
        {"entry": entry, "format": "mappa-gateway/audit-entry/v1"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    assert leaf == expected
    assert leaf.startswith(b'{"entry":{"agency_id":')
    assert entry_leaf_hash(entry) == leaf_hash(leaf)


def test_leaf_is_independent_of_key_order(logs: LogFactory) -> None:
    """The same entry with its keys in another order has the same leaf."""
    entry = content(logs.entry(9))
    shuffled = dict(reversed(list(entry.items())))
    assert canonical_entry(shuffled) == canonical_entry(entry)


def test_leaves_of_another_format_or_version_cannot_collide(logs: LogFactory) -> None:
    """The format member names schema and version, so a bare entry or a v2 leaf differs."""
    entry = content(logs.entry(2))
    leaf = canonical_entry(entry)
    bare = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    assert leaf != bare
    assert json.loads(leaf)["format"] == leaf_format(1) != leaf_format(2)
    assert canonical_entry({**entry, "schema_version": 1}) == leaf


def test_every_field_changes_the_leaf(logs: LogFactory) -> None:
    """Changing any one field changes the leaf hash: nothing is left out of the hash."""
    entry = content(logs.entry(8))
    original = entry_leaf_hash(entry)
    changed = {
        "seq": 9,
        "entry_id": "other",
        "occurred_at": "2026-03-01T09:00:08.000009Z",
        "recipients": ["agency-1", "agency-2"],
        "record_refs": [],
        "withheld": [{"field": "address", "rule": "victim-safety"}],
        "detail": {"jwe_alg": "RSA-OAEP-256"},
    }
    for name in AUDIT_ENTRY_FIELDS:
        value = changed.get(name, "changed")
        assert entry_leaf_hash({**entry, name: value}) != original, name


HOSTILE_TEXT = [
    "<script>alert('x')</script>",  # markup
    "\x00\x01\x1b[31mred\x1b[0m\x7f",  # NUL, controls, an ANSI escape, DEL
    "line one\nline two\r\n\ttabbed",  # newlines and tabs
    "\u2028\u2029\u200b\ufeff",  # line and paragraph separators, zero-width, BOM
    '"quoted" \\ back\\slash /',  # JSON metacharacters
    "'; DROP TABLE audit_entries; --",  # SQL
    '=HYPERLINK("http://x")',  # a spreadsheet formula
    "Zoë Ørsted 李 🙂",  # non-ASCII and astral characters
    "",  # empty
]


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_control_characters_and_markup_are_kept_literally(logs: LogFactory, text: str) -> None:
    """Hostile text in fields, lists and withheld items parses back from the leaf unchanged."""
    entry = content(
        logs.entry(
            5,
            officer_id=text,
            detail={"claimed_client_id": text},
            recipients=[text],
            withheld=[{"field": text, "rule": text}],
        )
    )
    parsed = json.loads(canonical_entry(entry))["entry"]
    assert parsed["officer_id"] == text
    assert parsed["detail"] == {"claimed_client_id": text}
    assert parsed["recipients"] == [text]
    assert parsed["withheld"] == [{"field": text, "rule": text}]


def test_control_characters_are_escaped_not_raw_in_the_leaf(logs: LogFactory) -> None:
    """Control characters appear as JSON escapes, so the leaf itself is one printable line."""
    leaf = canonical_entry(content(logs.entry(1, detail={"x": "a\x00b\nc\x1f"})))
    assert b"a\\u0000b\\nc\\u001f" in leaf
    assert not any(byte < 0x20 for byte in leaf)


def test_aware_datetime_gives_the_same_leaf_as_its_canonical_text(logs: LogFactory) -> None:
    """An aware datetime in any zone is written as UTC with microseconds and a Z."""
    entry = content(logs.entry(3, occurred_at="2026-03-01T09:00:03.000003Z"))
    moment = datetime(2026, 3, 1, 10, 0, 3, 3, tzinfo=timezone(timedelta(hours=1)))
    assert format_occurred_at(moment) == "2026-03-01T09:00:03.000003Z"
    assert canonical_entry({**entry, "occurred_at": moment}) == canonical_entry(entry)
    assert format_occurred_at(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("seq", -1),  # negative
        ("seq", True),  # a bool is not a seq
        ("seq", "1"),  # text
        ("seq", 2**53),  # beyond exact JSON integers
        ("entry_id", ""),  # empty required text
        ("operation", None),  # missing required text
        ("outcome", 1),  # wrong type
        ("occurred_at", "2026-03-01T09:00:00Z"),  # no microseconds
        ("occurred_at", "2026-03-01T09:00:00.123Z"),  # milliseconds only
        ("occurred_at", "2026-03-01T09:00:00.000000+00:00"),  # offset, not Z
        ("occurred_at", "2026-02-30T09:00:00.000000Z"),  # no such day
        ("occurred_at", "2026-03-01 09:00:00.000000Z"),  # space separator
        ("occurred_at", "\u0662026-03-01T09:00:00.000000Z"),  # a non-ASCII digit
        ("occurred_at", datetime(2026, 3, 1)),  # naive datetime
        ("agency_id", 7),  # a number for text
        ("agency_id", ["agency-1"]),  # a list for text
        ("recipients", "agency-1"),  # text for a list
        ("recipients", [1]),  # a list of numbers
        ("record_refs", None),  # null for a list
        ("withheld", [{"field": "x"}]),  # no rule
        ("withheld", [{"field": "x", "rule": "r", "value": "secret"}]),  # a value smuggled in
        ("withheld", [{"field": "x", "rule": None}]),  # null rule
        ("detail", "text"),  # not an object
        ("detail", None),  # null
        ("detail", {"n": float("nan")}),  # NaN
        ("detail", {"n": float("inf")}),  # infinity
        ("detail", {"n": 2**60}),  # an inexact integer
        ("detail", {1: "x"}),  # a non-text key
        ("detail", {"b": b"bytes"}),  # bytes
        ("detail", {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}),  # too deep
        ("nominal_ref", "\ud800"),  # a lone surrogate
    ],
)
def test_malformed_values_are_refused(logs: LogFactory, name: str, value: object) -> None:
    """A value outside the schema has no canonical form: MalformedEntryError, never a leaf."""
    entry = content(logs.entry(1))
    with pytest.raises(MalformedEntryError) as caught:
        canonical_entry({**entry, name: value})
    assert caught.value.code == "audit_entry_malformed"


def test_missing_unknown_and_misversioned_fields_are_refused(logs: LogFactory) -> None:
    """An entry without a field, with an extra one, or of an unknown schema is refused."""
    entry = content(logs.entry(1))
    missing = {key: value for key, value in entry.items() if key != "purpose"}
    for bad in (
        missing,
        {**entry, "leaf_hash": "00" * 32},
        {**entry, "officer_name": "A. Officer"},
        {**entry, "schema_version": 2},
        {**entry, "schema_version": True},
        [("seq", 1)],
    ):
        with pytest.raises(MalformedEntryError):
            canonical_entry(bad)  # type: ignore[arg-type]


def test_error_messages_carry_no_field_values(logs: LogFactory) -> None:
    """Refusals name fields, never the values that were refused."""
    entry = content(logs.entry(1))
    with pytest.raises(MalformedEntryError) as caught:
        canonical_entry({**entry, "officer_id": 12345, "Jane Doe": "x"})
    assert "Jane" not in str(caught.value)
    assert "12345" not in str(caught.value)


def test_tuples_and_lists_give_the_same_leaf(logs: LogFactory) -> None:
    """Lists may come as tuples (as the domain model holds them) with the same leaf."""
    entry = content(logs.entry(3))
    as_tuples = {
        **entry,
        "recipients": tuple(entry["recipients"]),
        "record_refs": tuple(entry["record_refs"]),
        "withheld": tuple(entry["withheld"]),
    }
    assert canonical_entry(as_tuples) == canonical_entry(entry)


# Text that JSON encoders disagree on if any: every control character, quote and backslash,
# DEL, the line and paragraph separators, the ends of the BMP and beyond it.
_TRICKY = [chr(c) for c in range(0x20)] + [
    '"',
    "\\",
    "/",
    "\x7f",
    "\u2028",
    "\u2029",
    "\ue000",
    "\ufeff",
    "\uffff",
    "\U0001f600",
    "\U0010ffff",
    "e\u0301",
    "plain",
    "",
]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_TRICKY) for _ in range(rng.randrange(0, 6)))


def _plain_value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(7 if depth else 4)
    if kind == 0:
        return _text(rng)
    if kind == 1:
        return rng.choice([0, 1, -1, 2**53 - 1, -(2**53 - 1), rng.randrange(-(10**12), 10**12)])
    if kind == 2:
        return rng.choice([True, False])
    if kind == 3:
        return None
    if kind in (4, 5):
        keys = [
            "".join(rng.choice('ab"\\\x01 ~') for _ in range(rng.randrange(0, 4))) for _ in "xyz"
        ]
        return {key: _plain_value(rng, depth - 1) for key in keys}
    return [_plain_value(rng, depth - 1) for _ in range(rng.randrange(0, 4))]


def test_fast_canonical_form_is_byte_for_byte_rfc8785() -> None:
    """Documents with no float and only ASCII keys are written by the standard library's C
    encoder: 3,000 random ones, built from every character JSON encoders could disagree on,
    give exactly the bytes of the RFC 8785 canonicaliser."""
    rng = random.Random(8785)
    for _ in range(3000):
        document = {"entry": _plain_value(rng, 4), "format": "x"}
        assert canonical._plain_dumps(document) == rfc8785.dumps(document), document


@pytest.mark.parametrize(
    "detail",
    [
        {"ratio": 0.1, "big": 1e21, "whole": 2.0},  # ECMAScript number formatting
        {"\ue000": 1, "\U0001f600": 2, "a": 3},  # UTF-16 order differs from code point order
        {"\uffff": "last of the BMP", "\U00010000": "first beyond it", "é": 0},
    ],
)
def test_entries_the_fast_form_cannot_vouch_for_are_canonicalised_by_rfc8785(
    logs: LogFactory, detail: dict[str, Any]
) -> None:
    """A float or a non-ASCII key anywhere in the detail: the leaf is the RFC 8785
    canonicaliser's own bytes (where Python's encoder would have written others)."""
    entry = {**content(logs.entry(2)), "detail": {"nested": detail}}
    expected = {key: entry[key] for key in AUDIT_ENTRY_FIELDS}
    assert isinstance(expected["occurred_at"], str)  # as the log stores it
    leaf = canonical_entry(entry)
    assert leaf == rfc8785.dumps({"entry": expected, "format": leaf_format(SCHEMA_VERSION)})
    plain = json.dumps(
        {"entry": expected, "format": leaf_format(SCHEMA_VERSION)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert leaf != plain  # the case the fast form would have got wrong


def test_lone_surrogate_in_an_entry_is_refused_as_before(logs: LogFactory) -> None:
    """Text no UTF-8 can carry has no canonical form: refused, by either path."""
    entry = {**content(logs.entry(1)), "detail": {"note": "half \ud800 a pair"}}
    with pytest.raises(MalformedEntryError):
        canonical_entry(entry)
