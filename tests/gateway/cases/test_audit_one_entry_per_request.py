"""THREATS.md, "Audit integrity": exactly one complete entry per act, also under concurrency.

Many requests at once, on both backends: allowed reads of a level 2 nominal by the agencies that
attended (or receive the minutes of) its meeting, probation writing records, and reads refused
to an agency of another area. Requests are told apart by the ``X-Request-ID`` each answer
carries, and each one's officer is its own, so an entry written for the wrong request, twice, or
not at all shows. A read is one act (a disclosure to the caller); a refusal is one act; a record
written is a collection and, because the lead agency is sent a copy, one disclosure per outbox
row it queued. Nothing is audited that no request did.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import httpx
from joserfc import jwe, jws

from adapters.client import ContextHeaders
from gateway.store.models import AuditEntry
from tests.gateway.cases.scenario import (
    CS,
    HOUSING,
    JCP,
    POLICE,
    PROBATION,
    WILTS_POLICE,
    at_level_2,
    level_2_meeting,
    record,
)
from tests.gateway.cases.support import MAPPA_BASIS, World, new_key

READS = 60
WRITES = 15
REFUSALS = 15
BASIS, PURPOSE = MAPPA_BASIS


@dataclass(frozen=True)
class Sent:
    """One request of the burst: who sent it, as which officer, and the answer."""

    kind: str  # "read", "write" or "refused"
    agency: str
    officer: str
    response: httpx.Response

    @property
    def request_id(self) -> str:
        return self.response.headers["x-request-id"]


def _digest_of_answer(evidence: str) -> str:
    """What the gateway records as an answer's ``payload_digest`` (gateway/flow/seal.py,
    ``Sealer.seal``): SHA-256 over the signed body, i.e. the payload of the JWS that the JWE
    carries."""
    payload = jws.extract_compact(evidence.encode("ascii")).payload
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def _opened(world: World, agency: str, compact: str) -> str:
    """The JWS inside a JWE sealed to ``agency``, decrypted with its key."""
    plaintext = jwe.decrypt_compact(compact, world[agency].identity.encryption_key).plaintext
    return (plaintext or b"").decode("ascii")


def _utc(entry: AuditEntry) -> None:
    assert entry.occurred_at.tzinfo is not None, entry.entry_id
    assert entry.occurred_at.utcoffset() == dt.timedelta(0), entry.entry_id


async def test_every_request_of_a_concurrent_burst_has_exactly_its_own_entries(
    any_world: World,
) -> None:
    world = any_world
    nominal_id = await at_level_2(world)
    await level_2_meeting(world, nominal_id)  # housing, CS attended; JCP receives the minutes
    nominal_path = f"/v1/nominals/{nominal_id}"
    records_path = f"{nominal_path}/records"
    readers = (HOUSING, JCP, CS)
    # Tokens first (their issue is audited under their own requests, before the burst), and the
    # record bodies sealed before it too, so the burst is only the case API's requests.
    for agency in (*readers, PROBATION, WILTS_POLICE):
        await world[agency].client.token()
    bodies = [await world[PROBATION].client.seal(record()) for _ in range(WRITES)]
    audited_before = {e.entry_id for e in await world.audit()}
    queued_before = {row.id for row in await world.outbox()}

    async def send(kind: str, agency: str, n: int, body: str | None = None) -> Sent:
        officer = f"OFF-{kind}-{n}"
        context = ContextHeaders(BASIS, PURPOSE, officer)
        if body is None:
            response = await world[agency].raw("GET", nominal_path, context=context)
        else:
            response = await world[agency].raw(
                "POST", records_path, content=body, key=new_key(), context=context
            )
        return Sent(kind, agency, officer, response)

    burst = [send("read", readers[n % len(readers)], n) for n in range(READS)]
    burst += [send("write", PROBATION, n, body) for n, body in enumerate(bodies)]
    burst += [send("refused", WILTS_POLICE, n) for n in range(REFUSALS)]
    # interleave the kinds, so that batches mix reads, writes and refusals
    order = sorted(range(len(burst)), key=lambda i: (i * 7919) % len(burst))
    commits = world.state.commits
    assert commits is not None
    batches_before, acts_before = commits.batches, commits.acts
    sent: list[Sent] = list(await asyncio.gather(*(burst[i] for i in order)))
    # The burst really ran at once: its acts were committed many to a transaction.
    assert commits.acts - acts_before >= len(sent)
    assert commits.batches - batches_before < len(sent) // 2, commits.batches - batches_before

    expected_status = {"read": 200, "write": 201, "refused": 404}
    for one in sent:
        assert one.response.status_code == expected_status[one.kind], (one, one.response.text)
    by_request = {one.request_id: one for one in sent}
    assert len(by_request) == len(sent), "two requests of the burst share an X-Request-ID"

    entries = [e for e in await world.audit() if e.entry_id not in audited_before]
    # None without a request, none for a request that was not made.
    strays = [(e.operation, e.outcome, e.request_id) for e in entries if e.request_id is None]
    assert strays == [], f"entries without a request: {strays}"
    unknown = [e.request_id for e in entries if e.request_id not in by_request]
    assert unknown == [], f"entries for requests the burst did not make: {unknown}"
    grouped: dict[str, list[AuditEntry]] = defaultdict(list)
    for entry in entries:
        assert entry.request_id is not None
        grouped[entry.request_id].append(entry)
    missing = [rid for rid in by_request if rid not in grouped]
    assert missing == [], f"{len(missing)} requests have no audit entry"

    queued = [row for row in await world.outbox() if row.id not in queued_before]
    assert len(queued) == WRITES
    assert {row.recipient_agency_id for row in queued} == {POLICE}
    lead_copies = Counter(_digest_of_answer(_opened(world, POLICE, row.body)) for row in queued)
    for request_id, one in by_request.items():
        mine = grouped[request_id]
        acts = Counter((e.operation, e.outcome, tuple(e.recipients)) for e in mine)
        if one.kind != "write":
            # A read, allowed or refused, is one act: exactly one entry.
            assert len(mine) == 1, f"{one.kind} {request_id} has {len(mine)} entries: {acts}"
        else:
            # The write: one collection, and one disclosure for the copy queued to the lead.
            assert acts == Counter(
                {
                    ("collection", "allowed", ()): 1,
                    ("disclosure", "allowed", (POLICE,)): 1,
                }
            ), f"write {request_id}: {acts}"
        for entry in mine:
            _utc(entry)
            assert entry.agency_id == one.agency, entry.entry_id
            assert entry.officer_id == one.officer, entry.entry_id
            assert (entry.legal_basis, entry.purpose) == (BASIS, PURPOSE), entry.entry_id
            assert entry.policy_version, entry.entry_id
            assert entry.rule, entry.entry_id

        if one.kind == "read":
            [entry] = mine
            assert (entry.operation, entry.outcome) == ("disclosure", "allowed")
            assert entry.recipients == [one.agency]
            assert entry.nominal_ref == nominal_id
            assert entry.reason_code is None
            assert isinstance(entry.withheld, list) and entry.withheld, entry.entry_id
            assert all(set(w) == {"field", "rule"} for w in entry.withheld), entry.withheld
            # The digest recorded is that of the very answer this request received.
            _, evidence = await world[one.agency].client.open(one.response.text)
            assert entry.payload_digest == _digest_of_answer(evidence), request_id
        elif one.kind == "refused":
            [entry] = mine
            assert (entry.operation, entry.outcome) == ("disclosure", "refused")
            assert entry.rule == "default-deny"
            assert entry.reason_code == "no_need_to_know"
            assert entry.recipients == []
            assert entry.payload_digest is None
            assert one.response.json()["request_id"] == request_id
        else:
            [kept] = [e for e in mine if e.operation == "collection"]
            assert kept.payload_digest and kept.payload_digest == kept.detail.get(
                "origin_jws_digest"
            )
            answer, _ = await world[PROBATION].client.open(one.response.text)
            assert kept.record_refs == [answer.body["id"]]
            [told] = [e for e in mine if e.operation == "disclosure"]
            # The copy's digest is that of one row queued to the lead, and of no other copy.
            assert told.payload_digest is not None and lead_copies[told.payload_digest] == 1

    # No act of any request recorded twice, and nothing recorded beyond the acts.
    per_act = Counter((e.request_id, e.operation, tuple(e.recipients)) for e in entries)
    assert [act for act, n in per_act.items() if n > 1] == []
    assert len(entries) == READS + REFUSALS + 2 * WRITES
