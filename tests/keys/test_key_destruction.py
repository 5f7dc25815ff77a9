"""keys destroy: a retired key's private half is destroyed; its public half and metadata stay,
sealed; a key still in use, or unknown, is refused with nothing written."""

from __future__ import annotations

import base64
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from keys import (
    Envelope,
    FileKeyRepository,
    KekUnavailable,
    KeyInvalid,
    KeyRetired,
    KeyStoreError,
    KeyUnknown,
    LocalKek,
    Purpose,
    blob_kek_id,
    generate_development_keys,
    generate_kek_file,
)
from keys.cli import main
from tests.keys.keys_support import T0

LATER = T0 + timedelta(hours=1)


def _snapshot(repository: FileKeyRepository) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(repository.directory.glob("*/*.json"))}


def _path(repository: FileKeyRepository, purpose: Purpose, kid: str) -> Path:
    return repository.directory / purpose.value / f"{kid}.json"


def _retire_current(repository: FileKeyRepository, purpose: Purpose) -> list[str]:
    """Rotate with no overlap: the purpose's current keys (one per algorithm) are retired."""
    ring = repository.ring(purpose)
    old = [key.kid for key in ring.usable(now=T0)]
    repository.rotate(purpose, timedelta(0), now=T0)
    return old


def _private_values(repository: FileKeyRepository, purpose: Purpose, kid: str) -> list[str]:
    """The private JWK members of a key (d, and RSA's primes and CRT values), to search for."""
    held = repository.ring(purpose).held(kid)
    assert held is not None and held.jose_key.is_private
    private = held.jose_key.as_dict(private=True)
    public = held.jose_key.as_dict(private=False)
    return [str(v) for k, v in private.items() if k not in public]


@pytest.mark.parametrize("purpose", list(Purpose))
def test_a_retired_key_keeps_only_its_public_half(
    repository: FileKeyRepository, kek: LocalKek, purpose: Purpose
) -> None:
    """Every purpose (EC, RSA and Ed25519 keys): after destroy the file holds no sealed key and
    none of the private values; a fresh process with the KEK lists the key as destroyed, refuses
    it as retired, never publishes it, and still has its public half (for an Ed25519 key, the
    raw key that checks the checkpoints it signed)."""
    old = _retire_current(repository, purpose)
    secrets = {kid: _private_values(repository, purpose, kid) for kid in old}
    raw_public = {
        kid: repository.ring(purpose).public_raw(kid, retired=True)
        for kid in old
        if purpose is Purpose.CHECKPOINT_SIGNING
    }
    public = {kid: dict(repository.ring(purpose).held(kid).public.jwk) for kid in old}  # type: ignore[union-attr]

    destroyed = repository.destroy(purpose, old, now=LATER)

    assert sorted(info.kid for info in destroyed) == sorted(old)
    assert all(info.destroyed_at == LATER for info in destroyed)
    for kid in old:
        text = _path(repository, purpose, kid).read_text()
        record = json.loads(text)
        assert "sealed" not in record
        assert record["status"] == "retired" and record["destroyed_at"] == LATER.isoformat()
        assert "d" not in record["public"]
        assert all(secret not in text for secret in secrets[kid])
    fresh = FileKeyRepository(repository.directory, kek)
    ring = fresh.ring(purpose)
    for kid in old:
        held = ring.held(kid)
        assert held is not None and not held.jose_key.is_private
        assert dict(held.public.jwk) == public[kid]
        assert held.info.destroyed_at == LATER
        with pytest.raises(KeyRetired):
            ring.get(kid, now=LATER)
        assert ring.usable_key(kid, now=LATER) is None
        assert kid not in {k["kid"] for k in fresh.jwks(now=LATER)["keys"]}
        assert {info.kid: info.as_dict(LATER)["destroyed_at"] for info in fresh.list()}[
            kid
        ] == LATER.isoformat()
    for kid, raw in raw_public.items():
        assert ring.public_raw(kid, retired=True) == raw
    # the new current keys are untouched and still work
    assert {k.kid for k in ring.usable(now=LATER)}.isdisjoint(old)
    assert len(ring.usable(now=LATER)) == len(old)


