"""The one check on labels an operator or an IG officer reads (`gateway.labels`): it names the
rule a hostile name breaks without quoting it, takes real names in any script, and `visible`
writes exactly the characters it refuses as escapes."""

from __future__ import annotations

import unicodedata

import pytest

from gateway.labels import hidden_character, nfc, visible
from tests.gateway.hostile_labels import HOSTILE, LEGITIMATE, hostile_character

_RULES = {
    "Cc": "control character",
    "Cf": "format character",
    "Zl": "line separator",
    "Zp": "paragraph separator",
    "Co": "private-use",
    "Cn": "unassigned",
    "Cs": "surrogate",
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_name_is_refused_naming_the_rule_not_the_text(name: str) -> None:
    """The reason names the category broken and the code point, and holds nothing of the name
    (it goes to logs and terminals): no character of it other than its code point in hex."""
    char = hostile_character(name)
    reason = hidden_character(name)
    assert reason is not None
    assert _RULES[unicodedata.category(char)] in reason
    assert reason.endswith(f"U+{ord(char):04X}")
    assert char not in reason and "Police" not in reason
    assert reason.isascii() and reason.isprintable()


@pytest.mark.parametrize("name", LEGITIMATE)
def test_a_real_name_in_any_script_is_taken(name: str) -> None:
    assert hidden_character(name) is None
    assert visible(name) == name


@pytest.mark.parametrize("name", HOSTILE)
def test_visible_writes_the_refused_character_as_an_escape(name: str) -> None:
    """``\\xNN`` below U+0100, ``\\uNNNN`` in the BMP, ``\\UNNNNNNNN`` beyond; the result is
    itself a label the check takes."""
    code = ord(hostile_character(name))
    if code < 0x100:
        escape = f"\\x{code:02x}"
    elif code < 0x10000:
        escape = f"\\u{code:04x}"
    else:
        escape = f"\\U{code:08x}"
    shown = visible(name)
    assert shown == f"Police{escape}Agency"
    assert hidden_character(shown) is None


def test_visible_leaves_text_around_the_escapes_alone() -> None:
    assert visible("a\x00b\x1b\x7f\x85\u202e\u2066c é\u2028") == (
        "a\\x00b\\x1b\\x7f\\x85\\u202e\\u2066c é\\u2028"
    )
    assert visible("") == "" and hidden_character("") is None


def test_names_are_compared_composed() -> None:
    """An accent typed as a combining mark and a precomposed one are the same name (NFC)."""
    assert nfc("O\u0301 Briain") == nfc("Ó Briain") == "Ó Briain"
    assert nfc("Heddlu Gogledd Cymru") == "Heddlu Gogledd Cymru"
    assert hidden_character(nfc("O\u0301")) is None and hidden_character("O\u0301") is None
