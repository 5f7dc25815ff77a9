"""THREATS.md, "Redaction" and "Delivery and faults": no third party in dead letters or logs.

Probation writes a record citing a neighbour; police write minutes citing the neighbour and a
victim; an onward disclosure of the minutes' conclusions is approved to housing. Housing and
police (the lead, sent probation's record) have push endpoints that answer garbage, so the relay
dead-letters every message owed to them. Then every place those messages, or anything about
them, could rest is searched for the third-party strings: each dead row's body (decrypted with
its recipient's key) and its other columns, the relay's structured logs with its dead-letter
alerts, everything written to stdout and stderr, every stdlib ``logging`` record (sqlalchemy,
httpx, httpcore, asyncio, ...), and what ``mappa-gateway outbox list --status dead`` shows.
The dead letters are then queued again with ``mappa-gateway outbox retry`` and delivered to a
partner that accepts them, and what that partner received is searched as well. Neither housing
nor police originated any of the third-party sources their messages stem from (police did
originate the minutes' neighbour and victim, but police are sent no minutes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwe, jws
from sqlalchemy import update
from structlog.testing import capture_logs

import gateway
from gateway.delivery.endpoints import set_endpoint
from gateway.delivery.relay import Relay
from gateway.store.models import OutboxMessage
from tests.gateway.cases.scenario import (
    CS,
    DISCUSSION_TEXT,
    HOUSING,
    POLICE,
    PROBATION,
    SECRETS,
    THIRD_PARTY,
    at_level_2,
    disclosure_request,
    level_2_meeting,
    minutes,
    onboard_barnet,
    record,
)
from tests.gateway.cases.support import World, open_world, settings_for
from tests.gateway.delivery.stub import PartnerPKI, PartnerStub
from tests.gateway.delivery.support import fast_config, until

#: The agencies whose endpoints fail: housing (minutes, onward disclosure) and the lead (record).
FAILING = (HOUSING, POLICE)
MAX_ATTEMPTS = 2
#: The checkout whose code this test imported: the CLI runs that code too.
CODE = str(Path(gateway.__file__).resolve().parent.parent)


@pytest.fixture
async def barnet(
    database_url: str,
    gateway_keys: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[World]:
    """Barnet's gateway (tests/gateway/cases), on SQLite and on PostgreSQL; no relay of its own."""
    monkeypatch.chdir(tmp_path)
    async with open_world(settings_for(database_url, gateway_keys)) as opened:
        await onboard_barnet(opened)
        yield opened


class _Kept(logging.Handler):
    """Every stdlib log record, at every level, as it would be written out."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []
        self.loggers: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.loggers.add(record.name)
        self.lines.append(f"{self.format(record)} {record.args!r} {record.__dict__!r}")


@pytest.fixture
def stdlib_logs() -> Iterator[_Kept]:
    root, sqlalchemy = logging.getLogger(), logging.getLogger("sqlalchemy")
    kept, levels = _Kept(), (root.level, sqlalchemy.level)
    root.addHandler(kept)
    root.setLevel(logging.DEBUG)
    sqlalchemy.setLevel(logging.DEBUG)  # as if an operator turned SQL echo on: every statement
    try:
        yield kept
    finally:
        root.removeHandler(kept)
        root.setLevel(levels[0])
        sqlalchemy.setLevel(levels[1])


def _absent(haystack: str, needles: tuple[str, ...], where: str) -> None:
    for needle in needles:
        assert needle not in haystack, f"{needle!r} found in {where}"


def _plaintext(world: World, agency: str, compact: str) -> str:
    """A message sealed to ``agency`` as that agency reads it: the JWS and its payload."""
    plaintext = jwe.decrypt_compact(compact, world[agency].identity.encryption_key).plaintext
    inner = (plaintext or b"").decode("ascii")
    payload = jws.extract_compact(inner.encode("ascii")).payload.decode("utf-8")
    return inner + "\n" + payload + "\n" + repr(world[agency].open(compact))


def _columns(row: OutboxMessage) -> str:
    """Every column of the row but its (sealed) body."""
    return repr({c.name: getattr(row, c.name) for c in OutboxMessage.__table__.columns})


async def _cli(world: World, *args: str) -> tuple[str, str]:
    """``mappa-gateway ARGS`` against the world's database, as an operator runs it."""
    settings = world.state.settings
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (CODE, os.environ.get("PYTHONPATH")))),
        "MAPPA_PROFILE": "test",
        "MAPPA_DATABASE_URL": settings.database_url,
        "MAPPA_ISSUER": settings.issuer,
        "MAPPA_KEYS_DIR": str(settings.keys_dir),
        "MAPPA_KEK_FILE": str(settings.kek_file),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    return out.decode(), err.decode()


async def _scenario(world: World) -> None:
    """A record and minutes with third-party sources, and an onward disclosure to housing."""
    nominal_id = await at_level_2(world)
    meeting_id = await level_2_meeting(world, nominal_id)
    # Probation's record, its neighbour source probation's own: a copy is sent to the lead.
    created = await world[PROBATION].post(f"/v1/nominals/{nominal_id}/records", record())
    # Police's minutes, the neighbour and the victim police's: sent to every participant.
    await world[POLICE].post(f"/v1/meetings/{meeting_id}/minutes", minutes())
    asked = await world[CS].post(
        "/v1/disclosures", disclosure_request(meeting_id, HOUSING, purpose="risk-management")
    )
    await world[POLICE].post(
        f"/v1/disclosures/{asked['id']}/decision",
        {"decision": "approve", "approved_parts": ["conclusions", "actions"], "reason": "x"},
    )
    # Housing reads the record (its owner, probation, is told: a message that stays pending).
    await world[HOUSING].get(f"/v1/nominals/{nominal_id}/records/{created['id']}")


