"""Envelope encryption at rest: round trip, tamper, AAD binding, rewrap, KEK loading."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from keys.envelope import Envelope, blob_kek_id, rewrap
from keys.errors import EnvelopeRejected, KekUnavailable, KeysError
from keys.kek import KekSource, LocalKek, generate_kek_file, kek_from_env, kek_from_file

AAD = b"records:1f0c:v3"


@pytest.fixture
def kek() -> LocalKek:
    return LocalKek(os.urandom(32))


@pytest.fixture
def envelope(kek: LocalKek) -> Envelope:
    return Envelope(kek)


def test_seal_then_unseal_returns_the_plaintext(envelope: Envelope) -> None:
    """A sealed record opens with the same AAD to the same bytes."""
    plaintext = b'{"nominal": "N-1", "note": "risk to known adult"}'
    blob = envelope.seal(plaintext, AAD)
    assert envelope.unseal(blob, AAD) == plaintext
    assert plaintext not in blob


def test_empty_plaintext_round_trips(envelope: Envelope) -> None:
    """An empty body is sealed and opened like any other."""
    assert envelope.unseal(envelope.seal(b"", AAD), AAD) == b""


def test_each_seal_uses_a_fresh_data_key_and_nonce(envelope: Envelope) -> None:
    """Sealing the same plaintext twice gives unrelated blobs."""
    first, second = envelope.seal(b"same", AAD), envelope.seal(b"same", AAD)
    assert first != second
    assert first[-20:] != second[-20:]


def test_blob_starts_with_version_and_kek_id(envelope: Envelope, kek: LocalKek) -> None:
    """The documented header is there: version 1, then the kek_id."""
    blob = envelope.seal(b"x", AAD)
    assert blob[0] == 1
    assert blob_kek_id(blob) == kek.kek_id
    n = blob[1]
    m = int.from_bytes(blob[2 + n : 4 + n], "big")
    assert m == 60
    assert len(blob) == 4 + n + m + 12 + 1 + 16


def test_flipping_any_byte_is_refused(envelope: Envelope) -> None:
    """Every single-byte change anywhere in the blob makes unseal raise."""
    blob = envelope.seal(b"OFFICIAL-SENSITIVE case note", AAD)
    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        with pytest.raises((EnvelopeRejected, KekUnavailable)):
            envelope.unseal(bytes(tampered), AAD)


def test_truncated_or_extended_blob_is_refused(envelope: Envelope) -> None:
    """Cutting or appending bytes is refused, down to the empty blob."""
    blob = envelope.seal(b"payload", AAD)
    for cut in range(len(blob)):
        with pytest.raises(KeysError):
            envelope.unseal(blob[:cut], AAD)
    with pytest.raises(EnvelopeRejected):
        envelope.unseal(blob + b"\x00", AAD)


def test_wrong_aad_is_refused(envelope: Envelope) -> None:
    """A blob copied to another record (other AAD) does not open."""
    blob = envelope.seal(b"body", AAD)
    with pytest.raises(EnvelopeRejected):
        envelope.unseal(blob, b"records:1f0d:v3")
    with pytest.raises(EnvelopeRejected):
        envelope.unseal(blob, b"")


def test_unknown_version_is_refused(envelope: Envelope) -> None:
    """A blob claiming another format version is refused before any crypto."""
    blob = bytearray(envelope.seal(b"body", AAD))
    blob[0] = 2
    with pytest.raises(EnvelopeRejected, match="version"):
        envelope.unseal(bytes(blob), AAD)


def test_blob_under_unconfigured_kek_is_kek_unavailable(envelope: Envelope) -> None:
    """A blob sealed under a KEK this envelope does not hold says so."""
    other = Envelope(LocalKek(os.urandom(32))).seal(b"body", AAD)
    with pytest.raises(KekUnavailable):
        envelope.unseal(other, AAD)


def test_rewrap_moves_blob_to_new_kek_without_the_aad(kek: LocalKek) -> None:
    """rewrap() needs only the two KEKs; the new KEK opens the result, the old one no longer."""
    new = LocalKek(os.urandom(32))
    blob = Envelope(kek).seal(b"minutes of the level 2 meeting", AAD)
    moved = rewrap(blob, kek, new)
    assert blob_kek_id(moved) == new.kek_id
    assert moved.endswith(blob[-40:])
    assert Envelope(new).unseal(moved, AAD) == b"minutes of the level 2 meeting"
    with pytest.raises(KekUnavailable):
        Envelope(kek).unseal(moved, AAD)


def test_rewrap_with_the_wrong_old_kek_is_refused(kek: LocalKek) -> None:
    """Rewrapping needs the KEK the blob names; an impostor with the same id fails the tag."""
    blob = Envelope(kek).seal(b"x", AAD)
    with pytest.raises(KekUnavailable):
        rewrap(blob, LocalKek(os.urandom(32)), kek)
    impostor = LocalKek(os.urandom(32), kek_id=kek.kek_id)
    with pytest.raises(EnvelopeRejected):
        rewrap(blob, impostor, LocalKek(os.urandom(32)))


def test_envelope_opens_blobs_of_previous_keks_and_seals_under_current(kek: LocalKek) -> None:
    """Like MultiFernet: old blobs open during KEK rotation, new ones use the new KEK."""
    old_blob = Envelope(kek).seal(b"old", AAD)
    new = LocalKek(os.urandom(32))
    rotated = Envelope(new, previous=[kek])
    assert rotated.unseal(old_blob, AAD) == b"old"
    assert blob_kek_id(rotated.seal(b"new", AAD)) == new.kek_id
    assert blob_kek_id(rotated.rewrap(old_blob)) == new.kek_id
    fresh = rotated.seal(b"n", AAD)
    assert rotated.rewrap(fresh) == fresh


def test_local_kek_satisfies_the_protocol(kek: LocalKek) -> None:
    """LocalKek is a KekSource and never shows its key in repr."""
    assert isinstance(kek, KekSource)
    assert kek.kek_id.startswith("local:")
    assert "local:" in repr(kek)


def test_kek_from_env_reads_base64(monkeypatch: pytest.MonkeyPatch) -> None:
    """MAPPA_KEK holds 32 bytes in base64; the same key gives the same kek_id."""
    raw = os.urandom(32)
    monkeypatch.setenv("MAPPA_KEK", base64.b64encode(raw).decode())
    assert kek_from_env().kek_id == LocalKek(raw).kek_id


@pytest.mark.parametrize(
    "value",
    [
        "",  # unset
        "not base64!",  # garbage
        base64.b64encode(os.urandom(16)).decode(),  # AES-128 sized: too short
    ],
)
def test_kek_from_env_refuses_bad_values(value: str) -> None:
    """Missing, malformed or short KEKs are refused with kek_unavailable."""
    with pytest.raises(KekUnavailable):
        kek_from_env(environ={"MAPPA_KEK": value})


def test_kek_file_round_trip_and_permissions(tmp_path: Path) -> None:
    """generate_kek_file writes mode 0600; a group-readable KEK file is refused."""
    path = tmp_path / "kek"
    made = generate_kek_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert kek_from_file(path).kek_id == made.kek_id
    with pytest.raises(KekUnavailable):
        generate_kek_file(path)
    path.chmod(0o640)
    with pytest.raises(KekUnavailable, match="chmod 600"):
        kek_from_file(path)
    assert kek_from_file(path, check_permissions=False).kek_id == made.kek_id


def test_missing_kek_file_is_kek_unavailable(tmp_path: Path) -> None:
    """A KEK path that does not exist raises kek_unavailable, not OSError."""
    with pytest.raises(KekUnavailable):
        kek_from_file(tmp_path / "absent")
