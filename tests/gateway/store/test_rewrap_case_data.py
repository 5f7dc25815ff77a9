"""A KEK rotation as keys/README.md tells it ("Rotating the KEK") keeps every stored value
readable: keys rewrap, the previous KEK kept for reading, db rewrap-case-data, the previous KEK
removed and destroyed; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import LargeBinary, select

from adapters.client import GatewayClient
from gateway.cli import main as gateway_main
from gateway.settings import Settings, get_settings
from gateway.store.models import Base
from gateway.store.rewrap import sealed_columns
from keys import blob_kek_id, generate_kek_file, kek_from_file, rewrap
from keys.cli import main as keys_main
from tests.gateway.cases.scenario import POLICE, onboard_barnet, whole_case
from tests.gateway.cases.support import ISSUER, Agent, World, open_world, settings_for

#: The sealed values of a table with an ``id`` column are bound to it (their AAD names it).
_ROW_ID = "id"


def test_every_sealed_column_of_the_models_is_rewrapped() -> None:
    """db rewrap-case-data walks every ``*_sealed`` column, and no binary column holds a sealed
    value under another name (it would be missed)."""
    named = {
        (table.name, column.name)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if column.name.endswith("_sealed")
    }
    binary = {
        (table.name, column.name)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, LargeBinary)
    }
    covered = {(table.name, column.name) for table, column in sealed_columns()}
    assert covered == named
    assert binary <= covered
    assert {
        ("nominals", "details_sealed"),
        ("held_notifications", "body_sealed"),
        ("origin_evidence", "jws_sealed"),
        ("idempotency_keys", "answer_sealed"),
    } <= covered


def _agents_into(world: World, agents: dict[str, Agent]) -> None:
    """The agencies registered in an earlier run of the gateway, calling this one."""
    for agent in agents.values():
        client = GatewayClient(agent.identity, ISSUER, world.http, clock=world.clock)
        world.agents[agent.id] = dataclasses.replace(agent, client=client)


async def _sealed_values(world: World) -> dict[tuple[str, str], list[tuple[str | None, bytes]]]:
    """Every sealed value in the store, by column: (the row's id if it has one, the value)."""
    found: dict[tuple[str, str], list[tuple[str | None, bytes]]] = {}
    async with world.state.db.read() as session:
        for table, column in sealed_columns():
            row_id = table.c[_ROW_ID] if _ROW_ID in table.c else None
            picked = [row_id, column] if row_id is not None else [column]
            rows = (await session.execute(select(*picked).where(column.is_not(None)))).all()
            found[(table.name, column.name)] = [
                (str(row[0]) if row_id is not None else None, bytes(row[-1])) for row in rows
            ]
    return found


def _cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, keys_dir: Path) -> None:
    for name in ("MAPPA_KEK", "MAPPA_KEK_FILE", "MAPPA_PREVIOUS_KEK_FILES", "MAPPA_PREVIOUS_KEKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAPPA_PROFILE", "test")
    monkeypatch.setenv("MAPPA_ISSUER", ISSUER)
    monkeypatch.setenv("MAPPA_DATABASE_URL", database_url)
    monkeypatch.setenv("MAPPA_KEYS_DIR", str(keys_dir))


async def _gateway(argv: list[str]) -> int:
    """``mappa-gateway ARGV`` as an operator runs it (its own event loop, settings read anew)."""

    def run() -> int:
        get_settings.cache_clear()
        try:
            return gateway_main(argv)
        finally:
            get_settings.cache_clear()

    return await asyncio.to_thread(run)