def test_a_running_process_forgets_the_private_half_when_it_rereads_the_ring(
    repository: FileKeyRepository, kek: LocalKek
) -> None:
    """Another replica, which had opened the key, holds only its public half after a re-read."""
    replica = FileKeyRepository(repository.directory, kek)
    (old,) = _retire_current(repository, Purpose.TOKEN_SIGNING)
    held = replica.ring(Purpose.TOKEN_SIGNING).held(old)
    assert held is not None and held.jose_key.is_private
    repository.destroy(Purpose.TOKEN_SIGNING, [old], now=LATER)
    replica.reload()
    held = replica.ring(Purpose.TOKEN_SIGNING).held(old)
    assert held is not None and not held.jose_key.is_private
    assert not any(
        key.is_private
        for (purpose, kid, _, _), key in replica._parsed.items()
        if (purpose, kid) == (Purpose.TOKEN_SIGNING, old)
    )


def test_a_key_in_use_or_unknown_is_refused_and_nothing_written(
    repository: FileKeyRepository,
) -> None:
    """A current key, a previous key within its overlap, an unknown kid: refused, and a list
    naming a retired key beside one of them destroys nothing (all or nothing)."""
    (retired,) = _retire_current(repository, Purpose.TOKEN_SIGNING)
    (previous,) = [k.kid for k in repository.ring(Purpose.TOKEN_SIGNING).usable(now=T0)]
    repository.rotate(Purpose.TOKEN_SIGNING, timedelta(hours=24), now=T0)
    current = repository.ring(Purpose.TOKEN_SIGNING).current(now=T0).kid
    before = _snapshot(repository)
    for kid, error in ((current, KeyInvalid), (previous, KeyInvalid), ("x" * 43, KeyUnknown)):
        with pytest.raises(error):
            repository.destroy(Purpose.TOKEN_SIGNING, [retired, kid], now=LATER)
        assert _snapshot(repository) == before
    # a kid of another purpose is unknown to this one
    other = repository.ring(Purpose.PAYLOAD_SIGNING).current(now=T0).kid
    with pytest.raises(KeyUnknown):
        repository.destroy(Purpose.TOKEN_SIGNING, [other], now=LATER)
    assert _snapshot(repository) == before
    # once its overlap is over, the previous key is retired and may be destroyed
    after_overlap = T0 + timedelta(hours=25)
    done = repository.destroy(Purpose.TOKEN_SIGNING, [previous], now=after_overlap)
    assert [(i.kid, i.status.value) for i in done] == [(previous, "retired")]


def test_every_retired_key_at_once_and_again_changes_nothing(
    repository: FileKeyRepository,
) -> None:
    """With no kids: every key retired at that moment (marked so, or past its overlap), none
    other; run again, nothing is rewritten."""
    (marked,) = _retire_current(repository, Purpose.PAYLOAD_SIGNING)
    (lapsed,) = [k.kid for k in repository.ring(Purpose.PAYLOAD_SIGNING).usable(now=T0)]
    repository.rotate(Purpose.PAYLOAD_SIGNING, timedelta(hours=168), now=T0)
    (in_overlap,) = [
        k.kid for k in repository.ring(Purpose.PAYLOAD_SIGNING).usable(now=T0) if k.kid != lapsed
    ]
    repository.rotate(Purpose.PAYLOAD_SIGNING, timedelta(hours=200), now=T0 + timedelta(hours=1))
    moment = T0 + timedelta(hours=170)  # lapsed's overlap is over, in_overlap's is not
    done = repository.destroy(Purpose.PAYLOAD_SIGNING, now=moment)
    assert sorted(i.kid for i in done) == sorted([marked, lapsed])
    ring = repository.ring(Purpose.PAYLOAD_SIGNING)
    assert ring.held(in_overlap).info.destroyed_at is None  # type: ignore[union-attr]
    assert ring.usable_key(in_overlap, now=moment) is not None
    before = _snapshot(repository)
    assert repository.destroy(Purpose.PAYLOAD_SIGNING, now=moment) == []
    assert repository.destroy(Purpose.PAYLOAD_SIGNING, [marked], now=moment) == []
    assert _snapshot(repository) == before


