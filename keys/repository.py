"""Where key rings live: the :class:`KeyRepository` protocol and a file-directory implementation.

Layout of a :class:`FileKeyRepository`::

    <dir>/                         mode 0700
      .lock                        flock'd while rotating, so two processes never rotate at once
      <purpose>/<kid>.json         mode 0600, written atomically (temp file, fsync, rename)
      blind-index.json             the blind-index secret (:mod:`keys.blind_index`), also sealed

Each key file is JSON: ``format`` ("mappa-key/v1"), ``purpose``, ``kid`` (the RFC 7638
thumbprint of the key), ``alg``, ``use``, ``status``, ``created_at``, ``retire_after`` and
``sealed``: the private JWK, envelope-sealed (:mod:`keys.envelope`) with associated data
``mappa-key/v1 || purpose || kid || alg``, so a sealed key cannot be moved to another purpose,
kid or algorithm. On load the key's public half must hash to its kid. ``meta_seal`` seals the
other fields (:func:`keys._keyfiles.meta_aad`): a status or date edited in the file, say a
retired key marked current again, no longer matches it and the file is refused. Only the
repository's writes (generate, rotate, retire, destroy; a rewrap moves the seal with the key) and
:meth:`FileKeyRepository.seal_metadata` (``keys seal-metadata``, for files written before
metadata seals) make one.

Parsed keys are cached: a ring is re-read from disk at most every ``refresh_interval`` (to see
rotations made by other replicas), and a key already parsed is not unsealed again. The cache is
keyed by what the unseal proved: ``(purpose, kid, alg, SHA-256 of the sealed blob's body)``, the
body being the nonce, ciphertext and tag that bind the associated data (a KEK rewrap changes only
the header before it). A hit is a body this process opened with exactly that associated data, so
a file copied into another purpose's folder (its ``purpose`` or ``alg`` edited, its blob
untouched), or holding another blob, misses and is unsealed, and refused, as a fresh process
would refuse it. Metadata seals already checked are remembered the same way (by the digests of
the metadata and of the seal's body), so a ring re-read unseals nothing that has not changed.
"""

from __future__ import annotations

import base64
import builtins
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from . import _hazmat
from ._keyfiles import (
    FORMAT,
    KID_FILE,
    META_SEAL,
    PROFILE,
    encode_record,
    replace_all,
    seal_meta,
    write_file,
)
from ._keyfiles import key_aad as _aad
from ._keyrecord import (
    DEVELOPMENT,
    ParsedKey,
    SealedMeta,
    destroy_change,
    import_private,
    parsed_key,
    plan_meta_seals,
    read_key,
    sealed_meta,
)
from ._rewrap import rewrap_directory
from .envelope import Envelope
from .errors import KeyInvalid, KeyStoreError, KeyUnknown
from .jwk import JoseKey
from .kek import KekSource
from .ring import ALG_KIND, ALG_USE, PURPOSE_ALGS, KeyInfo, KeyRing, KeyStatus, Purpose, RingKey
from .ring import utcnow as _utcnow

__all__ = [
    "DEVELOPMENT",
    "JWKS_PURPOSES",
    "FileKeyRepository",
    "KeyRepository",
]

#: Purposes whose public keys the gateway publishes at /.well-known/jwks.json.
JWKS_PURPOSES = (Purpose.TOKEN_SIGNING, Purpose.PAYLOAD_SIGNING, Purpose.PAYLOAD_ENCRYPTION)


