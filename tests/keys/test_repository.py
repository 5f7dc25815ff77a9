"""The file key repository: sealed, 0600, atomic files; caching; development-only generation."""

from __future__ import annotations

import base64
import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from keys import (
    Envelope,
    FileKeyRepository,
    KekUnavailable,
    KeyInvalid,
    KeysError,
    KeyStoreError,
    LocalKek,
    ProfileRefused,
    Purpose,
    blob_kek_id,
    generate_development_keys,
)
from keys._keyfiles import key_aad, meta_aad, seal_meta
from tests.keys.keys_support import T0


def _files(directory: Path) -> list[Path]:
    """Key files under a repository directory, or under one purpose folder."""
    pattern = "*.json" if directory.name in {p.value for p in Purpose} else "*/*.json"
    return sorted(directory.glob(pattern))


def test_key_files_are_private_and_hold_no_clear_key(
    repository: FileKeyRepository, kek: LocalKek
) -> None:
    """Directories 0700, files 0600, and the private JWK appears only sealed."""
    files = _files(repository.directory)
    assert len(files) == 5
    assert repository.directory.stat().st_mode & 0o777 == 0o700
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.parent.stat().st_mode & 0o777 == 0o700
        record = json.loads(path.read_text())
        assert record["profile"] == "development"  # development keys say so (sealed)
        assert set(record) == {
            "format", "purpose", "kid", "alg", "use", "status", "created_at", "retire_after",
            "sealed", "meta_seal", "profile",
        }  # fmt: skip
        assert path.name == f"{record['kid']}.json"
        sealed = base64.urlsafe_b64decode(record["sealed"])
        assert blob_kek_id(sealed) == kek.kek_id
        assert b'"d"' not in sealed


