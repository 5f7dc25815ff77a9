"""Key rings: current key signs, previous keys verify during overlap, retired keys are refused."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from keys import (
    FileKeyRepository,
    JoseRejected,
    KeyInvalid,
    KeyRetired,
    KeyStatus,
    KeyUnknown,
    Purpose,
    ed25519_verify,
    seal_for,
    sign_jwt,
    unseal_from,
    verify_jwt,
)
from tests.keys.keys_support import T0, Party

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def _claims() -> dict[str, int]:
    return {"exp": int(T0.timestamp()) + 3600}


def test_current_key_signs_and_rotation_switches_it(repository: FileKeyRepository) -> None:
    """After rotate() the ring signs with the new key; the old one is previous."""
    before = repository.ring(Purpose.TOKEN_SIGNING).current(now=T0)
    (created,) = repository.rotate(Purpose.TOKEN_SIGNING, timedelta(hours=2), now=T0)
    ring = repository.ring(Purpose.TOKEN_SIGNING)
    assert ring.current(now=T0).kid == created.kid != before.kid
    token = sign_jwt(_claims(), ring, now=T0)
    assert verify_jwt(token, ring.public_keys(now=T0), typ="JWT", now=T0).kid == created.kid
    statuses = {info.kid: info.status for info in ring.infos()}
    assert statuses == {before.kid: KeyStatus.PREVIOUS, created.kid: KeyStatus.CURRENT}


def test_old_key_verifies_during_overlap_and_is_refused_once_retired(
    repository: FileKeyRepository,
) -> None:
    """A token signed before rotation verifies until retire_after, then key_retired."""
    old_ring = repository.ring(Purpose.TOKEN_SIGNING)
    token = sign_jwt({"exp": int(T0.timestamp()) + 86400}, old_ring, now=T0)
    repository.rotate(Purpose.TOKEN_SIGNING, timedelta(hours=2), now=T0)
    ring = repository.ring(Purpose.TOKEN_SIGNING)
    during = T0 + timedelta(hours=1, minutes=59)
    after = T0 + timedelta(hours=2)
    assert verify_jwt(token, ring.public_keys(now=during), typ="JWT", now=during)
    with pytest.raises(JoseRejected, match="unknown"):
        verify_jwt(token, ring.public_keys(now=after), typ="JWT", now=after)
    old_kid = old_ring.current(now=T0).kid
    with pytest.raises(KeyRetired):
        ring.get(old_kid, now=after)
    with pytest.raises(JoseRejected, match="key_retired"):
        verify_jwt(token, lambda kid: ring.get(kid, now=after).public, typ="JWT", now=after)


def test_rotation_marks_expired_previous_keys_retired(repository: FileKeyRepository) -> None:
    """Rotating again after the overlap writes status retired on the oldest key."""
    first = repository.ring(Purpose.PAYLOAD_SIGNING).current(now=T0).kid
    repository.rotate(Purpose.PAYLOAD_SIGNING, timedelta(hours=1), now=T0)
    repository.rotate(Purpose.PAYLOAD_SIGNING, timedelta(hours=1), now=T0 + timedelta(hours=3))
    infos = {i.kid: i for i in repository.ring(Purpose.PAYLOAD_SIGNING).infos()}
    assert infos[first].status is KeyStatus.RETIRED
    assert sorted(i.status.value for i in infos.values()) == ["current", "previous", "retired"]


def test_retire_now_refuses_the_key_immediately(repository: FileKeyRepository) -> None:
    """After a compromise the operator retires a key: it stops verifying at once."""
    ring = repository.ring(Purpose.TOKEN_SIGNING)
    token = sign_jwt(_claims(), ring, now=T0)
    kid = ring.current(now=T0).kid
    repository.rotate(Purpose.TOKEN_SIGNING, timedelta(days=7), now=T0)
    repository.retire(Purpose.TOKEN_SIGNING, kid, now=T0)
    ring = repository.ring(Purpose.TOKEN_SIGNING)
    with pytest.raises(JoseRejected):
        verify_jwt(token, ring.public_keys(now=T0), typ="JWT", now=T0)
    assert kid not in {k["kid"] for k in repository.jwks(now=T0)["keys"]}
    with pytest.raises(KeyUnknown):
        repository.retire(Purpose.TOKEN_SIGNING, "no-such-kid", now=T0)


def test_payload_encryption_ring_has_ec_and_rsa_current_keys(
    repository: FileKeyRepository,
) -> None:
    """The gateway's decryption ring holds one current key per allowed JWE algorithm."""
    ring = repository.ring(Purpose.PAYLOAD_ENCRYPTION)
    assert ring.current("ECDH-ES+A256KW").public.jwk["crv"] == "P-256"
    assert ring.current("RSA-OAEP-256").jose_key.public_key.key_size == 3072
    repository.rotate(Purpose.PAYLOAD_ENCRYPTION, timedelta(hours=1), now=T0)
    ring = repository.ring(Purpose.PAYLOAD_ENCRYPTION)
    assert len(ring.usable(now=T0)) == 4