def _destroyed_file(repository: FileKeyRepository) -> tuple[Path, dict[str, object]]:
    (old,) = _retire_current(repository, Purpose.TOKEN_SIGNING)
    repository.destroy(Purpose.TOKEN_SIGNING, [old], now=LATER)
    path = _path(repository, Purpose.TOKEN_SIGNING, old)
    return path, json.loads(path.read_text())


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda r, other: r.update(public=other), id="public-half-swapped"),
        pytest.param(lambda r, other: r.pop("destroyed_at"), id="destroyed_at-removed"),
        pytest.param(lambda r, other: r.update(status="current"), id="made-current"),
        pytest.param(lambda r, other: r.update(sealed=r["meta_seal"]), id="sealed-key-added"),
    ],
)
def test_an_edited_destroyed_key_file_is_refused(
    repository: FileKeyRepository, kek: LocalKek, edit: object
) -> None:
    """The public half and destroyed_at are sealed with the metadata: another key's public half
    put in, the mark taken off, the key marked current, or a sealed key put back beside the
    mark: the ring is refused, as for any edited file (key_store_error; key_invalid for a
    destroyed key marked current, a contradiction caught before the seal is checked)."""
    path, record = _destroyed_file(repository)
    other = {
        k: v
        for k, v in repository.ring(Purpose.TOKEN_SIGNING).current(now=LATER).public.jwk.items()
        if k not in ("kid", "use", "alg")
    }
    edit(record, other)  # type: ignore[operator]
    path.write_text(json.dumps(record))
    with pytest.raises((KeyStoreError, KeyInvalid)):
        FileKeyRepository(repository.directory, kek).ring(Purpose.TOKEN_SIGNING)


def test_rewrap_and_reseal_move_a_destroyed_key_too(
    repository: FileKeyRepository, kek: LocalKek
) -> None:
    """keys rewrap moves a destroyed key's metadata seal to the new KEK (it has no private key
    to move), and the directory reads back under the new KEK alone; keys seal-metadata
    --reseal refuses it (a public half proves nothing about the KEK)."""
    path, _ = _destroyed_file(repository)
    kid = path.stem
    new_kek = LocalKek(os.urandom(32))
    assert repository.rewrap(new_kek) == len(_snapshot(repository)) + 1  # and the blind index
    record = json.loads(path.read_text())
    assert blob_kek_id(base64.urlsafe_b64decode(record["meta_seal"])) == new_kek.kek_id
    moved = FileKeyRepository(repository.directory, Envelope(new_kek))
    assert moved.ring(Purpose.TOKEN_SIGNING).held(kid).info.destroyed_at == LATER  # type: ignore[union-attr]
    with pytest.raises(KekUnavailable):  # the old KEK opens nothing any more
        FileKeyRepository(repository.directory, kek).ring(Purpose.TOKEN_SIGNING)
    # seal-metadata never seals a destroyed key's file: only keys destroy does
    before = _snapshot(repository)
    with pytest.raises(KeyStoreError, match="only keys destroy seals that"):
        moved.seal_metadata(reseal=[kid])
    assert _snapshot(repository) == before
    assert FileKeyRepository(repository.directory, new_kek).ring(Purpose.TOKEN_SIGNING).knows(kid)
    # rotation goes on around a destroyed key
    moved.rotate(Purpose.TOKEN_SIGNING, timedelta(hours=1))
    assert json.loads(path.read_text())["destroyed_at"] == LATER.isoformat()


