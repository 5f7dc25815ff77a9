"""Inclusion and consistency proofs over a large audit log: every leaf read vs the subtree cache.

Seeds a log of ``--entries`` audit entries (default 100,000) through the real recorder and
sequencer (signed checkpoints, development keys in a temporary directory), then times, on the
same database:

- *full read*: what every proof did before the cache, all stored leaf hashes up to the size read
  and hashed into a `MerkleTree`, then the proof;
- *cache, first proof*: the process's first proof, which fills the `SubtreeCache`;
- *cache*: proofs after that (a few tiles of leaves read each).

    python benchmarks/audit_proofs.py [--entries 100000] [--postgres URL] [--json FILE]

PostgreSQL is measured too when ``--postgres`` names an empty database the script may fill (it
runs the migrations and leaves the rows there).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from gateway.audit.log import consistency_proof, inclusion_proof, latest_checkpoint, leaf_hashes  # noqa: E402
from gateway.audit.merkle import MerkleTree  # noqa: E402
from gateway.audit.sequencer import sequence  # noqa: E402
from gateway.audit.signer import RingNoteSigner  # noqa: E402
from gateway.audit.subtrees import SubtreeCache  # noqa: E402
from gateway.flow.audit import AuditEvent, Operation, Outcome, record  # noqa: E402
from gateway.store import Database, upgrade  # noqa: E402
from gateway.store.models import AuditEntry  # noqa: E402
from keys import (  # noqa: E402
    FileKeyRepository,
    Purpose,
    generate_development_keys,
    generate_kek_file,
    kek_from_file,
)

ORIGIN = "bench.example/mappa-audit"


async def _seed(db: Database, signer: RingNoteSigner, entries: int) -> None:
    batch = 5000
    for start in range(0, entries, batch):
        async with db.write() as session:
            for i in range(start, min(entries, start + batch)):
                record(
                    session,
                    AuditEvent(
                        operation=Operation.DISCLOSURE,
                        outcome=Outcome.ALLOWED,
                        agency_id=f"agency-{i % 40}",
                        officer_id=f"officer-{i % 700}",
                        nominal_ref=f"N{i % 91_000:05d}",
                        legal_basis="cja2003-s325",
                        purpose="risk-management",
                        rule="level2-attendee",
                        request_id=f"req-{i}",
                    ),
                )
    await sequence(db, signer, ORIGIN, batch=batch)


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
    }


async def _measure(url: str, signer: RingNoteSigner, entries: int) -> dict[str, Any]:
    db = Database(url)
    try:
        async with db.read() as session:
            present = await latest_checkpoint(session)
        if present is None or present.tree_size < entries:
            started = time.perf_counter()
            await _seed(db, signer, entries - (present.tree_size if present else 0))
            print(f"  seeded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        rng = random.Random(9162)
        async with db.read() as session:
            checkpoint = await latest_checkpoint(session)
            assert checkpoint is not None
            size = checkpoint.tree_size
            ids = dict(
                (await session.execute(select(AuditEntry.seq, AuditEntry.entry_id))).tuples().all()
            )
            picks = [ids[rng.randrange(size)] for _ in range(200)]

            full: list[float] = []
            for _ in range(10):
                started = time.perf_counter()
                tree = MerkleTree(await leaf_hashes(session, size))
                tree.inclusion_proof(rng.randrange(size))
                full.append(time.perf_counter() - started)

            cache = SubtreeCache()
            started = time.perf_counter()
            await inclusion_proof(session, picks[0], cache=cache)
            first = time.perf_counter() - started

            cached: list[float] = []
            for entry_id in picks:
                started = time.perf_counter()
                await inclusion_proof(session, entry_id, cache=cache)
                cached.append(time.perf_counter() - started)

            consistency: list[float] = []
            for _ in range(200):
                old = rng.randrange(1, size)
                started = time.perf_counter()
                await consistency_proof(session, old, size, cache=cache)
                consistency.append(time.perf_counter() - started)
    finally:
        await db.dispose()
    return {
        "entries": size,
        "full_read_inclusion": _ms(full),
        "cache_first_proof_ms": round(first * 1000, 1),
        "cache_inclusion": _ms(cached),
        "cache_consistency": _ms(consistency),
        "cache_bytes": sum(len(level) for level in cache._upper),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--postgres", help="an empty PostgreSQL database to fill and measure")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        kek = generate_kek_file(base / "kek.bin")
        generate_development_keys(base / "keys", kek, "development", now=dt.datetime.now(dt.UTC))
        repository = FileKeyRepository(base / "keys", kek_from_file(base / "kek.bin"))
        signer = RingNoteSigner(ORIGIN, lambda: repository.ring(Purpose.CHECKPOINT_SIGNING))
        targets = {"sqlite": f"sqlite+aiosqlite:///{base / 'bench.db'}"}
        if args.postgres:
            targets["postgresql"] = args.postgres
        results = {}
        for name, url in targets.items():
            print(f"{name}: {args.entries} entries", file=sys.stderr)
            upgrade(url)
            results[name] = asyncio.run(_measure(url, signer, args.entries))
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