def test_jwks_holds_public_halves_with_kid_use_alg_including_previous(
    repository: FileKeyRepository,
) -> None:
    """The JWKS publishes current and previous keys, no private member, no checkpoint key."""
    repository.rotate(Purpose.TOKEN_SIGNING, timedelta(hours=1), now=T0)
    jwks = repository.jwks(now=T0)
    assert len(jwks["keys"]) == 5  # 2 token-signing, 1 payload-signing, 2 payload-encryption
    for key in jwks["keys"]:
        assert not PRIVATE_MEMBERS & set(key), key
        assert {"kid", "use", "alg", "kty"} <= set(key)
        assert key["use"] == ("enc" if key["alg"] in {"ECDH-ES+A256KW", "RSA-OAEP-256"} else "sig")
    assert not {k["kid"] for k in jwks["keys"]} & {
        i.kid for i in repository.ring(Purpose.CHECKPOINT_SIGNING).infos()
    }
    later = repository.jwks(now=T0 + timedelta(hours=1))
    assert len(later["keys"]) == 4


def test_checkpoint_ring_signs_raw_ed25519(repository: FileKeyRepository) -> None:
    """sign_raw gives a 64-byte Ed25519 signature that ed25519_verify accepts, for signed notes."""
    ring = repository.ring(Purpose.CHECKPOINT_SIGNING)
    note = b"mappa.example/audit\n42\nq1bNi4...\n"
    signature = ring.sign_raw(note)
    public = ring.public_raw(signature.kid)
    assert len(public) == 32 and len(signature.value) == 64
    assert ed25519_verify(public, signature.value, note)
    assert not ed25519_verify(public, signature.value, note + b"x")
    assert not ed25519_verify(public[:31], signature.value, note)
    with pytest.raises(KeyInvalid):
        repository.ring(Purpose.TOKEN_SIGNING).sign_raw(note)


def test_retired_checkpoint_key_gives_its_public_half_only_when_asked(
    repository: FileKeyRepository,
) -> None:
    """A retired key's raw public key is refused by default and given with retired=True (to
    check what it signed before; audit resign-head), never a signature by it."""
    ring = repository.ring(Purpose.CHECKPOINT_SIGNING)
    note = b"mappa.example/audit\n7\nq1bNi4...\n"
    signature = ring.sign_raw(note, now=T0)
    repository.rotate(Purpose.CHECKPOINT_SIGNING, timedelta(0), now=T0)
    repository.retire(Purpose.CHECKPOINT_SIGNING, signature.kid, now=T0)
    ring = repository.ring(Purpose.CHECKPOINT_SIGNING)
    with pytest.raises(KeyRetired):
        ring.public_raw(signature.kid, now=T0)
    assert ed25519_verify(ring.public_raw(signature.kid, retired=True), signature.value, note)
    assert ring.sign_raw(note, now=T0).kid != signature.kid
    with pytest.raises(KeyUnknown):
        ring.public_raw("never-a-kid", retired=True)


def test_rotation_under_concurrent_traffic_has_zero_failures(
    repository: FileKeyRepository,
) -> None:
    """Threads sign, verify, seal and unseal while another rotates every ring: nothing fails."""
    me = Party(repository)
    failures: list[BaseException] = []
    done = threading.Event()
    counts = {"jwt": 0, "jose": 0}

    def tokens() -> None:
        while not done.is_set():
            try:
                token = sign_jwt(_claims(), repository.ring(Purpose.TOKEN_SIGNING), now=T0)
                ring = repository.ring(Purpose.TOKEN_SIGNING)
                verify_jwt(token, ring.public_keys(now=T0), typ="JWT", now=T0)
                counts["jwt"] += 1
            except BaseException as exc:
                failures.append(exc)

    def bodies() -> None:
        while not done.is_set():
            try:
                recipient = repository.jwks(now=T0)["keys"]
                ec = next(k for k in recipient if k["alg"] == "ECDH-ES+A256KW")
                signer = repository.ring(Purpose.PAYLOAD_SIGNING)
                token = seal_for(b"under load", signer, ec, now=T0)
                senders = repository.ring(Purpose.PAYLOAD_SIGNING).jwks(now=T0)
                ring = repository.ring(Purpose.PAYLOAD_ENCRYPTION)
                assert unseal_from(token, ring, senders, now=T0).payload == b"under load"
                counts["jose"] += 1
            except BaseException as exc:
                failures.append(exc)

    workers = [threading.Thread(target=tokens) for _ in range(3)]
    workers += [threading.Thread(target=bodies) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        for round_ in range(4):
            time.sleep(0.05)
            for purpose in (Purpose.TOKEN_SIGNING, Purpose.PAYLOAD_SIGNING):
                repository.rotate(purpose, timedelta(hours=1), now=T0)
            if round_ == 1:
                repository.rotate(Purpose.PAYLOAD_ENCRYPTION, timedelta(hours=1), now=T0)
        time.sleep(0.05)
    finally:
        done.set()
        for worker in workers:
            worker.join()
    assert failures == []
    assert counts["jwt"] > 0 and counts["jose"] > 0
    assert len(repository.ring(Purpose.TOKEN_SIGNING).usable(now=T0)) == 5
    assert len(repository.ring(Purpose.PAYLOAD_ENCRYPTION).usable(now=T0)) == 4
    assert me.signing is not repository.ring(Purpose.PAYLOAD_SIGNING)
