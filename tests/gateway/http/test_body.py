"""Strict body parsing: every malformed or hostile body is a 4xx error before any model runs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.contract import ReferralIn
from gateway.errors import BodyTooDeep, MalformedBody, ValidationFailed
from gateway.http.body import parse_json, validate


def _referral(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "mappa",
        "subject": {
            "family_name": "Example",
            "given_names": "Sam",
            "date_of_birth": "1980-02-29",
            "pnc_id": "01/123456X",
        },
        "category": "M2",
        "reasons": "Released on licence; risk to known adult",
        "risks": [{"group": "known_adult", "level": "high"}],
        "agencies_involved": ["probation-a", "housing-a"],
        "referrer_name": "DS Example",
        "referrer_contact": "mappa@police.example",
    }
    body.update(changes)
    return body


def test_valid_referral_accepts_ndelius_category_code() -> None:
    """The nDelius category code M2 is read as category 2."""
    referral = validate(ReferralIn, parse_json(json.dumps(_referral()).encode(), max_depth=32))
    assert int(referral.category) == 2  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"a": 1', MalformedBody),  # truncated
        (b"\xff\xfe{}", MalformedBody),  # not UTF-8
        (b'{"a": NaN}', MalformedBody),  # NaN is not JSON
        (b'{"a": Infinity}', MalformedBody),
        (b'{"a": -Infinity}', MalformedBody),
        (b'{"a": ' + b"9" * 5000 + b"}", MalformedBody),  # huge integer (CPU exhaustion)
        (b'{"a": 1e999}', MalformedBody),  # float overflow
        (b'{"a": 1, "a": 2}', MalformedBody),  # duplicate key: which one would win?
        (b"[" * 100 + b"]" * 100, BodyTooDeep),  # deep nesting
        (b'{"a":' * 50 + b"1" + b"}" * 50, BodyTooDeep),
        (b"[" * 200_000, BodyTooDeep),  # would blow the recursion limit
    ],
)
def test_hostile_json_is_refused(raw: bytes, error: type[Exception]) -> None:
    """Hostile JSON never reaches a model."""
    with pytest.raises(error):
        parse_json(raw, max_depth=32)


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    """The depth scan ignores brackets inside strings, including escaped quotes."""
    raw = json.dumps({"text": "[[[[" * 100 + '\\"]]' + "{{" * 100}).encode()
    assert parse_json(raw, max_depth=4)["text"].startswith("[[[[")


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"category": 5}, "category"),  # there is no category 5
        ({"category": "M5"}, "category"),
        ({"category": 0}, "category"),
        ({"category": True}, "category"),  # a boolean is not a category
        ({"category": 2.5}, "category"),
        ({"kind": "gossip"}, "kind"),  # unknown referral kind
        ({"risks": [{"group": "children", "level": "extreme"}]}, "risks"),
        ({"risks": []}, "risks"),  # at least one group at risk
        ({"unexpected": "field"}, "unexpected"),  # unknown fields are refused
        ({"reasons": 42}, "reasons"),  # wrong type
        ({"agencies_involved": ["Not An Id; DROP TABLE"]}, "agencies_involved"),
    ],
)
def test_invalid_referral_fields_are_refused(changes: dict[str, Any], where: str) -> None:
    """Unknown enum values, wrong types and unknown fields fail validation, naming the place."""
    with pytest.raises(ValidationFailed) as caught:
        validate(ReferralIn, _referral(**changes))
    assert caught.value.errors
    assert any(where in ".".join(e["loc"]) or e["loc"] == [] for e in caught.value.errors)


@pytest.mark.parametrize(
    "date_of_birth",
    ["1980-02-30", "31/01/1980", "1980-13-01", "", "2999-01-01", "1800-01-01"],
)
def test_invalid_dates_are_refused(date_of_birth: str) -> None:
    """Impossible, badly formatted and implausible dates of birth are refused."""
    subject = {**_referral()["subject"], "date_of_birth": date_of_birth}
    with pytest.raises(ValidationFailed):
        validate(ReferralIn, _referral(subject=subject))


def test_validation_errors_do_not_echo_the_input() -> None:
    """A validation error names where and what kind, never the offending value."""
    subject = {**_referral()["subject"], "date_of_birth": "Jane Doe lives at 1 High St"}
    with pytest.raises(ValidationFailed) as caught:
        validate(ReferralIn, _referral(subject=subject))
    assert "Jane" not in json.dumps(caught.value.errors)


def test_non_mappa_referral_carries_no_category() -> None:
    """A high-risk information-sharing referral (non-offender) cannot carry a MAPPA category."""
    with pytest.raises(ValidationFailed):
        validate(ReferralIn, _referral(kind="high_risk_information_sharing"))
    ok = validate(ReferralIn, _referral(kind="high_risk_information_sharing", category=None))
    assert ok.category is None
