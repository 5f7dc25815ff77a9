"""The log's checkpoint key: the ``checkpoint-signing`` ring of ``keys/`` as a note signer.

`RingNoteSigner` signs checkpoints with the ring's current Ed25519 key, under the log's origin as
key name (the C2SP convention), and `log_verifier` trusts every usable key of the ring, so that
checkpoints signed before a rotation still verify during the overlap. The private key never
leaves ``keys/``: only `KeyRing.sign_raw` touches it.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.audit.checkpoint import CheckpointVerifier, VerifierKey
from keys import KeyInvalid, KeyRing, ed25519_verify

__all__ = ["RingNoteSigner", "log_verifier", "verifier_keys"]

_ED25519 = "Ed25519"


class RingNoteSigner:
    """A `gateway.audit.checkpoint.NoteSigner` over the current key of a key ring."""

    def __init__(
        self,
        name: str,
        ring: Callable[[], KeyRing],
        *,
        reread: Callable[[], KeyRing] | None = None,
    ) -> None:
        self._name = name
        self._ring = ring
        self._reread = reread

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        ring = self._ring()
        return ring.public_raw(ring.current(_ED25519).kid)

    def verifier_keys(self, *, reread: bool = False) -> tuple[VerifierKey, ...]:
        """The verifier keys of every usable key of the ring (what the sequencer checks the
        latest checkpoint with before it extends the tree). ``reread``: from the ring read again
        (rate-limited by the repository) when one was given, as when another replica signed with
        a key this process has not loaded yet."""
        ring = self._reread() if reread and self._reread is not None else self._ring()
        return verifier_keys(self._name, ring)

    def sign(self, message: bytes, /) -> bytes:
        ring = self._ring()
        kid = ring.current(_ED25519).kid
        signature = ring.sign_raw(message)
        if signature.kid != kid:  # rotated between the two reads: sign again next round
            raise KeyInvalid("checkpoint key rotated while signing")
        return signature.value


def verifier_keys(name: str, ring: KeyRing) -> tuple[VerifierKey, ...]:
    """The verifier keys of every usable Ed25519 key of ``ring``, newest first."""
    return tuple(
        VerifierKey(name, ring.public_raw(key.kid))
        for key in ring.usable()
        if key.info.alg == _ED25519
    )


def log_verifier(name: str, ring: KeyRing) -> CheckpointVerifier:
    """The verifier that accepts this log's checkpoints (origin ``name``)."""
    return CheckpointVerifier(verifier_keys(name, ring), ed25519_verify, name)