def test_keys_destroy_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """keys destroy PURPOSE -- KID, and --retired; a key in use exits 1 with its code and
    nothing written; bad usage exits 2; keys list shows the destroyed key."""
    kek = generate_kek_file(tmp_path / "kek")
    repository = generate_development_keys(tmp_path / "keys", kek, "development", now=T0)
    monkeypatch.setenv("MAPPA_KEYS_DIR", str(repository.directory))
    monkeypatch.setenv("MAPPA_KEK_FILE", str(tmp_path / "kek"))
    monkeypatch.delenv("MAPPA_KEK", raising=False)
    (old,) = _retire_current(repository, Purpose.TOKEN_SIGNING)
    current = repository.ring(Purpose.TOKEN_SIGNING).current().kid
    before = _snapshot(repository)

    assert main(["keys", "destroy", "token-signing", "--", current]) == 1
    assert "key_invalid" in capsys.readouterr().err
    assert _snapshot(repository) == before
    for usage in (
        ["keys", "destroy"],
        ["keys", "destroy", "token-signing"],
        ["keys", "destroy", "--retired", "token-signing", "--", old],
    ):
        assert main(usage) == 2
    assert _snapshot(repository) == before
    capsys.readouterr()

    assert main(["keys", "destroy", "token-signing", "--", old]) == 0
    assert f"token-signing key {old}" in capsys.readouterr().out
    (checkpoint,) = _retire_current(repository, Purpose.CHECKPOINT_SIGNING)
    assert main(["keys", "destroy", "--retired"]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint-signing key {checkpoint}" in out and old not in out
    assert main(["keys", "destroy", "--retired"]) == 0
    assert "0 private half(s) destroyed: none retired, or all done" in capsys.readouterr().out
    assert main(["keys", "list"]) == 0
    listed = {line.split()[1]: line.split()[3] for line in capsys.readouterr().out.splitlines()[1:]}
    assert listed[old] == listed[checkpoint] == "destroyed"
    assert listed[current] == "current"


def test_seal_metadata_never_seals_a_planted_destroyed_key(
    repository: FileKeyRepository, kek: LocalKek
) -> None:
    """Someone who can write to the key directory but holds no KEK plants a checkpoint key of
    their own as destroyed, with no metadata seal (whose absence the refusal tells the operator
    to mend with keys seal-metadata): the ring is refused, and seal-metadata refuses to seal it,
    writing nothing, so the planted public half is never trusted for what it signs."""
    from joserfc.jwk import OKPKey

    planted = OKPKey.generate_key("Ed25519")
    kid = planted.thumbprint()
    public = {k: v for k, v in planted.as_dict(private=False).items() if k != "kid"}
    record = {
        "format": "mappa-key/v1",
        "purpose": "checkpoint-signing",
        "kid": kid,
        "alg": "Ed25519",
        "use": "sig",
        "status": "retired",
        "created_at": T0.isoformat(),
        "retire_after": T0.isoformat(),
        "destroyed_at": LATER.isoformat(),
        "public": public,
    }
    path = _path(repository, Purpose.CHECKPOINT_SIGNING, kid)
    path.write_text(json.dumps(record))
    fresh = FileKeyRepository(repository.directory, kek)
    with pytest.raises(KeyStoreError, match="seal-metadata"):
        fresh.ring(Purpose.CHECKPOINT_SIGNING)
    before = _snapshot(repository)
    for reseal in ((), (kid,)):
        with pytest.raises(KeyStoreError, match="only keys destroy seals that"):
            fresh.seal_metadata(reseal=reseal)
        assert _snapshot(repository) == before
    with pytest.raises(KeyStoreError):
        fresh.ring(Purpose.CHECKPOINT_SIGNING)


def test_retiring_a_destroyed_key_changes_nothing(repository: FileKeyRepository) -> None:
    """keys retire of a key destroyed already: its file as it was, its metadata returned."""
    path, _ = _destroyed_file(repository)
    before = path.read_bytes()
    info = repository.retire(Purpose.TOKEN_SIGNING, path.stem, now=LATER + timedelta(days=1))
    assert info.destroyed_at == LATER and path.read_bytes() == before


def test_a_key_file_changed_since_it_was_read_is_not_destroyed(
    repository: FileKeyRepository, kek: LocalKek
) -> None:
    """The file is read again, under the lock, and must still be the one the ring was read
    from (its seal checked): one retired anew meanwhile is left as it is."""
    from keys._keyrecord import destroy_change

    (old,) = _retire_current(repository, Purpose.TOKEN_SIGNING)
    held = repository.ring(Purpose.TOKEN_SIGNING).held(old)
    assert held is not None
    repository.retire(Purpose.TOKEN_SIGNING, old, now=LATER)  # its retire_after moves
    with pytest.raises(KeyStoreError, match="changed since it was read"):
        destroy_change(Envelope(kek), repository.directory, held, LATER)


def test_two_different_keks_of_one_id_are_refused(tmp_path: Path) -> None:
    """A blob names its KEK by id alone: a previous KEK with the current one's id but another
    key (a new HSM or Vault with the same key names) is refused, since it would stand for the
    new one; the same key listed twice is one KEK."""
    from keys.kek_config import KekConfig, open_envelope

    old_file = tmp_path / "old-kek"
    old = generate_kek_file(old_file)
    config = KekConfig(file=tmp_path / "unused", previous_files=(old_file,))
    impostor = LocalKek(os.urandom(32), kek_id=old.kek_id)
    with pytest.raises(KekUnavailable, match="two different KEKs have the id"):
        open_envelope(config, impostor)
    twin = LocalKek(base64.b64decode(old_file.read_text().strip()), kek_id=old.kek_id)
    envelope = open_envelope(config, twin)
    assert envelope.unseal(Envelope(old).seal(b"x", b"aad"), b"aad") == b"x"
