"""Helpers shared by the keys/ tests (imported by name: conftest modules are not importable)."""

from __future__ import annotations

from datetime import UTC, datetime

from keys import FileKeyRepository, KeyRing, Purpose

#: A fixed instant for tests that inject the clock.
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Party:
    """One side of an exchange: its signing ring and its decryption ring."""

    def __init__(self, repository: FileKeyRepository) -> None:
        self.repository = repository
        self.signing: KeyRing = repository.ring(Purpose.PAYLOAD_SIGNING)
        self.decryption: KeyRing = repository.ring(Purpose.PAYLOAD_ENCRYPTION)

    def ec_public(self) -> dict[str, object]:
        return dict(self.decryption.current("ECDH-ES+A256KW").public.jwk)

    def rsa_public(self) -> dict[str, object]:
        return dict(self.decryption.current("RSA-OAEP-256").public.jwk)
