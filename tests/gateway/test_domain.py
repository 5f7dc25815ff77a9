"""The MAPPA vocabulary and its nDelius codes."""

from __future__ import annotations

import pytest

from gateway.domain import Category, Level


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, Category.REGISTERED_SEXUAL_OFFENDER),
        ("2", Category.VIOLENT_OR_OTHER_SEXUAL_OFFENDER),
        ("M3", Category.OTHER_DANGEROUS_OFFENDER),  # nDelius code
        ("m4", Category.TERRORISM),  # case-insensitive
        (" M1 ", Category.REGISTERED_SEXUAL_OFFENDER),
    ],
)
def test_category_accepts_gateway_and_ndelius_codes(value: object, expected: Category) -> None:
    """Categories parse from 1-4 and from M1-M4."""
    assert Category.parse(value) is expected
    assert expected.ndelius == f"M{int(expected)}"


@pytest.mark.parametrize("value", [0, 5, "M0", "M5", "X9", "MM1", "1.0", "", None, True, 2.0])
def test_category_refuses_anything_else(value: object) -> None:
    """Unknown and legacy codes are refused here (adapters map legacy codes explicitly)."""
    with pytest.raises(ValueError):
        Category.parse(value)


@pytest.mark.parametrize("value", [0, 4, "M4", "M0", "level 2"])
def test_level_refuses_out_of_range(value: object) -> None:
    """Levels are 1-3 (M1-M3) only."""
    with pytest.raises(ValueError):
        Level.parse(value)


#: Digits ``str.isdigit`` passes but ASCII has not: a superscript (``int`` refuses it), and
#: Arabic-Indic, fullwidth and Devanagari digits (``int`` reads them as 1 and 2).
NOT_ASCII_DIGITS = ["\u00b2", "\u0661", "\uff12", "\u0967", "M\u00b2", "M\u0662", "m\uff11"]


@pytest.mark.parametrize("value", NOT_ASCII_DIGITS)
def test_category_and_level_refuse_digits_that_are_not_ascii(value: str) -> None:
    """Only the ASCII digits 1-4 (1-3) name a category (level), bare or after ``M``."""
    with pytest.raises(ValueError):
        Category.parse(value)
    with pytest.raises(ValueError):
        Level.parse(value)


def test_level_accepts_ndelius_codes() -> None:
    """M2 is level 2."""
    assert Level.parse("M2") is Level.MULTI_AGENCY