def test_no_temporary_files_are_left_behind(repository: FileKeyRepository) -> None:
    """Atomic writes rename their temp file into place."""
    repository.rotate(Purpose.TOKEN_SIGNING, timedelta(hours=1), now=T0)
    leftovers = [p for p in repository.directory.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_generate_development_keys_refuses_other_profiles(tmp_path: Path, kek: LocalKek) -> None:
    """Development keys are never generated for production or an unknown profile."""
    for profile in ("production", "staging", "Development", ""):
        with pytest.raises(ProfileRefused):
            generate_development_keys(tmp_path / profile, kek, profile)
    assert not any(tmp_path.iterdir())


def test_generate_development_keys_is_idempotent(repository: FileKeyRepository) -> None:
    """Running it again keeps the existing keys."""
    before = {i.kid for i in repository.list()}
    again = generate_development_keys(repository.directory, repository._envelope, "development")
    assert {i.kid for i in again.list()} == before


def test_wrong_kek_cannot_open_the_repository(repository: FileKeyRepository) -> None:
    """Opening the directory with another KEK fails with kek_unavailable."""
    other = FileKeyRepository(repository.directory, LocalKek(os.urandom(32)))
    with pytest.raises(KekUnavailable):
        other.ring(Purpose.TOKEN_SIGNING)


def test_sealed_key_moved_to_another_kid_or_purpose_does_not_open(
    repository: FileKeyRepository,
) -> None:
    """The kid, purpose and alg are the AAD: swapping sealed blobs between files is refused."""
    token_file = _files(repository.directory / "token-signing")[0]
    payload_file = _files(repository.directory / "payload-signing")[0]
    token = json.loads(token_file.read_text())
    payload = json.loads(payload_file.read_text())
    payload["sealed"] = token["sealed"]
    payload_file.write_text(json.dumps(payload))
    fresh = FileKeyRepository(repository.directory, repository._envelope)
    with pytest.raises(KeysError, match=r"envelope|aes-gcm"):
        fresh.ring(Purpose.PAYLOAD_SIGNING)


@pytest.mark.parametrize(
    ("purpose", "alg", "use"),
    [
        (Purpose.PAYLOAD_SIGNING, "ES256", "sig"),
        (Purpose.PAYLOAD_ENCRYPTION, "ECDH-ES+A256KW", "enc"),
    ],
)
def test_running_process_refuses_a_cached_key_copied_into_another_purpose(
    repository: FileKeyRepository, purpose: Purpose, alg: str, use: str
) -> None:
    """A token-signing key file copied into another purpose's folder, its purpose (and alg)
    edited and its sealed blob untouched, is refused by a process that has already parsed the
    key, as by a fresh one: the parsed-key cache never serves a key under a purpose or alg its
    envelope was not opened for (ES256 and ECDH-ES+A256KW are both P-256)."""
    running = FileKeyRepository(repository.directory, repository._envelope)
    kid = running.ring(Purpose.TOKEN_SIGNING).current(now=T0).kid
    record = json.loads((repository.directory / "token-signing" / f"{kid}.json").read_text())
    record.update({"purpose": purpose.value, "alg": alg, "use": use})
    # The metadata is resealed here (which needs the KEK) so that only the private key's own
    # associated data stands in the way: the metadata seal is tested on its own below.
    record["meta_seal"] = seal_meta(repository._envelope, record)
    (repository.directory / purpose.value / f"{kid}.json").write_text(json.dumps(record))
    running.reload()
    with pytest.raises(KeysError, match=r"envelope|aes-gcm"):
        running.ring(purpose)
    with pytest.raises(KeysError, match=r"envelope|aes-gcm"):
        FileKeyRepository(repository.directory, repository._envelope).ring(purpose)
    assert running.ring(Purpose.TOKEN_SIGNING).usable_key(kid, now=T0) is not None


def test_running_process_refuses_a_changed_blob_of_a_cached_key(
    repository: FileKeyRepository,
) -> None:
    """A cached key whose file now holds another sealed blob is unsealed again (and here
    refused: the blob is another key's), not served from the cache by its kid."""
    running = FileKeyRepository(repository.directory, repository._envelope)
    kid = running.ring(Purpose.TOKEN_SIGNING).current(now=T0).kid
    path = repository.directory / "token-signing" / f"{kid}.json"
    other = json.loads(_files(repository.directory / "payload-signing")[0].read_text())
    record = json.loads(path.read_text())
    record["sealed"] = other["sealed"]
    path.write_text(json.dumps(record))
    running.reload()
    with pytest.raises(KeysError, match=r"envelope|aes-gcm"):
        running.ring(Purpose.TOKEN_SIGNING)


def test_key_file_whose_key_does_not_match_its_kid_is_refused(
    repository: FileKeyRepository,
) -> None:
    """Renaming a key file (and its kid) to another thumbprint is caught on load."""
    folder = repository.directory / "token-signing"
    path = _files(folder)[0]
    record = json.loads(path.read_text())
    fake_kid = "A" * 43
    record["kid"] = fake_kid
    (folder / f"{fake_kid}.json").write_text(json.dumps(record))
    path.unlink()
    fresh = FileKeyRepository(repository.directory, repository._envelope)
    with pytest.raises(KeysError):
        fresh.ring(Purpose.TOKEN_SIGNING)


def test_corrupt_key_file_is_a_key_store_error(repository: FileKeyRepository) -> None:
    """Garbage in a key file gives key_store_error, not a traceback from json."""
    path = _files(repository.directory / "payload-signing")[0]
    path.write_text("{not json")
    fresh = FileKeyRepository(repository.directory, repository._envelope)
    with pytest.raises(KeyStoreError):
        fresh.ring(Purpose.PAYLOAD_SIGNING)


def test_symlinked_key_file_is_refused(repository: FileKeyRepository, tmp_path: Path) -> None:
    """A key file replaced by a symlink is not followed."""
    path = _files(repository.directory / "payload-signing")[0]
    target = tmp_path / "elsewhere.json"
    shutil.copy(path, target)
    path.unlink()
    path.symlink_to(target)
    fresh = FileKeyRepository(repository.directory, repository._envelope)
    with pytest.raises(KeyStoreError):
        fresh.ring(Purpose.PAYLOAD_SIGNING)


@pytest.fixture
def unseals(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The associated data of every Envelope.unseal call of the test."""
    return _count_unseals(monkeypatch)


def _count_unseals(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The associated data of every Envelope.unseal call from now on."""
    calls: list[bytes] = []
    original = Envelope.unseal

    def counting(self: Envelope, blob: bytes, aad: bytes) -> bytes:
        calls.append(aad)
        return original(self, blob, aad)

    monkeypatch.setattr(Envelope, "unseal", counting)
    return calls


def test_rings_are_cached_and_keys_unsealed_once(
    repository: FileKeyRepository, unseals: list[bytes]
) -> None:
    """Repeated ring() calls return the same object; a reload does not unseal known keys (the
    private key and the metadata seal are each opened once)."""
    fresh = FileKeyRepository(repository.directory, repository._envelope)
    first = fresh.ring(Purpose.TOKEN_SIGNING)
    assert fresh.ring(Purpose.TOKEN_SIGNING) is first
    (path,) = _files(repository.directory / "token-signing")
    record = json.loads(path.read_text())
    assert sorted(unseals) == sorted(
        [key_aad(Purpose.TOKEN_SIGNING, record["kid"], "ES256"), meta_aad(record)]
    )
    fresh.reload()
    assert fresh.ring(Purpose.TOKEN_SIGNING) is not first
    assert len(unseals) == 2


def test_cached_keys_are_not_unsealed_again_through_rotations_and_reloads(
    repository: FileKeyRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache still works: the rotating process unseals nothing (it made the new key and the
    new metadata seals; the old key's blob is unchanged); a replica unseals the new key and the
    two changed metadata seals once, then never again."""
    running = FileKeyRepository(repository.directory, repository._envelope)
    replica = FileKeyRepository(repository.directory, repository._envelope)
    running.ring(Purpose.TOKEN_SIGNING)
    replica.ring(Purpose.TOKEN_SIGNING)
    calls = _count_unseals(monkeypatch)
    (created,) = running.rotate(Purpose.TOKEN_SIGNING, timedelta(hours=1), now=T0)
    running.reload()
    assert running.ring(Purpose.TOKEN_SIGNING).usable_key(created.kid, now=T0) is not None
    assert calls == []
    for _ in range(3):
        replica.reload()
        assert len(replica.ring(Purpose.TOKEN_SIGNING).usable(now=T0)) == 2
    records = [json.loads(p.read_text()) for p in _files(repository.directory / "token-signing")]
    assert sorted(calls) == sorted(
        [key_aad(Purpose.TOKEN_SIGNING, created.kid, "ES256")] + [meta_aad(r) for r in records]
    )


def test_another_replica_sees_a_rotation_after_refresh(repository: FileKeyRepository) -> None:
    """Two repositories on one directory: the second sees the first's rotation on refresh."""
    replica = FileKeyRepository(
        repository.directory, repository._envelope, refresh_interval=timedelta(0)
    )
    (created,) = repository.rotate(Purpose.TOKEN_SIGNING, timedelta(hours=1), now=T0)
    assert replica.ring(Purpose.TOKEN_SIGNING).current(now=T0).kid == created.kid


def test_rewrap_moves_every_key_to_the_new_kek(repository: FileKeyRepository) -> None:
    """After rewrap the old KEK no longer opens the keys and the new one does; rerun is a no-op."""
    before = {i.kid for i in repository.list()}
    new = LocalKek(os.urandom(32))
    assert repository.rewrap(new) == 6  # the five keys and the blind-index secret
    assert repository.rewrap(new) == 0
    assert {i.kid for i in FileKeyRepository(repository.directory, new).list()} == before
    with pytest.raises(KekUnavailable):
        FileKeyRepository(repository.directory, LocalKek(os.urandom(32))).list()


def test_a_running_replica_keeps_its_parsed_keys_across_a_rewrap(
    repository: FileKeyRepository,
) -> None:
    """A rewrap changes only each blob's header (the wrapped data key), not the body the cache
    is keyed by: a replica still on the old KEK keeps the keys it has parsed until it is
    restarted with the new one, while a fresh process on the old KEK opens nothing."""
    old_envelope = repository._envelope
    replica = FileKeyRepository(repository.directory, old_envelope)
    before = {i.kid for p in Purpose for i in replica.ring(p).infos()}
    repository.rewrap(LocalKek(os.urandom(32)))
    replica.reload()
    assert {i.kid for p in Purpose for i in replica.ring(p).infos()} == before
    with pytest.raises(KekUnavailable):
        FileKeyRepository(repository.directory, old_envelope).list()


def test_negative_overlap_is_refused(repository: FileKeyRepository) -> None:
    """An overlap below zero would retire a key before it was replaced."""
    with pytest.raises(KeyInvalid):
        repository.rotate(Purpose.TOKEN_SIGNING, timedelta(hours=-1), now=T0)


def test_naive_datetimes_are_refused(repository: FileKeyRepository) -> None:
    """The injected clock must be timezone-aware."""
    with pytest.raises(KeyInvalid):
        repository.rotate(Purpose.TOKEN_SIGNING, timedelta(hours=1), now=T0.replace(tzinfo=None))