async def _relay_until(world: World, done: Any) -> None:
    # The world's clock, running: the messages are no older than the push window, and their
    # retries come due.
    started = dt.datetime.now(dt.UTC)

    def running() -> dt.datetime:
        return world.clock() + (dt.datetime.now(dt.UTC) - started)

    relay = Relay(world.state.db, fast_config(max_attempts=MAX_ATTEMPTS), clock=running)
    relay.start()
    try:
        await until(done, within=30)
    finally:
        await relay.stop()


async def test_dead_letters_and_every_log_hold_no_third_party_content(
    barnet: World,
    pki: PartnerPKI,
    stub: PartnerStub,
    stdlib_logs: _Kept,
    capsys: pytest.CaptureFixture[str],
) -> None:
    world = barnet
    await _scenario(world)
    garbage = await PartnerStub(pki=pki, default="garbage").start()
    try:
        for agency in FAILING:
            await set_endpoint(
                world.state.db, agency, url=garbage.url, ca_pem=pki.ca_pem, development=True
            )
        owed = {row.id: row for row in await world.outbox() if row.recipient_agency_id in FAILING}
        kinds = {(row.recipient_agency_id, row.kind) for row in owed.values()}
        assert {(HOUSING, "minutes"), (HOUSING, "onward_disclosure"), (POLICE, "record")} <= kinds

        async def all_dead() -> bool:
            return all(row.status == "dead" for row in await world.outbox() if row.id in owed)

        with capture_logs() as relay_logs:
            await _relay_until(world, all_dead)
    finally:
        await garbage.stop()
    assert len(garbage.requests) == MAX_ATTEMPTS * len(owed)

    # 1. The dead rows: their bodies as their recipients read them, and every other column.
    dead = [row for row in await world.outbox() if row.id in owed]
    assert {row.status for row in dead} == {"dead"}
    for row in dead:
        assert (row.attempts, row.last_error_code) == (MAX_ATTEMPTS, "protocol_error")
        _absent(row.body, SECRETS, f"dead letter {row.id} bytes")
        _absent(_columns(row), SECRETS, f"dead letter {row.id} columns")
        read = _plaintext(world, row.recipient_agency_id, row.body)
        _absent(read, THIRD_PARTY, f"dead {row.kind} to {row.recipient_agency_id}")
    [housing_minutes] = [r for r in dead if (r.recipient_agency_id, r.kind) == (HOUSING, "minutes")]
    assert DISCUSSION_TEXT in _plaintext(world, HOUSING, housing_minutes.body)  # the search sees

    # 2. The relay's logs: one dead-letter alert per row, ids and codes only.
    alerts = [e for e in relay_logs if e["event"] == "outbox_dead_letter"]
    assert sorted(e["message_id"] for e in alerts) == sorted(owed)
    assert all(e["alert"] is True and e["code"] == "protocol_error" for e in alerts)
    _absent(repr(relay_logs), SECRETS, "the relay's structured logs")
    _absent(repr(relay_logs), tuple(row.body for row in dead), "the relay's structured logs")

    # 3. What the operator sees: `mappa-gateway outbox list --status dead`.
    listed, listed_err = await _cli(world, "outbox", "list", "--status", "dead")
    lines = {line.split()[0]: line for line in listed.splitlines()[1:] if line.strip()}
    assert sorted(lines) == sorted(owed), listed
    assert all(line.split()[-1] == "protocol_error" for line in lines.values()), listed
    _absent(listed + listed_err, SECRETS, "`outbox list --status dead`")
    _absent(listed + listed_err, tuple(row.body for row in dead), "`outbox list --status dead`")

    # 4. Queued again with `mappa-gateway outbox retry`, and delivered to a partner that accepts.
    # The command runs on the machine's clock, the world on its own (days before): written a
    # minute ago by the machine's clock, or the command would leave them dead as too old to go.
    async with world.state.db.write() as session:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(owed))
            .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
        )
    retried, retried_err = await _cli(world, "outbox", "retry")
    assert retried.strip() == f"{len(dead)} dead letter(s) queued again"
    _absent(retried + retried_err, SECRETS, "`outbox retry`")
    for agency in FAILING:
        await set_endpoint(
            world.state.db, agency, url=stub.url, ca_pem=pki.ca_pem, development=True
        )
    # The command ran on the machine's clock, the world on its own (days before): due now.
    async with world.state.db.write() as session:
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(owed))
            .values(next_attempt_at=world.clock())
        )

    async def all_delivered() -> bool:
        return all(row.status == "delivered" for row in await world.outbox() if row.id in owed)

    with capture_logs() as delivery_logs:
        await _relay_until(world, all_delivered)
    assert sorted(stub.accepted) == sorted(owed)
    for message_id, received in stub.accepted.items():
        recipient = owed[message_id].recipient_agency_id
        sent = received.body.decode("ascii")
        assert sent == owed[message_id].body  # the very sealed body that was dead-lettered
        _absent(sent, SECRETS, f"delivery {message_id} bytes")
        read = _plaintext(world, recipient, sent)
        _absent(read, THIRD_PARTY, f"delivered {received.kind} to {recipient}")
    _absent(repr(delivery_logs), SECRETS, "the relay's structured logs")

    # 5. Everything written to stdout and stderr, and every stdlib log record, all along.
    captured = capsys.readouterr()
    _absent(captured.out + captured.err, SECRETS, "stdout and stderr")
    assert stdlib_logs.lines, "no stdlib log record reached the root logger"
    _absent("\n".join(stdlib_logs.lines), SECRETS, "stdlib log records")