class KeyRepository(Protocol):
    """Holds the key rings; any implementation (files, a database, an HSM) offers these verbs."""

    def ring(self, purpose: Purpose) -> KeyRing:
        """The ring of ``purpose`` (cached; cheap to call per request)."""
        ...

    def ring_knowing(self, purpose: Purpose, kid: str) -> KeyRing:
        """The ring of ``purpose``, re-read first if it does not know ``kid`` (rate-limited):
        another replica may have rotated a moment ago and already published the new key."""
        ...

    def ring_reread(self, purpose: Purpose) -> KeyRing:
        """The ring of ``purpose`` read again, at most once per re-read interval (else the cached
        one): for a caller with no kid to ask for, as when a checkpoint another replica signed
        does not verify with the keys this process has loaded."""
        ...

    def rotate(
        self, purpose: Purpose, overlap: timedelta, *, now: datetime | None = None
    ) -> builtins.list[KeyInfo]:
        """New current keys; the old current ones stay usable for ``overlap``, then retire."""
        ...

    def retire(self, purpose: Purpose, kid: str, *, now: datetime | None = None) -> KeyInfo:
        """Retire one key at once (for example after a compromise)."""
        ...

    def destroy(
        self, purpose: Purpose, kids: Iterable[str] | None = None, *, now: datetime | None = None
    ) -> builtins.list[KeyInfo]:
        """Destroy the private half of retired keys (those named, or every retired one), keeping
        their public half; refuses a key that is not retired."""
        ...

    def list(self) -> builtins.list[KeyInfo]:
        """Metadata of every key of every purpose."""
        ...

    def jwks(
        self, purposes: Iterable[Purpose] = JWKS_PURPOSES, *, now: datetime | None = None
    ) -> dict[str, builtins.list[dict[str, Any]]]:
        """Public halves of the usable keys of ``purposes``."""
        ...


