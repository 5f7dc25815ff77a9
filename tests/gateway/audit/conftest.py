"""Fixtures for the audit log tests: CT reference vectors, a real Ed25519 note key, sample logs."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import ECKey

from gateway import agencies
from gateway.audit import (
    CheckpointVerifier,
    VerifierKey,
    entry_leaf_hash,
    leaf_hash,
)
from gateway.audit.signer import RingNoteSigner
from gateway.audit.signer import log_verifier as ring_log_verifier
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.store import Database
from gateway.store.models import Nominal
from keys import (
    FileKeyRepository,
    Purpose,
    generate_kek_file,
    generate_keys,
    kek_from_file,
)

# The repository is <repo>; the shared reference material sits beside it in <repo>/../shared.
REPO = Path(__file__).resolve().parents[3]
SHARED_CT_VECTORS = REPO.parent / "shared" / "vectors" / "rfc9162-ct.json"
#: A byte-for-byte copy of the shared file, so that a clone anywhere has the vectors; never
#: edited (a test holds it equal to the shared file wherever that is present).
COPIED_CT_VECTORS = Path(__file__).resolve().parent / "vectors" / "rfc9162-ct.json"
CT_VECTORS = SHARED_CT_VECTORS if SHARED_CT_VECTORS.is_file() else COPIED_CT_VECTORS

ORIGIN = "mappa.example/audit"


@dataclass(frozen=True)
class CTVectors:
    """The Certificate Transparency reference vectors, decoded."""

    leaves: list[bytes]  # leaf hashes, HASH(0x00 || data)
    roots: list[bytes]  # roots[n - 1] is the root over the first n leaves
    empty_root: bytes
    consistency: dict[tuple[int, int], list[bytes]]


def load_ct_vectors(path: Path = CT_VECTORS) -> CTVectors:
    """Load the vectors, failing (never skipping) when the file is not there."""
    if not path.is_file():
        pytest.fail(f"Certificate Transparency vectors missing: expected them at {path}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    consistency = {}
    for key, proof in raw["consistency_hex"].items():
        old, new = (int(part) for part in key.split(","))
        consistency[(old, new)] = [bytes.fromhex(node) for node in proof]
    return CTVectors(
        leaves=[leaf_hash(bytes.fromhex(data)) for data in raw["leaves_hex"]],
        roots=[bytes.fromhex(root) for root in raw["roots_hex"]],
        empty_root=bytes.fromhex(raw["empty_tree_root_hex"]),
        consistency=consistency,
    )


@pytest.fixture(scope="session")
def ct_vectors() -> CTVectors:
    return load_ct_vectors()


@pytest.fixture(name="load_ct_vectors", scope="session")
def _load_ct_vectors() -> Callable[[Path], CTVectors]:
    return load_ct_vectors


def ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """The Ed25519 check the gateway's keys/ package provides, done with cryptography here."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Ed25519NoteSigner:
    """A `NoteSigner` holding a real Ed25519 private key."""

    name: str
    private_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def verifier_key(self) -> VerifierKey:
        return VerifierKey(self.name, self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


@pytest.fixture(scope="session")
def log_signer() -> Ed25519NoteSigner:
    return Ed25519NoteSigner(ORIGIN)


@pytest.fixture(scope="session")
def log_verifier(log_signer: Ed25519NoteSigner) -> CheckpointVerifier:
    return CheckpointVerifier((log_signer.verifier_key,), ed25519_verify, ORIGIN)


class LogFactory:
    """Builds audit entries and logs as the store returns them, with stored leaf hashes."""

    @staticmethod
    def entry(seq: int, **overrides: Any) -> dict[str, Any]:
        """An entry of the current schema, sealed with its leaf hash."""
        entry: dict[str, Any] = {
            "seq": seq,
            "entry_id": f"00000000-0000-4000-8000-{seq:012d}",
            "occurred_at": f"2026-03-01T09:{seq // 60 % 60:02d}:{seq % 60:02d}.{seq % 10**6:06d}Z",
            "operation": "disclosure" if seq % 3 else "consultation",
            "outcome": "refused" if seq % 7 == 3 else "allowed",
            "agency_id": f"agency-{seq % 5}",
            "officer_id": f"officer-{seq % 11}",
            "recipients": [f"agency-{(seq + 1) % 5}"],
            "nominal_ref": f"N{seq % 13:05d}",
            "record_refs": [f"R{seq:06d}", f"R{seq + 1:06d}"],
            "legal_basis": "cja2003-s325-4",
            "purpose": "risk-management",
            "policy_version": "2026.03.1",
            "rule": "mappa-level2-attendee",
            "withheld": [{"field": "sources", "rule": "third-party-source"}] if seq % 2 else [],
            "payload_digest": f"sha256:{seq:064x}",
            "request_id": f"req-{seq}",
            "reason_code": "no_need_to_know" if seq % 7 == 3 else None,
            "detail": {"jwe_alg": "ECDH-ES+A256KW"} if seq % 4 == 0 else {},
        }
        entry.update(overrides)
        return LogFactory.seal(entry)

    @staticmethod
    def seal(entry: dict[str, Any]) -> dict[str, Any]:
        """Return ``entry`` with ``leaf_hash`` recomputed from its content."""
        content = {key: value for key, value in entry.items() if key != "leaf_hash"}
        return {**content, "leaf_hash": entry_leaf_hash(content).hex()}

    def log(self, n: int) -> list[dict[str, Any]]:
        """An intact log of ``n`` entries."""
        return [self.entry(seq) for seq in range(n)]


@pytest.fixture(scope="session")
def logs() -> LogFactory:
    return LogFactory()


@pytest.fixture(scope="session")
def new_signer() -> Callable[[str], Ed25519NoteSigner]:
    """Return a factory of fresh Ed25519 note signers by key name."""
    return Ed25519NoteSigner


@pytest.fixture(scope="session")
def verify_ed25519() -> Callable[[bytes, bytes, bytes], bool]:
    return ed25519_verify


# -- The store-backed log: databases, the checkpoint key from keys/, helpers ------------------

from tests.gateway.oauth.conftest import (  # noqa: E402, F401
    clock,
    gateway_state,
    housing,
    http,
    ledger,
    oauth_app,
    police,
    register,
)
from tests.gateway.oauth.support import AgencyClient, Clock  # noqa: E402

DB_ORIGIN = "gateway.test/mappa-audit"


@pytest.fixture(scope="session")
def audit_gateway_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A gateway key directory (every purpose, checkpoint signing included) and its KEK file."""
    base = tmp_path_factory.mktemp("audit-gateway-keys")
    kek = generate_kek_file(base / "kek.bin")
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # before any clock a test sets
    generate_keys(base / "keys", kek, now=created)
    return base / "keys", base / "kek.bin"


def audit_settings(database_url: str, audit_gateway_keys: tuple[Path, Path]) -> Settings:
    """The agency-authentication settings on ``database_url``, with the background sequencer off
    (tests drive it); a test module's own ``oauth_settings`` may take ``database_url`` to run on
    both backends."""
    keys_dir, kek_file = audit_gateway_keys
    return Settings(
        profile="test",
        database_url=database_url,
        issuer="https://gateway.test",
        keys_dir=keys_dir,
        kek_file=kek_file,
        log_json=True,
        audit_sequence_interval_seconds=0,
    )


@pytest.fixture
def oauth_settings(sqlite_url: str, audit_gateway_keys: tuple[Path, Path]) -> Settings:
    return audit_settings(sqlite_url, audit_gateway_keys)


@pytest.fixture(scope="session")
def key_repository(audit_gateway_keys: tuple[Path, Path]) -> FileKeyRepository:
    keys_dir, kek_file = audit_gateway_keys
    return FileKeyRepository(keys_dir, kek_from_file(kek_file))


@pytest.fixture(scope="session")
def ring_signer(key_repository: FileKeyRepository) -> RingNoteSigner:
    """The gateway's note signer over the development checkpoint-signing ring."""
    return RingNoteSigner(DB_ORIGIN, lambda: key_repository.ring(Purpose.CHECKPOINT_SIGNING))


@pytest.fixture(scope="session")
def ring_verifier(key_repository: FileKeyRepository) -> CheckpointVerifier:
    return ring_log_verifier(DB_ORIGIN, key_repository.ring(Purpose.CHECKPOINT_SIGNING))


def audit_event(i: int, **overrides: Any) -> AuditEvent:
    """A disclosure event numbered ``i``; references and codes only."""
    fields: dict[str, Any] = {
        "operation": Operation.DISCLOSURE,
        "outcome": Outcome.ALLOWED,
        "agency_id": f"agency-{i % 4}",
        "officer_id": f"officer-{i % 7}",
        "recipients": (f"agency-{(i + 1) % 4}",),
        "nominal_ref": f"N{i % 13:05d}",
        "record_refs": (f"R{i:06d}",),
        "legal_basis": "cja2003-s325",
        "purpose": "risk-management",
        "policy_version": "2026.11.1",
        "rule": "level2-attendee",
        "payload_digest": f"sha256:{i:064x}",
        "request_id": f"req-{i}",
    }
    fields.update(overrides)
    return AuditEvent(**fields)


#: The agencies the sample log's entries name (``agency-0`` to ``agency-3``).
SAMPLE_AGENCIES = tuple(f"agency-{i}" for i in range(4))


async def register_sample_agencies(db: Database, area: str = "avon-somerset") -> None:
    """Register the agencies of the sample log in ``area``, so an area's IG system (which sees
    only its own area's entries) sees the sample entries."""
    jwks = {"keys": [ECKey.generate_key("P-256").as_dict(private=False)]}
    for agency_id in SAMPLE_AGENCIES:
        await agencies.add_agency(
            db,
            agency_id=agency_id,
            name=agency_id,
            agency_type="probation",
            role="responsible_authority",
            area=area,
            scopes=["case:read"],
            jwks=jwks,
        )


#: The nominals the sample log's entries name (``N00000`` to ``N00012``).
SAMPLE_NOMINALS = tuple(f"N{i:05d}" for i in range(13))


async def register_sample_nominals(db: Database, area: str = "avon-somerset") -> None:
    """Register the nominals of the sample log in ``area`` (category 1, level 2, led by
    ``agency-0``), so that an area's IG system, which sees an entry about a nominal only if it
    may know of that nominal, sees the sample entries."""
    async with db.write() as session:
        for nominal_id in SAMPLE_NOMINALS:
            session.add(
                Nominal(
                    id=nominal_id,
                    area=area,
                    category=1,
                    level=2,
                    lead_agency_id=SAMPLE_AGENCIES[0],
                    details_sealed=b"\x00",
                )
            )


async def append_entries(db: Database, count: int, *, start: int = 0) -> None:
    """Write ``count`` entries, one transaction each, as acts do."""
    for i in range(start, start + count):
        async with db.write() as session:
            record(session, audit_event(i))


@pytest.fixture
async def coordinator(gateway_state: GatewayState, clock: Clock) -> AgencyClient:  # noqa: F811
    """Avon's MAPPA co-ordination unit, onboarded with audit:read, beside the sample log's
    agencies and nominals registered in its area (a unit reads only its own area's entries,
    and of those only the ones about nominals it may know of)."""
    client = AgencyClient("mappa-coord-avon", ECKey.generate_key("P-256"), clock)
    await register_sample_agencies(gateway_state.db)
    await register_sample_nominals(gateway_state.db)
    return await register(
        gateway_state.db,
        client,
        agency_type="mappa_coordination",
        role="responsible_authority",
        scopes=["audit:read"],
    )
