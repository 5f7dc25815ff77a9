"""Names an IG officer or an operator would be misled by, and names that must still be taken.

Each hostile name is a plausible label with one character that is not shown as itself
(`gateway.labels.hidden_character`): the tests of every place a label comes in (onboarding, the
subject DN, `ig add-officer`, the ``MAPPA-Officer`` header) run the whole table.
"""

from __future__ import annotations

import pytest

__all__ = ["FORMAT_CHARACTERS", "HOSTILE", "LEGITIMATE", "hostile_character"]

#: Category Cf: bidirectional controls, marks, zero-width characters, the BOM, a tag character.
FORMAT_CHARACTERS = {
    "lre": "\u202a",
    "rle": "\u202b",
    "pdf": "\u202c",
    "lro": "\u202d",
    "rlo": "\u202e",  # what follows is shown reversed: "\u202eecilop" reads "police"
    "lri": "\u2066",
    "rli": "\u2067",
    "fsi": "\u2068",
    "pdi": "\u2069",
    "lrm": "\u200e",
    "rlm": "\u200f",
    "alm": "\u061c",
    "zero-width-space": "\u200b",
    "zero-width-non-joiner": "\u200c",
    "zero-width-joiner": "\u200d",
    "word-joiner": "\u2060",
    "bom": "\ufeff",
    "soft-hyphen": "\u00ad",
    "tag-latin-a": "\U000e0041",
}

_OTHERS = {
    "esc": "\x1b",  # C0: a terminal obeys it
    "nul": "\x00",
    "newline": "\n",
    "del": "\x7f",
    "c1-csi": "\x9b",
    "c1-next-line": "\x85",
    "line-separator": "\u2028",  # Zl
    "paragraph-separator": "\u2029",  # Zp
    "private-use": "\ue000",  # Co, the BMP's private use area
    "private-use-plane-15": "\U000f0000",
    "unassigned": "\u0378",  # Cn
    "noncharacter": "\uffff",  # Cn too
    "lone-surrogate": "\udcff",  # Cs: what Python makes of a byte of argv that is not UTF-8
}

#: (id, name): the character in the middle of a name, where it would reorder or disguise it.
HOSTILE = [
    pytest.param(f"Police{char}Agency", id=name)
    for name, char in {**FORMAT_CHARACTERS, **_OTHERS}.items()
]

#: Real names in the scripts agencies and officers write them in: every one is taken as is.
LEGITIMATE = [
    pytest.param("Heddlu Gogledd Cymru", id="welsh"),
    pytest.param("Gwasanaeth Prawf Cymru, Gŵyr", id="welsh-circumflex"),
    pytest.param("Seán Ó Briain", id="irish"),
    pytest.param("Siobhán Ní Mhaoláin", id="irish-fada"),
    pytest.param("Полиция Москвы", id="cyrillic"),
    pytest.param("شرطة دبي", id="arabic"),
    pytest.param("משטרת ישראל", id="hebrew"),
    pytest.param("警視庁", id="cjk"),
    pytest.param("서울지방경찰청", id="hangul"),
    pytest.param("Avon & Somerset Police (MAPPA) 🚓", id="emoji"),
    pytest.param("Ó\u00a0Briain", id="no-break-space"),  # a space, shown as one
]


def hostile_character(name: str) -> str:
    """The one character of a hostile name that is not in "PoliceAgency"."""
    (char,) = name.removeprefix("Police").removesuffix("Agency")
    return char
