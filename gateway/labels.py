"""Text an operator or an IG officer reads back: an agency's name, a certificate subject, an
officer's display name. It must show what it is and nothing else.

:func:`hidden_character` is the check at the door (onboarding, ``ig add-officer``). It finds the
first character of a kind that is not shown as itself, or that changes how the text around it is
shown:

* a control character (category Cc: C0, DEL, C1), which a terminal obeys (ESC, U+009B CSI) or
  which forges a line (LF, U+0085), and NUL, which PostgreSQL cannot store;
* a format character (Cf): the bidirectional controls (U+202A-U+202E embeddings and overrides,
  U+2066-U+2069 isolates, U+200E/U+200F/U+061C marks), which reorder what follows them (after
  U+202E, "ecilop" is shown as "police"), zero-width characters (U+200B-U+200D,
  U+2060, U+FEFF), which make two different names look alike, and tag characters;
* a line or paragraph separator (Zl U+2028, Zp U+2029);
* a private-use (Co) or unassigned (Cn) code point, shown as whatever a font makes of it;
* a lone surrogate (Cs), which no store can encode (Python gives one for a byte of an argument
  that is not UTF-8).

These are exactly the characters for which ``str.isprintable()`` is false, less the spaces
(Zs): that test, done in C, keeps the common case fast. Which code points are unassigned is the
Unicode version of this Python's ``unicodedata``.

:func:`visible` writes the same characters as escapes (``\\x1b``, ``\\u202e``, ``\\U000f0000``),
for text stored before the check refused them: the console and the ``agencies`` commands print
every stored label through it.

Names are NFC-normalised on the way in (:func:`nfc`), so that "Ó Briain" typed with a combining
accent and with a precomposed one are the same name, stored once one way.
"""

from __future__ import annotations

import unicodedata
from typing import Final

__all__ = ["hidden_character", "nfc", "visible"]

#: The categories refused, and how a refusal names each (never the text itself).
_REFUSED: Final = {
    "Cc": "a control character",
    "Cf": "a format character (a bidirectional control, a zero-width character)",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Cs": "a lone surrogate",
}


def _refused(char: str) -> str | None:
    return _REFUSED.get(unicodedata.category(char))


def hidden_character(text: str) -> str | None:
    """What is wrong with ``text`` as a label, e.g. ``"a control character, U+001B"``; None
    if nothing is. The text is never quoted, so the reason is safe to log and to print."""
    if text.isprintable():
        return None
    for char in text:
        rule = _refused(char)
        if rule is not None:
            return f"{rule}, U+{ord(char):04X}"
    return None  # only spaces other than U+0020, which are shown as spaces


def nfc(text: str) -> str:
    """``text`` in Unicode normalisation form C (composed), how names are stored."""
    return unicodedata.normalize("NFC", text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` with every character :func:`hidden_character` refuses written as an escape."""
    if text.isprintable():
        return text
    return "".join(_escape(c) if _refused(c) is not None else c for c in text)
