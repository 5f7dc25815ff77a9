"""CaseSealer: one envelope per value, bound to its table, row and column; blind indexes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway import errors
from gateway.store.sealed import CaseSealer, canonical_json
from keys import Envelope, LocalKek, load_blind_index


@pytest.fixture
def sealer(tmp_path: Path) -> CaseSealer:
    kek = LocalKek(os.urandom(32))
    return CaseSealer(Envelope(kek), load_blind_index(tmp_path, kek, create=True))


def test_round_trip_and_no_plaintext_in_the_blob(sealer: CaseSealer) -> None:
    value = {"names": {"family_name": "Ravenscroft"}, "date_of_birth": "1979-04-17"}
    blob = sealer.seal("nominals", "n-1", "details_sealed", value)
    assert b"Ravenscroft" not in blob and b"1979" not in blob
    assert sealer.unseal("nominals", "n-1", "details_sealed", blob) == value
    # a fresh data key per value: the same value seals differently each time
    assert sealer.seal("nominals", "n-1", "details_sealed", value) != blob


@pytest.mark.parametrize(
    ("table", "row", "column"),
    [
        ("nominals", "n-2", "details_sealed"),  # moved to another row
        ("referrals", "n-1", "details_sealed"),  # moved to another table
        ("nominals", "n-1", "body_sealed"),  # moved to another column
    ],
)
def test_a_value_moved_elsewhere_does_not_open(
    sealer: CaseSealer, table: str, row: str, column: str
) -> None:
    blob = sealer.seal("nominals", "n-1", "details_sealed", {"a": 1})
    with pytest.raises(errors.CaseDataUnreadable) as caught:
        sealer.unseal(table, row, column, blob)
    assert caught.value.code == "case_data_unreadable"


def test_tampered_blob_does_not_open(sealer: CaseSealer) -> None:
    blob = bytearray(sealer.seal("minutes", "m-1", "body_sealed", {"a": 1}))
    blob[-1] ^= 1
    with pytest.raises(errors.CaseDataUnreadable):
        sealer.unseal("minutes", "m-1", "body_sealed", bytes(blob))


def test_blind_index_matches_normalised_identifiers(sealer: CaseSealer) -> None:
    assert sealer.index("pnc", "1999/0345678Q") == sealer.index("pnc", "1999/0345678q ")
    assert "0345678" not in sealer.index("pnc", "1999/0345678Q")


def test_canonical_json_is_stable() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"a": float("nan")})
