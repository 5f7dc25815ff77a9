"""The audit log in a running gateway: its identity and keys, and the background sequencer.

`open_audit_keys` reads the log's origin from the settings and its checkpoint key from the key
repository (`gateway.keyring`). `AuditService` is what `GatewayState.audit` holds: the origin,
the note signer, the verifier of the log's checkpoints, the proof cache, and the sequencer task
that the app's lifespan starts and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.audit.checkpoint import CheckpointVerifier, VerifierKey
from gateway.audit.sequencer import SequencerHealth, run_sequencer, sequencer_turn
from gateway.audit.signer import RingNoteSigner, log_verifier, verifier_keys
from gateway.audit.subtrees import SubtreeCache
from gateway.audit.witness import CheckpointWitness, witness_path
from gateway.keyring import KeyRepositoryUnavailable, open_key_repository
from gateway.logs import get_logger
from gateway.settings import Settings
from gateway.store import Database
from keys import KeyRepository, KeysError, Purpose

if TYPE_CHECKING:
    from gateway.state import GatewayState

__all__ = [
    "AuditKeysUnavailable",
    "AuditService",
    "AuditWitnessUnwritable",
    "install_audit",
    "open_audit_keys",
    "shutdown_audit",
]

log = get_logger("gateway.audit")


class AuditKeysUnavailable(RuntimeError):
    """The checkpoint-signing key cannot be loaded under this configuration."""


class AuditWitnessUnwritable(RuntimeError):
    """The sequencer of this process could not keep its checkpoint witness file."""


@dataclass
class AuditService:
    origin: str
    repository: KeyRepository
    #: The tree's upper levels, so proofs read a few tiles of leaves (gateway/audit/subtrees.py).
    subtrees: SubtreeCache = field(default_factory=SubtreeCache)
    #: The last checkpoint this gateway signed, in a file outside the database (witness.py).
    witness: CheckpointWitness | None = None
    #: What the background sequencer last found (integrity refusals), for /metrics.
    health: SequencerHealth = field(default_factory=SequencerHealth)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @property
    def signer(self) -> RingNoteSigner:
        repository, purpose = self.repository, Purpose.CHECKPOINT_SIGNING
        return RingNoteSigner(
            self.origin,
            lambda: repository.ring(purpose),
            reread=lambda: repository.ring_reread(purpose),
        )

    def verifier_keys(self) -> tuple[VerifierKey, ...]:
        return verifier_keys(self.origin, self.repository.ring(Purpose.CHECKPOINT_SIGNING))

    def verifier(self) -> CheckpointVerifier:
        return log_verifier(self.origin, self.repository.ring(Purpose.CHECKPOINT_SIGNING))

    def start(self, db: Database, *, interval: float, batch: int) -> None:
        """Start the background sequencer (no-op when ``interval`` is 0)."""
        if interval <= 0 or self._task is not None:
            return
        self._stop.clear()
        self._task = asyncio.create_task(
            run_sequencer(
                db,
                self.signer,
                self.origin,
                interval=interval,
                batch=batch,
                stop=self._stop,
                turn=sequencer_turn(db),
                witness=self.witness,
                cache=self.subtrees,
                health=self.health,
            ),
            name="audit-sequencer",
        )

    async def stop(self) -> None:
        """Stop the sequencer after its current step (it never leaves a step half done)."""
        if self._task is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=30)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None


def open_audit_keys(settings: Settings) -> AuditService:
    """The audit service over the configured key repository; the checkpoint key must exist."""
    try:
        repository = open_key_repository(settings)
        service = AuditService(
            settings.audit_log_origin,
            repository,
            witness=CheckpointWitness(witness_path(settings)),
        )
        if not service.verifier_keys():
            raise AuditKeysUnavailable("no usable checkpoint-signing key")
        _ = service.signer.public_key
    except KeyRepositoryUnavailable as exc:
        raise AuditKeysUnavailable(str(exc)) from exc
    except KeysError as exc:
        raise AuditKeysUnavailable(f"checkpoint key: {exc.code}: {exc.reason}") from exc
    return service


def install_audit(state: GatewayState) -> None:
    """Load the log's keys into ``state`` and start the background sequencer.

    Without a checkpoint key the production profile refuses to start; other profiles start with
    the checkpoint API answering 503 and entries left unsequenced (they are still written). When
    this process sequences, its checkpoint witness file must be writable: production refuses to
    start otherwise; other profiles start, log it and report it in ``/metrics``.
    """
    settings = state.settings
    try:
        state.audit = open_audit_keys(settings)
    except AuditKeysUnavailable as exc:
        if settings.profile == "production":
            raise
        log.warning("audit_checkpoint_key_unavailable", reason=str(exc)[:200])
        return
    state.loaded_key_purposes.add("audit_checkpoint_signing")
    witness = state.audit.witness
    if settings.audit_sequence_interval_seconds > 0 and witness is not None:
        try:
            witness.check_writable()
        except OSError as exc:
            # Without the file, a log rewritten with its checkpoints is caught only by a copy
            # kept elsewhere: production does not start so (set MAPPA_AUDIT_CHECKPOINT_FILE).
            if settings.profile == "production":
                raise AuditWitnessUnwritable(
                    f"checkpoint witness {witness.path} cannot be written "
                    f"({type(exc).__name__}): set MAPPA_AUDIT_CHECKPOINT_FILE to a writable path"
                ) from exc
            log.warning("audit_checkpoint_witness_unwritable", error=type(exc).__name__)
            state.audit.health.witness_unwritable = True
    state.audit.start(
        state.db,
        interval=settings.audit_sequence_interval_seconds,
        batch=settings.audit_sequence_batch,
    )


async def shutdown_audit(state: GatewayState) -> None:
    if state.audit is not None:
        await state.audit.stop()