async def test_kek_rotation_keeps_every_sealed_value_readable(
    database_url: str,
    gateway_keys: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    keys_dir, kek_a = tmp_path / "keys", tmp_path / "kek-a"
    shutil.copytree(gateway_keys[0], keys_dir)
    shutil.copy2(gateway_keys[1], kek_a)
    old_id = kek_from_file(kek_a).kek_id

    # Case data written under KEK A.
    async with open_world(settings_for(database_url, (keys_dir, kek_a))) as world:
        await onboard_barnet(world)
        nominal_id = await whole_case(world)
        before = await world[POLICE].get(f"/v1/nominals/{nominal_id}")
        sealed = await _sealed_values(world)
        agents = dict(world.agents)
    filled = {name for name, values in sealed.items() if values}
    assert len(filled) >= 10, filled
    assert ("idempotency_keys", "answer_sealed") in filled  # a composite primary key

    # 1. The key directory moves to KEK B; the command says what is left to do.
    kek_b = tmp_path / "kek-b"
    new_id = generate_kek_file(kek_b).kek_id
    _cli_env(monkeypatch, database_url, keys_dir)
    argv = ["keys", "rewrap", "--kek-file", str(kek_a), "--new-kek-file", str(kek_b)]
    assert keys_main(argv) == 0
    said = capsys.readouterr().out
    assert "db rewrap-case-data" in said and "MAPPA_PREVIOUS_KEK_FILES" in said

    # Without the previous KEK the case data is under a KEK not configured: left, reported.
    monkeypatch.setenv("MAPPA_KEK_FILE", str(kek_b))
    assert await _gateway(["db", "rewrap-case-data"]) == 1
    said = capsys.readouterr().out
    assert f"under {old_id}" in said and "0 rewrapped" in said

    # 2. B current, A previous (for reading), restart: the gateway serves the case as it was.
    monkeypatch.setenv("MAPPA_PREVIOUS_KEK_FILES", json.dumps([str(kek_a)]))
    transition = settings_for(database_url, (keys_dir, kek_b)).model_copy(
        update={"previous_kek_files": (kek_a,)}
    )
    async with open_world(transition) as world:
        _agents_into(world, agents)
        assert await world[POLICE].get(f"/v1/nominals/{nominal_id}") == before

    # 3. The case data moves, in small batches (the walk goes past a batch), then nothing is
    # left: a second run and a check change nothing.
    assert await _gateway(["db", "rewrap-case-data", "--check"]) == 1
    capsys.readouterr()
    assert await _gateway(["db", "rewrap-case-data", "--batch-size", "2"]) == 0
    said = capsys.readouterr().out
    assert "LEFT" not in said and f"every sealed value is under the current KEK {new_id}" in said
    moved = sum(int(line.split(": ")[1].split()[0]) for line in said.splitlines()[:-1])
    assert moved == sum(len(values) for values in sealed.values())
    assert await _gateway(["db", "rewrap-case-data", "--check"]) == 0
    assert all(" 0 rewrapped" in line for line in capsys.readouterr().out.splitlines()[:-1])

    # 4. The previous KEK removed, the old KEK destroyed: every value opens under B alone.
    monkeypatch.delenv("MAPPA_PREVIOUS_KEK_FILES")
    kek_a.unlink()
    async with open_world(settings_for(database_url, (keys_dir, kek_b))) as world:
        _agents_into(world, agents)
        assert await world[POLICE].get(f"/v1/nominals/{nominal_id}") == before
        after = await _sealed_values(world)
        sealer = world.state.case_sealer
        assert sealer is not None
        kek = kek_from_file(kek_b)
        for (table, column), values in after.items():
            assert len(values) == len(sealed[(table, column)]), (table, column)
            for row_id, blob in values:
                if row_id is not None:
                    sealer.unseal(table, row_id, column, blob)
                else:  # no id to bind: its data key opens under B alone
                    rewrap(blob, kek, kek)


async def test_kek_rotation_to_an_hsm_key_and_between_hsm_keys(
    database_url: str,
    gateway_keys: tuple[Path, Path],
    softhsm: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """keys/README.md's rotation, to a KEK that is no file: the settings name the new KEK (an
    HSM key over PKCS#11), MAPPA_PREVIOUS_KEKS the old one by the variables that named it (a
    file, then an HSM key); keys rewrap --to-configured moves the key directory, db
    rewrap-case-data the case data; once the old KEK is gone every value opens under the new
    one alone, and the gateway serves the case as it was. (Only KEK files could be rotated.)"""
    monkeypatch.chdir(tmp_path)
    keys_dir, kek_file = tmp_path / "keys", tmp_path / "kek-file"
    shutil.copytree(gateway_keys[0], keys_dir)
    shutil.copy2(gateway_keys[1], kek_file)
    pin = tmp_path / "pin"
    pin.write_text(softhsm["user_pin"] + "\n")
    pin.chmod(0o600)

    def hsm(label: str) -> dict[str, str]:
        return {
            "MAPPA_KEK_PKCS11_MODULE": softhsm["library_path"],
            "MAPPA_KEK_PKCS11_TOKEN_LABEL": softhsm["token_label"],
            "MAPPA_KEK_PKCS11_KEY_LABEL": label,
            "MAPPA_KEK_PKCS11_PIN_FILE": str(pin),
        }

    def settings(label: str, previous: list[dict[str, str]]) -> Settings:
        return settings_for(database_url, (keys_dir, kek_file)).model_copy(
            update={
                "kek_pkcs11_module": softhsm["library_path"],
                "kek_pkcs11_token_label": softhsm["token_label"],
                "kek_pkcs11_key_label": label,
                "kek_pkcs11_pin_file": pin,
                "previous_keks": json.dumps(previous),
            }
        )

    async with open_world(settings_for(database_url, (keys_dir, kek_file))) as world:
        await onboard_barnet(world)
        nominal_id = await whole_case(world)
        before = await world[POLICE].get(f"/v1/nominals/{nominal_id}")
        count = sum(len(values) for values in (await _sealed_values(world)).values())
        agents = dict(world.agents)
    _cli_env(monkeypatch, database_url, keys_dir)

    for label, previous in (
        ("kek-1", {"MAPPA_KEK_FILE": str(kek_file)}),  # from the file to the HSM
        ("kek-2", hsm("kek-1")),  # from one HSM key to another
    ):
        new_id = f"pkcs11:{softhsm['token_label']}/{label}"
        for name, value in hsm(label).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("MAPPA_PREVIOUS_KEKS", json.dumps([previous]))
        assert keys_main(["keys", "rewrap", "--to-configured"]) == 0
        said = capsys.readouterr().out
        assert f"under KEK {new_id}" in said and "MAPPA_PREVIOUS_KEKS" in said
        assert await _gateway(["db", "rewrap-case-data"]) == 0
        said = capsys.readouterr().out
        assert f"every sealed value is under the current KEK {new_id}" in said
        moved = sum(int(line.split(": ")[1].split()[0]) for line in said.splitlines()[:-1])
        assert moved == count

        # The old KEK gone: the new one alone opens the key directory and every value.
        monkeypatch.delenv("MAPPA_PREVIOUS_KEKS")
        assert keys_main(["keys", "list"]) == 0
        capsys.readouterr()
        async with open_world(settings(label, [])) as world:
            _agents_into(world, agents)
            assert await world[POLICE].get(f"/v1/nominals/{nominal_id}") == before
            sealer = world.state.case_sealer
            assert sealer is not None
            for (table, column), values in (await _sealed_values(world)).items():
                for row_id, blob in values:
                    assert blob_kek_id(blob) == new_id, (table, column)
                    if row_id is not None:
                        sealer.unseal(table, row_id, column, blob)
    kek_file.unlink()
    # the first HSM key opens nothing any more
    for name, value in hsm("kek-1").items():
        monkeypatch.setenv(name, value)
    assert keys_main(["keys", "list"]) == 2
    assert "kek_unavailable" in capsys.readouterr().err
