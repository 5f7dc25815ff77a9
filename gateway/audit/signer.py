"""The log's checkpoint key: the ``checkpoint-signing`` ring of ``keys/`` as a note signer.

`RingNoteSigner` signs checkpoints with the ring's current Ed25519 key, under the log's origin as
key name (the C2SP convention), and `log_verifier` trusts every usable key of the ring, so that
checkpoints signed before a rotation still verify during the overlap. Retired keys are trusted
nowhere in verification; `historic_verifier` alone also holds them, for ``audit resign-head``
(`gateway.audit.resign`), which checks what a retired key signed before it re-signs the head,
together with the entries themselves. The private key never leaves ``keys/``: only
`KeyRing.sign_raw` touches it.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.audit.checkpoint import CheckpointVerifier, VerifierKey, parse_signed_note
from keys import KeyInvalid, KeyRing, ed25519_verify

__all__ = ["RingNoteSigner", "historic_verifier", "log_verifier", "signed_by", "verifier_keys"]

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

    @property
    def kid(self) -> str:
        """The kid (in ``keys/``) of the ring's current key, the one that signs."""
        return self._ring().current(_ED25519).kid

    @property
    def ring(self) -> KeyRing:
        """The key ring as it stands now."""
        return self._ring()

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


def _every_key(name: str, ring: KeyRing) -> dict[str, VerifierKey]:
    """``{kid: verifier key}`` of every Ed25519 key of ``ring``, retired ones included."""
    return {
        info.kid: VerifierKey(name, ring.public_raw(info.kid, retired=True))
        for info in ring.infos()
        if info.alg == _ED25519
    }


def historic_verifier(name: str, ring: KeyRing) -> CheckpointVerifier:
    """A verifier of what any key of ``ring`` ever signed, retired keys included: never for the
    log's own verification (a retired key may be compromised), only to check, beside the entries
    themselves, a head or a witness note signed before a retirement."""
    return CheckpointVerifier(tuple(_every_key(name, ring).values()), ed25519_verify, name)


def signed_by(note: str, name: str, ring: KeyRing) -> tuple[str, ...]:
    """The kids of the keys of ``ring`` (retired ones included) whose signature lines ``note``
    carries; the signatures are not checked here."""
    lines = {(sig.key_name, sig.key_id) for sig in parse_signed_note(note).signatures}
    return tuple(
        kid for kid, key in _every_key(name, ring).items() if (key.name, key.key_id) in lines
    )


def log_verifier(name: str, ring: KeyRing) -> CheckpointVerifier:
    """The verifier that accepts this log's checkpoints (origin ``name``)."""
    return CheckpointVerifier(verifier_keys(name, ring), ed25519_verify, name)