class FileKeyRepository:
    """Key rings stored as envelope-sealed files under one directory.

    ``profile`` is the gateway's profile. Under ``"development"`` new keys are development keys
    (their file says ``"profile": "development"``, under the metadata seal); under any other a
    ring holding a development key is refused (:class:`ProfileRefused`), wherever its files were
    copied. ``None`` (a tool, a test) reads both and makes production keys."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        kek: KekSource | Envelope,
        *,
        refresh_interval: timedelta = timedelta(seconds=30),
        unknown_kid_reload_interval: timedelta = timedelta(seconds=2),
        profile: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.profile = profile
        self._envelope = kek if isinstance(kek, Envelope) else Envelope(kek)
        self._refresh = refresh_interval.total_seconds()
        self._unknown_kid_reload = unknown_kid_reload_interval.total_seconds()
        self._lock = threading.RLock()
        self._rings: dict[Purpose, tuple[float, KeyRing]] = {}
        self._parsed: dict[ParsedKey, JoseKey] = {}
        self._sealed_meta: set[SealedMeta] = set()

    def __repr__(self) -> str:
        return f"FileKeyRepository({str(self.directory)!r})"

    # -- reading -------------------------------------------------------------------------

    def ring(self, purpose: Purpose) -> KeyRing:
        cached = self._rings.get(purpose)
        if cached is not None and time.monotonic() - cached[0] < self._refresh:
            return cached[1]
        with self._lock:
            return self._load(purpose)

    def ring_knowing(self, purpose: Purpose, kid: str) -> KeyRing:
        ring = self.ring(purpose)
        if ring.knows(kid):
            return ring
        return self.ring_reread(purpose)

    def ring_reread(self, purpose: Purpose) -> KeyRing:
        with self._lock:
            cached = self._rings.get(purpose)
            # At most one re-read per interval, so unknown kids sent on purpose cost nothing.
            if cached is None or time.monotonic() - cached[0] >= self._unknown_kid_reload:
                return self._load(purpose)
            return cached[1]

    def reload(self) -> None:
        """Forget cached rings (not parsed keys): the next call re-reads the directory."""
        with self._lock:
            self._rings.clear()

    def list(self) -> builtins.list[KeyInfo]:
        with self._lock:
            return [info for p in Purpose for info in self._load(p).infos()]

    def jwks(
        self, purposes: Iterable[Purpose] = JWKS_PURPOSES, *, now: datetime | None = None
    ) -> dict[str, builtins.list[dict[str, Any]]]:
        return {"keys": [k for p in purposes for k in self.ring(p).jwks(now=now)["keys"]]}

    def _load(self, purpose: Purpose) -> KeyRing:
        folder = self.directory / purpose.value
        keys: builtins.list[RingKey] = []
        try:
            names = sorted(os.listdir(folder)) if folder.is_dir() else []
        except OSError as exc:
            raise KeyStoreError(f"cannot list {purpose} keys: {type(exc).__name__}") from exc
        parsed: set[ParsedKey] = set()
        sealed_meta: set[SealedMeta] = set()
        for name in names:
            if KID_FILE.fullmatch(name):
                key, cache_key, meta_key = read_key(
                    self._envelope,
                    purpose,
                    folder / name,
                    self._parsed,
                    self._sealed_meta,
                    self.profile,
                )
                self._parsed[cache_key] = key.jose_key
                self._sealed_meta.add(meta_key)
                keys.append(key)
                parsed.add(cache_key)
                sealed_meta.add(meta_key)
        ring = KeyRing(purpose, keys)
        # Forget the purpose's keys and seals whose file is gone or changed (the caches stay the
        # size of the directory).
        for stale in [k for k in self._parsed if k[0] is purpose and k not in parsed]:
            del self._parsed[stale]
        self._sealed_meta -= {k for k in self._sealed_meta if k[0] is purpose} - sealed_meta
        self._rings[purpose] = (time.monotonic(), ring)
        return ring

    # -- writing -------------------------------------------------------------------------

    def rotate(
        self, purpose: Purpose, overlap: timedelta, *, now: datetime | None = None
    ) -> builtins.list[KeyInfo]:
        if overlap < timedelta(0):
            raise KeyInvalid("overlap must not be negative")
        moment = now or _utcnow()
        with self._lock, self._flock():
            ring = self._load(purpose)
            created = [self._generate(purpose, alg, moment) for alg in PURPOSE_ALGS[purpose]]
            for info in ring.infos():
                effective = info.status_at(moment)
                if effective is KeyStatus.CURRENT:
                    self._rewrite(info, KeyStatus.PREVIOUS, moment + overlap)
                elif effective is KeyStatus.RETIRED and info.status is not KeyStatus.RETIRED:
                    self._rewrite(info, KeyStatus.RETIRED, info.retire_after)
            self._load(purpose)
            return created

    def retire(self, purpose: Purpose, kid: str, *, now: datetime | None = None) -> KeyInfo:
        moment = now or _utcnow()
        with self._lock, self._flock():
            for info in self._load(purpose).infos():
                if info.kid == kid and info.destroyed_at is not None:
                    return info  # retired for good already: nothing to rewrite
                if info.kid == kid:
                    retired = self._rewrite(info, KeyStatus.RETIRED, moment)
                    self._load(purpose)
                    return retired
        raise KeyUnknown(f"ring {purpose}: kid {kid[:64]!r} unknown")

    def destroy(
        self, purpose: Purpose, kids: Iterable[str] | None = None, *, now: datetime | None = None
    ) -> builtins.list[KeyInfo]:
        """Destroy the private half of the retired keys named (every retired key of the purpose
        when None): their files keep the public half (:func:`keys._keyrecord.destroy_change`).
        The keys destroyed now are returned. All or nothing: a kid unknown or not retired at
        ``now`` raises (:meth:`KeyRing.retired_keys`) and nothing is written."""
        moment = now or _utcnow()
        with self._lock, self._flock():
            chosen = self._load(purpose).retired_keys(kids, now=moment)
            changes = [destroy_change(self._envelope, self.directory, k, moment) for k in chosen]
            replace_all([change for change, _ in changes])
            for change, _ in changes:
                self._sealed_meta.add(sealed_meta(purpose, json.loads(change.new)))
            self._load(purpose)
            return [info for _, info in changes]

    def ensure(self, purpose: Purpose, *, now: datetime | None = None) -> builtins.list[KeyInfo]:
        """Create a current key for each of the purpose's algorithms that has none."""
        moment = now or _utcnow()
        with self._lock, self._flock():
            ring = self._load(purpose)
            created = []
            for alg in PURPOSE_ALGS[purpose]:
                try:
                    ring.current(alg, now=moment)
                except KeyUnknown:
                    created.append(self._generate(purpose, alg, moment))
            self._load(purpose)
            return created

    def rewrap(self, new_kek: KekSource) -> int:
        """Rewrap every sealed private key and the blind-index secret under ``new_kek``, all or
        nothing (:mod:`keys._rewrap`); returns how many files changed.

        Every file is proven to open under ``new_kek`` before any is written, and read back
        under ``new_kek`` alone after; if a step fails the original files are put back (the old
        KEK still opens everything) and the error is raised. Afterwards open the repository
        with ``new_kek`` (the old KEK can then be destroyed). Idempotent: a file already under
        ``new_kek`` is left alone.
        """
        with self._lock, self._flock():
            try:
                count = rewrap_directory(self.directory, self._envelope, new_kek, self._kids)
            finally:
                self._rings.clear()
        self._envelope = Envelope(new_kek)
        return count

    def seal_metadata(self, *, reseal: Iterable[str] = ()) -> builtins.list[KeyInfo]:
        """Seal the metadata of the key files that have no seal (written before metadata seals),
        and of those whose kid is in ``reseal`` (their seal no longer matches: an older version
        rotated or retired them, or an operator accepts an edit); the keys sealed.

        A seal trusts the metadata as it stands: check it first. Each file sealed must hold a
        private key that opens for its purpose, kid and alg; all files are written, or none.
        Files already sealed are not read here (loading a ring checks them)."""
        wanted = set(reseal)
        with self._lock, self._flock():
            changes, sealed = plan_meta_seals(self.directory, self._envelope, wanted)
            unknown = wanted - {info.kid for info in sealed}
            if unknown:
                raise KeyUnknown(f"no key file with kid {sorted(unknown)[0][:64]!r} to reseal")
            replace_all(changes)
            self._rings.clear()
            return sealed

    def _kids(self, envelope: Envelope) -> set[tuple[Purpose, str]]:
        """The keys a new repository over this directory reads with ``envelope``."""
        return {(i.purpose, i.kid) for i in FileKeyRepository(self.directory, envelope).list()}

    def _generate(self, purpose: Purpose, alg: str, moment: datetime) -> KeyInfo:
        use = ALG_USE[alg]
        jose_key = _hazmat.generate_jose_key(ALG_KIND[alg], {"alg": alg, "use": use})
        kid = jose_key.thumbprint()
        jose_key = import_private({**jose_key.as_dict(private=True), "kid": kid})
        info = KeyInfo(purpose, kid, alg, use, KeyStatus.CURRENT, moment, None)
        sealed = self._envelope.seal(
            json.dumps(jose_key.as_dict(private=True)).encode(), _aad(purpose, kid, alg)
        )
        meta = _meta(info)
        if self.profile == DEVELOPMENT:
            meta[PROFILE] = DEVELOPMENT
        record = {
            **meta,
            "sealed": base64.urlsafe_b64encode(sealed).decode("ascii"),
            META_SEAL: seal_meta(self._envelope, meta),
        }
        self._write(self.directory / purpose.value / f"{kid}.json", record)
        self._parsed[parsed_key(purpose, kid, alg, sealed)] = jose_key
        return info

    def _rewrite(self, info: KeyInfo, status: KeyStatus, retire_after: datetime | None) -> KeyInfo:
        path = self.directory / info.purpose.value / f"{info.kid}.json"
        record = json.loads(path.read_bytes())
        updated = KeyInfo(
            info.purpose, info.kid, info.alg, info.use, status, info.created_at, retire_after
        )
        record.update(_meta(updated))
        record[META_SEAL] = seal_meta(self._envelope, record)  # its profile too, if it has one
        self._write(path, record)
        return updated

    def _write(self, path: Path, record: dict[str, Any]) -> None:
        write_file(path, encode_record(record))
        # A seal this process made needs no unsealing to be trusted when the ring is re-read.
        self._sealed_meta.add(sealed_meta(Purpose(record["purpose"]), record))

    @contextmanager
    def _flock(self) -> Iterator[None]:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise KeyStoreError(f"cannot lock key directory: {type(exc).__name__}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _meta(info: KeyInfo) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "purpose": info.purpose.value,
        "kid": info.kid,
        "alg": info.alg,
        "use": info.use,
        "status": info.status.value,
        "created_at": info.created_at.isoformat(),
        "retire_after": info.retire_after.isoformat() if info.retire_after else None,
    }
