"""The keys CLI: list, rotate, retire, jwks, rewrap, init-dev, init-blind-index; configuration
from args or env."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.flow.signed_push import PUSH_MAX_AGE
from keys import (
    BLIND_INDEX_FILE,
    FileKeyRepository,
    KekUnavailable,
    Purpose,
    generate_kek_file,
    kek_from_file,
    load_blind_index,
)
from keys.cli import MIN_OVERLAP, main, register
from keys.ring import utcnow


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MAPPA_KEYS_DIR and MAPPA_KEK_FILE pointing at a fresh development setup."""
    generate_kek_file(tmp_path / "kek")
    monkeypatch.setenv("MAPPA_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("MAPPA_KEK_FILE", str(tmp_path / "kek"))
    monkeypatch.delenv("MAPPA_KEK", raising=False)
    assert main(["keys", "init-dev", "--profile", "development"]) == 0
    return tmp_path


def test_register_mounts_keys_under_another_cli() -> None:
    """register(subparsers) adds 'keys' with its verbs to a host parser."""
    parser = argparse.ArgumentParser(prog="mappa-gateway")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["keys", "rotate", "token-signing", "--overlap-hours", "6"])
    assert args.purpose == "token-signing" and args.overlap_hours == 6 and callable(args.func)


def test_list_prints_every_key_without_key_material(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """keys list --json gives metadata only."""
    capsys.readouterr()
    assert main(["keys", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["keys"]
    assert len(listing) == 5
    assert all(set(row) == {
        "purpose", "kid", "alg", "use", "status", "created_at", "retire_after", "destroyed_at"
    } for row in listing)  # fmt: skip
    assert main(["keys", "list"]) == 0
    assert "token-signing" in capsys.readouterr().out


def test_rotate_with_overlap_then_retire(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rotate makes a new current key; retire ends the old one now."""
    repository = FileKeyRepository(env / "keys", kek_from_file(env / "kek"))
    old = repository.ring(Purpose.TOKEN_SIGNING).current().kid
    assert main(["keys", "rotate", "token-signing", "--overlap-hours", "2"]) == 0
    assert "2 more hours" in capsys.readouterr().out
    # "--": a kid is a thumbprint, and one in 64 begins with "-" (argparse would take it for
    # an option)
    assert main(["keys", "retire", "token-signing", "--", old]) == 0
    repository.reload()
    statuses = {i.kid: i.status.value for i in repository.ring(Purpose.TOKEN_SIGNING).infos()}
    assert statuses[old] == "retired" and sorted(statuses.values()) == ["current", "retired"]


def test_the_payload_signing_key_overlaps_the_push_window(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A push is signed when queued and may be delivered 7 days later: keys rotate refuses
    payload-signing an overlap shorter than that, writing nothing, and says how a compromised
    key is retired; its default is the window, and a longer overlap is taken. (The 24 hours
    every purpose had by default left pushes queued over a long weekend refused as
    bad_signature.) After a compromise, rotate then retire ends the old key at once."""
    repository = FileKeyRepository(env / "keys", kek_from_file(env / "kek"))
    old = repository.ring(Purpose.PAYLOAD_SIGNING).current().kid
    capsys.readouterr()
    for hours in ("24", "0", "167.9"):
        assert main(["keys", "rotate", "payload-signing", "--overlap-hours", hours]) == 2
        err = capsys.readouterr().err
        assert "at least 168 hours" in err and "keys retire payload-signing -- KID" in err
    repository.reload()
    assert [i.kid for i in repository.ring(Purpose.PAYLOAD_SIGNING).infos()] == [old]

    assert main(["keys", "rotate", "payload-signing"]) == 0
    assert "168 more hours" in capsys.readouterr().out
    repository.reload()
    [previous] = [i for i in repository.ring(Purpose.PAYLOAD_SIGNING).infos() if i.kid == old]
    assert previous.retire_after is not None
    assert previous.retire_after - utcnow() > PUSH_MAX_AGE - timedelta(minutes=1)
    assert main(["keys", "rotate", "payload-signing", "--overlap-hours", "200"]) == 0
    assert "200 more hours" in capsys.readouterr().out

    assert main(["keys", "retire", "payload-signing", "--", old]) == 0  # a compromise
    repository.reload()
    statuses = {i.kid: i.status.value for i in repository.ring(Purpose.PAYLOAD_SIGNING).infos()}
    assert statuses[old] == "retired"

    # other purposes keep their default of 24 hours, and may be rotated with none
    assert main(["keys", "rotate", "token-signing"]) == 0
    assert "24 more hours" in capsys.readouterr().out
    assert main(["keys", "rotate", "checkpoint-signing", "--overlap-hours", "0"]) == 0


def test_the_payload_signing_minimum_is_the_push_window() -> None:
    """keys does not import the gateway: its minimum is the gateway's PUSH_MAX_AGE, checked."""
    assert MIN_OVERLAP[Purpose.PAYLOAD_SIGNING] == PUSH_MAX_AGE
    assert set(MIN_OVERLAP) == {Purpose.PAYLOAD_SIGNING}


def test_jwks_prints_public_keys(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """keys jwks prints the published set."""
    capsys.readouterr()
    assert main(["keys", "jwks"]) == 0
    keys = json.loads(capsys.readouterr().out)["keys"]
    assert len(keys) == 4 and all("d" not in k for k in keys)


def test_rewrap_then_the_new_kek_opens_the_keys(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """keys rewrap --new-kek-file moves every key; the old KEK no longer opens them."""
    generate_kek_file(env / "kek2")
    assert main(["keys", "rewrap", "--new-kek-file", str(env / "kek2")]) == 0
    assert "rewrapped 6" in capsys.readouterr().out
    assert main(["keys", "list"]) == 2
    assert "kek_unavailable" in capsys.readouterr().err
    monkeypatch.setenv("MAPPA_KEK_FILE", str(env / "kek2"))
    assert main(["keys", "list"]) == 0


def test_rewrap_moves_the_blind_index_secret_too(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the documented KEK rotation (rewrap, then the new KEK file only) the blind-index
    secret opens under the new KEK and gives the same index: stored PNC indexes still match."""
    keys_dir = env / "keys"
    before = load_blind_index(keys_dir, kek_from_file(env / "kek"), create=True)
    generate_kek_file(env / "kek2")
    assert main(["keys", "rewrap", "--new-kek-file", str(env / "kek2")]) == 0
    assert "blind-index" in capsys.readouterr().out
    after = load_blind_index(keys_dir, kek_from_file(env / "kek2"))
    assert after.index("pnc", "2019/0123456A") == before.index("pnc", "2019/0123456A")
    with pytest.raises(KekUnavailable):
        load_blind_index(keys_dir, kek_from_file(env / "kek"))


def test_failed_rewrap_leaves_the_key_directory_as_it_was(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rewrap that cannot move everything (here a blind-index secret under another KEK)
    exits 1 and changes nothing: the old KEK still opens every key."""
    keys_dir = env / "keys"
    (keys_dir / BLIND_INDEX_FILE).unlink(missing_ok=True)
    generate_kek_file(env / "other")
    load_blind_index(keys_dir, kek_from_file(env / "other"), create=True)
    before = {p: p.read_bytes() for p in keys_dir.rglob("*.json")}
    generate_kek_file(env / "kek2")
    assert main(["keys", "rewrap", "--new-kek-file", str(env / "kek2")]) != 0
    assert "kek_unavailable" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in keys_dir.rglob("*.json")} == before
    assert main(["keys", "list"]) == 0


def test_init_blind_index_creates_it_once(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """keys init-blind-index makes the secret of a new installation and never replaces one."""
    path = env / "keys" / BLIND_INDEX_FILE
    path.unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["keys", "init-blind-index"]) == 0
    assert "created" in capsys.readouterr().out
    first = path.read_bytes()
    assert main(["keys", "init-blind-index"]) == 0
    assert "already" in capsys.readouterr().out
    assert path.read_bytes() == first


def test_init_dev_makes_the_blind_index_secret(env: Path) -> None:
    """Development keys come with their blind-index secret (the gateway never makes one later
    outside development)."""
    assert (env / "keys" / BLIND_INDEX_FILE).exists()
    load_blind_index(env / "keys", kek_from_file(env / "kek"), create=False)


def test_missing_configuration_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No key directory or no KEK: a usage error naming what is missing."""
    monkeypatch.delenv("MAPPA_KEYS_DIR", raising=False)
    monkeypatch.delenv("MAPPA_KEK_FILE", raising=False)
    monkeypatch.delenv("MAPPA_KEK", raising=False)
    assert main(["keys", "list"]) == 2
    assert "MAPPA_KEYS_DIR" in capsys.readouterr().err
    assert main(["keys", "list", "--keys-dir", str(tmp_path)]) == 2
    assert "MAPPA_KEK" in capsys.readouterr().err


def test_init_dev_refuses_production(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """init-dev with any profile but development exits 1 with profile_refused."""
    assert main(["keys", "init-dev", "--profile", "production"]) == 1
    assert "profile_refused" in capsys.readouterr().err


def test_a_kid_beginning_with_a_dash_is_a_kid_after_the_double_dash(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A thumbprint may begin with '-': after '--' it reaches the key ring (here: no such key,
    said as such), where before it argparse took it for an option and printed only usage."""
    with pytest.raises(SystemExit) as refused:
        main(["keys", "retire", "token-signing", "-AbC"])
    assert refused.value.code == 2  # argparse: "the following arguments are required: kid"
    capsys.readouterr()
    assert main(["keys", "retire", "token-signing", "--", "-AbC"]) != 0
    said = capsys.readouterr()
    assert "-AbC" in said.out + said.err
    assert "required: kid" not in said.err


def test_seal_metadata_upgrades_a_directory_written_before_metadata_seals(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """keys list refuses a key directory without metadata seals and names the command; keys
    seal-metadata seals each file once, listing the keys it trusted; then keys list works."""
    for path in (env / "keys").glob("*/*.json"):
        record = json.loads(path.read_text())
        del record["meta_seal"]
        path.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["keys", "list"]) == 1
    assert "keys seal-metadata" in capsys.readouterr().err
    assert main(["keys", "seal-metadata"]) == 0
    out = capsys.readouterr().out
    assert out.count("sealed ") == 5 and "check the keys above" in out
    assert main(["keys", "seal-metadata"]) == 0
    assert "already sealed" in capsys.readouterr().out
    assert main(["keys", "list"]) == 0
