"""Re-reading a ring for an unknown kid: once, and rate-limited."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from keys import FileKeyRepository, Purpose, generate_kek_file


def test_unknown_kid_re_reads_once_per_interval(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A flood of made-up kids costs at most one directory read per interval."""
    kek = generate_kek_file(tmp_path / "kek.bin")
    repository = FileKeyRepository(
        tmp_path / "keys", kek, unknown_kid_reload_interval=dt.timedelta(seconds=60)
    )
    repository.ensure(Purpose.TOKEN_SIGNING)
    repository.ring(Purpose.TOKEN_SIGNING)
    loads = 0
    original = repository._load

    def counting(purpose: Purpose):  # type: ignore[no-untyped-def]
        nonlocal loads
        loads += 1
        return original(purpose)

    monkeypatch.setattr(repository, "_load", counting)
    for i in range(1000):
        repository.ring_knowing(Purpose.TOKEN_SIGNING, f"made-up-{i}")
    assert loads == 0  # loaded moments ago: within the interval nothing is re-read


def test_known_kid_never_re_reads(tmp_path: Path) -> None:
    """A kid the ring knows returns the cached ring as it is."""
    kek = generate_kek_file(tmp_path / "kek.bin")
    repository = FileKeyRepository(
        tmp_path / "keys", kek, unknown_kid_reload_interval=dt.timedelta(0)
    )
    repository.ensure(Purpose.TOKEN_SIGNING)
    ring = repository.ring(Purpose.TOKEN_SIGNING)
    kid = ring.current().kid
    assert repository.ring_knowing(Purpose.TOKEN_SIGNING, kid) is ring


def test_rotation_by_another_process_is_seen_through_an_unknown_kid(tmp_path: Path) -> None:
    """Another repository (the operator's CLI) rotates; this one finds the new kid at once."""
    kek = generate_kek_file(tmp_path / "kek.bin")
    ours = FileKeyRepository(tmp_path / "keys", kek, unknown_kid_reload_interval=dt.timedelta(0))
    ours.ensure(Purpose.TOKEN_SIGNING)
    ours.ring(Purpose.TOKEN_SIGNING)
    theirs = FileKeyRepository(tmp_path / "keys", kek)
    theirs.rotate(Purpose.TOKEN_SIGNING, dt.timedelta(hours=1))
    new_kid = theirs.ring(Purpose.TOKEN_SIGNING).current().kid
    time.sleep(0.001)
    assert new_kid in {i.kid for i in ours.ring_knowing(Purpose.TOKEN_SIGNING, new_kid).infos()}


def test_re_read_without_a_kid_sees_another_process_s_rotation_once_per_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ring_reread (the checkpoint verifier's, which has no kid to ask for) returns the cached
    ring within the interval, and reads the directory again once it has passed."""
    clock = [1000.0]
    monkeypatch.setattr("keys.repository.time", SimpleNamespace(monotonic=lambda: clock[0]))
    kek = generate_kek_file(tmp_path / "kek.bin")
    ours = FileKeyRepository(
        tmp_path / "keys",
        kek,
        refresh_interval=dt.timedelta(hours=1),
        unknown_kid_reload_interval=dt.timedelta(seconds=10),
    )
    ours.ensure(Purpose.CHECKPOINT_SIGNING)
    before = ours.ring(Purpose.CHECKPOINT_SIGNING)
    theirs = FileKeyRepository(tmp_path / "keys", kek)
    theirs.rotate(Purpose.CHECKPOINT_SIGNING, dt.timedelta(hours=1))
    new_kid = theirs.ring(Purpose.CHECKPOINT_SIGNING).current().kid
    clock[0] += 9.9
    assert ours.ring_reread(Purpose.CHECKPOINT_SIGNING) is before
    clock[0] += 0.1
    after = ours.ring_reread(Purpose.CHECKPOINT_SIGNING)
    assert after.knows(new_kid) and not before.knows(new_kid)
    assert ours.ring(Purpose.CHECKPOINT_SIGNING) is after  # and it is the cached ring from now
