"""Strict body parsing: every malformed or hostile body is a 4xx error before any model runs."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pydantic import BaseModel

from gateway.contract import ContributorIn, MeetingIn, ReferralIn, SubjectDetails
from gateway.contract.types import (
    BIRTH_DATES,
    EARLIEST_BIRTH_DATE,
    EARLIEST_CASE_DATE,
    MEETING_DATES,
    MEETING_YEARS_AHEAD,
    PLANNED_DATES,
    PLANNED_YEARS_AHEAD,
    DateWindow,
)
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


_MEETING = {
    "nominal_id": "00000000-0000-4000-8000-000000000000",
    "meeting_type": "level_2",
    "chair_officer": "DI-1",
    "confidentiality_statement_signed": True,
}
_DECISION = {"agency_id": "victim-support-a", "purposes": ["risk-assessment"], "reason": "x"}


def test_date_windows_are_the_documented_ones() -> None:
    """docs/api.md states these bounds; the windows are built from them."""
    assert (EARLIEST_BIRTH_DATE, EARLIEST_CASE_DATE) == (dt.date(1900, 1, 1), dt.date(2001, 1, 1))
    assert (MEETING_YEARS_AHEAD, PLANNED_YEARS_AHEAD) == (1, 5)
    today = dt.datetime.now(dt.UTC).date()
    assert BIRTH_DATES.latest(today) == today
    assert MEETING_DATES.latest(dt.date(2028, 2, 29)) == dt.date(2029, 2, 28)
    assert PLANNED_DATES.latest(dt.date(2026, 11, 23)) == dt.date(2031, 11, 23)


@pytest.mark.parametrize(
    ("model", "body", "field", "window"),
    [
        (SubjectDetails, _referral()["subject"], "date_of_birth", BIRTH_DATES),
        (MeetingIn, _MEETING, "held_on", MEETING_DATES),
        (ContributorIn, _DECISION, "ends_on", PLANNED_DATES),
    ],
)
def test_a_date_is_accepted_up_to_its_bounds_and_refused_beyond(
    model: type[BaseModel], body: dict[str, Any], field: str, window: DateWindow
) -> None:
    """Both bounds are included; a day beyond either is ``date_out_of_range`` on the field."""
    one_day = dt.timedelta(days=1)
    for inside in (window.earliest, window.latest()):
        assert getattr(validate(model, {**body, field: inside.isoformat()}), field) == inside
    for outside in (window.earliest - one_day, window.latest() + one_day):
        with pytest.raises(ValidationFailed) as caught:
            validate(model, {**body, field: outside.isoformat()})
        assert caught.value.errors == [{"loc": [field], "type": "date_out_of_range"}]


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
