"""A mock agency system's push endpoint: verify, open and store what the gateway delivers.

``POST /mappa/deliveries`` with ``Content-Type: application/jose`` and ``Idempotency-Key``:

0. a body over :data:`MAX_BODY` is 413 ``payload_too_large``: at once when its Content-Length
   says so, else as soon as the bytes read pass the limit (the rest is never read);
1. the JWE is decrypted with the agency's encryption key its ``kid`` names (the current one, or
   one rotated away from and not yet dropped: :class:`~adapters.identity.AgencyIdentity`; a
   kid it does not hold, or none, is 400 ``encryption_key_unknown``, no key tried blindly), and
   the JWS inside verified against the gateway's published signing keys (``ES256`` only); the
   signed body must come from the gateway (``iss``), be addressed to this agency (``aud``) and
   name its kind (``kind``). Anything else is 400 (``bad_signature``, ``misaddressed``,
   ``kind_not_signed``) and nothing is stored. The gateway's keys are fetched again only for a
   ``kid`` not held, at most once per ``jwks_refetch_every`` (:mod:`adapters.gateway_keys`); a
   fetch that failed is 503 ``gateway_keys_unavailable`` with ``Retry-After``, so the relay
   delivers it again later;
2. everything acted on comes from the signed body, never from a header: the kind is the signed
   ``kind`` (a ``MAPPA-Message-Kind`` header that says otherwise is 400 ``kind_mismatch``), the
   message id the signed ``jti``;
3. a ``jti`` already applied answers 200 ``duplicate`` and is not applied again, whatever
   ``Idempotency-Key`` it comes with: the relay may deliver twice, and a captured delivery
   re-posted under a fresh key is the same message;
4. a body issued more than ``max_age`` ago (its ``iat``; :data:`PUSH_MAX_AGE`, longer than the
   relay's retries) or ahead of the clock is 400 ``stale``. Each applied ``jti`` is remembered
   (:class:`SeenDeliveries`, durable in a SQLite file: a receiver is not built without one, but
   for a test that says :meth:`SeenDeliveries.in_memory`) for longer than that, so no body old
   enough to have been forgotten is accepted again, across restarts too;
5. a kind the gateway sends (:data:`~adapters.sdk.GATEWAY_KINDS`) that the adapter does not
   list in :attr:`~adapters.sdk.Adapter.accepts` is kept for a person, as below, never handed
   to the adapter, never refused, never lost: held for review with the code
   ``kind_not_handled`` (an ``erasure`` notice, which the gateway sends when it erased a
   nominal's case data and every agency is to act on under its own retention rules, with the
   code ``erasure_notice``). A 422 would have it dead-lettered on the gateway's side and the
   agency never told. Only a kind the gateway does not send at all (a newer gateway's) is 422
   ``kind_not_accepted``, before anything is applied or remembered: the relay retries it, then
   dead-letters it where the gateway's operator sees it, and retries it once the adapter takes
   it. A ``conformance`` message (``mappa-gateway conformance``) is acknowledged here, never
   handed to the adapter;
6. the adapter applies it (:meth:`adapters.sdk.Adapter.receive`, with the ``jti`` as the message
   id and the signed ``iat`` as :attr:`~adapters.sdk.Delivery.issued_at`: deliveries may come out
   of order, and an adapter answers one older than what it holds ``superseded``), then 200
   ``accepted``. One it refuses (:class:`~adapters.sdk.MappingRefused`: a reference the agency's
   system does not hold, a code it does not know) is kept for a person, sealed as it came, with
   its ``jti``, kind, the refusal's code and when (:class:`HeldDelivery`), in the same SQLite
   transaction that remembers its ``jti``, and only then answered 200 ``held_for_review``: a
   crash before that commit leaves nothing remembered, and the relay delivers it again. A person
   lists them (:meth:`Receiver.held_deliveries`), reads one (:meth:`Receiver.open_held`), applies
   it again once the system can take it (:meth:`Receiver.reapply`) or marks it dealt with by hand
   (:meth:`Receiver.dismiss`).

The receiver is a Starlette app, served on 127.0.0.1 by :func:`serve` (uvicorn) for the demo and
the tests. ``GET /mappa/received`` lists the last :data:`MAX_RECEIPTS` deliveries this process
applied (ids and actions only): a demo and test aid, unauthenticated, so it is served only when
the receiver is built with ``list_received=True`` (the demo does); leave it off in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.compact import (
    MAX_TOKEN_CHARS,
    MalformedSignature,
    jws_registry,
    signing_kid,
)
from adapters.gateway_keys import REFETCH_EVERY, GatewayJwks, KeysUnavailable, check_jwks_url
from adapters.identity import AgencyIdentity, UnknownEncryptionKey
from adapters.sdk import GATEWAY_KINDS, Adapter, Delivery, MappingRefused, Receipt
from gateway.contract.envelope import BODY_TYP, JOSE_MEDIA_TYPE
from gateway.flow.signed_push import PUSH_MAX_AGE, SignedPush

__all__ = [
    "CONFORMANCE_KIND",
    "ERASURE_KIND",
    "ERASURE_NOTICE",
    "HELD_FOR_REVIEW",
    "KIND_NOT_HANDLED",
    "MAX_RECEIPTS",
    "PUSH_MAX_AGE",
    "DeliveryRefused",
    "HeldDelivery",
    "Receiver",
    "SeenDeliveries",
    "decrypt_delivery",
    "open_delivery",
    "serve",
    "stop_on_signals",
    "verify_delivery",
]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SIGN = jws_registry(["ES256"])
#: The largest delivery read; a longer one is 413 before the rest of it is read. The largest
#: JWE the gateway seals (its payload cap, base64url twice, and the headers), and a line end.
MAX_BODY = MAX_TOKEN_CHARS + 2
_DECLARED_LENGTH = re.compile(r"[0-9]+")
#: The largest request header block ``serve`` reads (the gateway's own limit).
MAX_HEADER_BYTES = 16_384
#: How many receipts a receiver keeps in memory (and ``GET /mappa/received`` lists).
MAX_RECEIPTS = 1000
#: The kind of the messages ``mappa-gateway conformance`` pushes: acknowledged by the receiver,
#: never handed to the adapter (they carry no case data).
CONFORMANCE_KIND = "conformance"
#: The notice the gateway sends when it erases a nominal's case data (gateway.cases.erasure).
ERASURE_KIND = "erasure"
#: The code an erasure notice is held under when the adapter does not take it itself.
ERASURE_NOTICE = "erasure_notice"
#: The code any other kind the gateway sends is held under when the adapter does not take it.
KIND_NOT_HANDLED = "kind_not_handled"
#: The action of a delivery verified, refused by the adapter and kept for a person.
HELD_FOR_REVIEW = "held_for_review"
#: The action of a held delivery a person dealt with by hand.
DISMISSED = "dismissed_by_reviewer"


class DeliveryRefused(ValueError):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def open_delivery(
    compact: str, identity: AgencyIdentity, gateway_keys: KeySet, issuer: str
) -> SignedPush:
    """Decrypt with the agency's key, verify the gateway's signature and the addressing."""
    return verify_delivery(decrypt_delivery(compact, identity), identity, gateway_keys, issuer)


def decrypt_delivery(compact: str, identity: AgencyIdentity) -> str:
    """The compact JWS inside a delivery's JWE, not yet verified (anyone can encrypt to the
    agency's public key), opened with the agency's key its ``kid`` names, current or previous
    (``encryption_key_unknown`` for a kid it does not hold, or none)."""
    try:
        return identity.decrypt(compact).decode("ascii")
    except UnknownEncryptionKey as exc:
        raise DeliveryRefused("encryption_key_unknown") from exc
    except (JoseError, ValueError, TypeError, RecursionError, IndexError) as exc:
        raise DeliveryRefused("bad_signature") from exc


def verify_delivery(
    inner: str, identity: AgencyIdentity, gateway_keys: KeySet, issuer: str
) -> SignedPush:
    """Verify the gateway's signature of ``inner`` and its addressing to this agency."""
    try:
        key = gateway_keys.get_by_kid(signing_kid(inner, BODY_TYP))
        verified = jws.deserialize_compact(inner, key, registry=_SIGN)
        signed = SignedPush.model_validate_json(verified.payload)
    except (JoseError, ValueError, TypeError, RecursionError, IndexError) as exc:
        raise DeliveryRefused("bad_signature") from exc
    if signed.iss != issuer.rstrip("/") or signed.aud != identity.agency_id:
        raise DeliveryRefused("misaddressed")
    return signed


#: The store: each applied ``jti`` and its ``iat`` (what pruning goes by) and action (what a
#: duplicate was). Nothing else is read, so nothing else is kept. Beside it, each delivery held
#: for review: sealed as it came (to the agency's key: no case data in clear), with what a
#: person needs to find it; never pruned, only released by a person.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS seen_deliveries (jti TEXT PRIMARY KEY, "
    "iat INTEGER NOT NULL, action TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ix_seen_deliveries_iat ON seen_deliveries (iat)",
    "CREATE TABLE IF NOT EXISTS held_for_review (jti TEXT PRIMARY KEY, kind TEXT NOT NULL, "
    "code TEXT NOT NULL, iat INTEGER NOT NULL, held_at TEXT NOT NULL, "
    "sealed_to TEXT NOT NULL, sealed TEXT NOT NULL)",
)
_HOLD = (
    "INSERT OR REPLACE INTO held_for_review (jti, kind, code, iat, held_at, sealed_to, sealed) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_HELD = (
    "SELECT jti, kind, code, iat, held_at, sealed_to, sealed FROM held_for_review "
    "ORDER BY held_at, jti"
)
_HELD_ONE = (
    "SELECT jti, kind, code, iat, held_at, sealed_to, sealed FROM held_for_review WHERE jti = ?"
)
_REMEMBER = "INSERT OR IGNORE INTO seen_deliveries (jti, iat, action) VALUES (?, ?, ?)"
#: A file made by the first version of this class also has ``kind`` and ``seen_at`` columns,
#: never read but NOT NULL: such a file is used as it is, those two filled with placeholders.
_REMEMBER_FIRST_VERSION = (
    "INSERT OR IGNORE INTO seen_deliveries (jti, iat, action, kind, seen_at) "
    "VALUES (?, ?, ?, '', 0)"
)


@dataclass(frozen=True, slots=True)
class HeldDelivery:
    """A delivery verified, then refused by the adapter, kept for a person to review."""

    #: The signed message id.
    jti: str
    #: The signed kind.
    kind: str
    #: Why the adapter refused it (:attr:`adapters.sdk.MappingRefused.code`).
    code: str
    #: When the gateway signed it (seconds since the epoch).
    iat: int
    #: When it was held (this receiver's clock).
    held_at: dt.datetime
    #: The kid of the agency's encryption key it is sealed to.
    sealed_to: str
    #: The compact JWE as it was received.
    sealed: str = field(repr=False)

    def _row(self) -> tuple[str, str, str, int, str, str, str]:
        return (
            self.jti,
            self.kind,
            self.code,
            self.iat,
            self.held_at.isoformat(),
            self.sealed_to,
            self.sealed,
        )


def _held(row: tuple[Any, ...]) -> HeldDelivery:
    jti, kind, code, iat, held_at, sealed_to, sealed = row
    return HeldDelivery(
        str(jti),
        str(kind),
        str(code),
        int(iat),
        dt.datetime.fromisoformat(str(held_at)),
        str(sealed_to),
        str(sealed),
    )


class SeenDeliveries:
    """The signed id (``jti``) of every delivery applied, with its ``iat`` and action; and the
    deliveries held for review (:class:`HeldDelivery`).

    Kept in a SQLite file at ``path`` (made with mode 0600) so that a restart forgets nothing: a
    captured push replayed after a restart is still a duplicate. :meth:`in_memory` keeps them in
    memory only, for a test; a restart then forgets them all. Rows are dropped once their
    ``iat`` is older than the receiver's retention, longer than the age past which a body is
    refused anyway. No case data is stored here in clear: a held delivery is kept sealed to the
    agency's key, as it came, until a person releases it. A file written by the first version
    of this class (with ``kind`` and ``seen_at`` columns too) is kept as it is and still works.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        if not file.exists():
            os.close(os.open(file, os.O_WRONLY | os.O_CREAT, 0o600))
        self._connect(str(file))
        #: Whether the ids outlive this process (False: :meth:`in_memory`).
        self.durable = True

    @classmethod
    def in_memory(cls) -> SeenDeliveries:
        """Ids kept in memory only, for tests: a restart forgets them, and a captured push
        replayed after it would be applied again. Never in production."""
        seen = cls.__new__(cls)
        seen._connect(":memory:")
        seen.durable = False
        return seen

    def _connect(self, target: str) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        with self._lock:
            for statement in _SCHEMA:
                self._db.execute(statement)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(seen_deliveries)")}
        self._remember = _REMEMBER_FIRST_VERSION if "seen_at" in columns else _REMEMBER

    def action(self, jti: str) -> str | None:
        """What was done with ``jti``, or None if it was never applied (or long forgotten)."""
        with self._lock:
            row = self._db.execute(
                "SELECT action FROM seen_deliveries WHERE jti = ?", (jti,)
            ).fetchone()
        return None if row is None else str(row[0])

    def remember(self, jti: str, *, iat: int, action: str) -> None:
        with self._lock:
            self._db.execute(self._remember, (jti, iat, action))

    def hold(self, held: HeldDelivery) -> None:
        """Keep ``held`` for review and remember its ``jti`` (action :data:`HELD_FOR_REVIEW`),
        in one transaction: both are on disk, or neither. Held again (a reviewer's
        :meth:`Receiver.reapply` refused once more), it is kept with the new code and time."""
        with self._lock, self._transaction():
            self._db.execute(_HOLD, held._row())
            self._db.execute(self._remember, (held.jti, held.iat, HELD_FOR_REVIEW))

    def held(self) -> list[HeldDelivery]:
        """The deliveries held for review, the longest held first."""
        with self._lock:
            rows = self._db.execute(_HELD).fetchall()
        return [_held(row) for row in rows]

    def held_one(self, jti: str) -> HeldDelivery | None:
        with self._lock:
            row = self._db.execute(_HELD_ONE, (jti,)).fetchone()
        return None if row is None else _held(row)

    def release(self, jti: str, action: str) -> None:
        """Drop the held delivery ``jti`` and remember what a person made of it, in one
        transaction (a redelivery of it stays a duplicate)."""
        with self._lock, self._transaction():
            row = self._db.execute(
                "DELETE FROM held_for_review WHERE jti = ? RETURNING iat", (jti,)
            ).fetchone()
            if row is None:
                raise LookupError(f"no delivery {jti!r} is held for review")
            self._db.execute(self._remember, (jti, int(row[0]), action))
            self._db.execute("UPDATE seen_deliveries SET action = ? WHERE jti = ?", (action, jti))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def forget_before(self, iat: int) -> None:
        """Drop the ids of bodies issued before ``iat`` (too old to be accepted again)."""
        with self._lock:
            self._db.execute("DELETE FROM seen_deliveries WHERE iat < ?", (iat,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _body_within(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it is known to be longer than ``limit`` bytes:
    at once when its Content-Length says so, else when the bytes read so far pass the limit
    (a chunked body is never read further than that)."""
    declared = request.headers.get("content-length", "")
    if _DECLARED_LENGTH.fullmatch(declared) and (len(declared) > 18 or int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


def _not_handled(kind: str) -> str:
    """The code a delivery the gateway sends, of a kind the adapter does not take, is held
    under."""
    return ERASURE_NOTICE if kind == ERASURE_KIND else KIND_NOT_HANDLED


def _refused(code: str) -> JSONResponse:
    return JSONResponse({"code": code}, status_code=400)


@dataclass
class Receiver:
    identity: AgencyIdentity
    adapter: Adapter
    issuer: str
    #: The gateway's public signing keys; fetched from ``jwks_url`` when not given, and again
    #: when a delivery names a kid they do not hold (:mod:`adapters.gateway_keys`).
    gateway_keys: KeySet | None = None
    jwks_url: str | None = None
    #: The least time between two fetches of ``jwks_url``: within it, a kid still unknown is
    #: 400 ``bad_signature`` (after a fetch that worked) or 503 with Retry-After (one that
    #: failed).
    jwks_refetch_every: dt.timedelta = REFETCH_EVERY
    #: The CA file (PEM) that ``jwks_url``'s TLS certificate is checked against; the system's
    #: CAs if None.
    jwks_ca_file: str | None = None
    #: For tests: the transport ``jwks_url`` is fetched through.
    jwks_transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False)
    #: What this process applied, by message id (``jti``), the last ``max_receipts`` only;
    #: ``seen`` is what dedupes.
    receipts: dict[str, Receipt] = field(default_factory=dict)
    max_receipts: int = MAX_RECEIPTS
    #: Serve ``GET /mappa/received`` (unauthenticated: for the demo and tests, never production).
    list_received: bool = False
    #: Called after each applied delivery (the demo prints a line).
    on_receipt: Callable[[Delivery, Receipt], None] | None = None
    #: The ids already applied, in a file (``SeenDeliveries(path)``) that outlives a restart;
    #: required (``SeenDeliveries.in_memory()`` says in so many words that a test forgoes it).
    seen: SeenDeliveries | None = None
    #: A body issued longer ago than this is refused (``stale``); ids are kept twice as long.
    max_age: dt.timedelta = PUSH_MAX_AGE
    clock: Callable[[], dt.datetime] = _utcnow
    #: How often ids past their retention are dropped: at the first delivery applied, then at
    #: the first one at least this long after the last pruning (so ids may be kept this much
    #: longer than twice ``max_age``, never shorter).
    prune_every: dt.timedelta = dt.timedelta(hours=1)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _pruned_at: dt.datetime | None = field(default=None, init=False, repr=False)
    _jwks: GatewayJwks | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.seen is None:
            raise ValueError(
                "a receiver needs seen=SeenDeliveries(path): the ids it applied, kept across "
                "restarts (SeenDeliveries.in_memory() for a test only)"
            )
        if self.jwks_url:
            check_jwks_url(self.jwks_url)  # refused when built, not at the first delivery

    @property
    def _seen(self) -> SeenDeliveries:
        assert self.seen is not None  # __post_init__ refuses a receiver without it
        return self.seen

    async def _keys_naming(self, kid: str) -> KeySet:
        """The gateway's keys, fetched again (:class:`GatewayJwks`: at most once per
        ``jwks_refetch_every``) when those held do not name ``kid``."""
        held = self.gateway_keys
        if not self.jwks_url:
            if held is None:
                raise DeliveryRefused("gateway_keys_unknown")
            return held  # a kid it does not name was never the gateway's: bad_signature
        if self._jwks is None:
            self._jwks = GatewayJwks(
                self.jwks_url,
                refetch_every=self.jwks_refetch_every,
                ca_file=self.jwks_ca_file,
                transport=self.jwks_transport,
            )
        self.gateway_keys = await self._jwks.keys_naming(kid, held, self.clock())
        return self.gateway_keys

    async def _open(self, compact: str) -> SignedPush:
        try:
            inner = decrypt_delivery(compact, self.identity)
            kid = signing_kid(inner)
        except MalformedSignature as exc:
            raise DeliveryRefused("bad_signature") from exc
        keys = await self._keys_naming(kid)
        return verify_delivery(inner, self.identity, keys, self.issuer)

    async def handle(self, request: Request) -> JSONResponse:
        if request.headers.get("content-type", "").split(";")[0].strip() != JOSE_MEDIA_TYPE:
            return JSONResponse({"code": "unsupported_media_type"}, status_code=415)
        if not _UUID.fullmatch(request.headers.get("idempotency-key", "")):
            return _refused("idempotency_key_required")
        raw = await _body_within(request, MAX_BODY)
        if raw is None:
            return JSONResponse({"code": "payload_too_large"}, status_code=413)
        try:
            compact = raw.decode("ascii").strip()
            signed = await self._open(compact)
        except UnicodeDecodeError:
            return _refused("bad_signature")
        except DeliveryRefused as exc:
            return _refused(exc.code)
        except KeysUnavailable as exc:  # the relay waits that long, then delivers it again
            return JSONResponse(
                {"code": "gateway_keys_unavailable"},
                status_code=503,
                headers={"Retry-After": str(exc.retry_after)},
            )
        # Every fact acted on is signed: the kind, the message id (jti) and when it was issued.
        if signed.kind is None:
            return _refused("kind_not_signed")
        stated = request.headers.get("mappa-message-kind")
        if stated is not None and stated != signed.kind:
            return _refused("kind_mismatch")
        message_id = signed.jti
        async with self._lock:  # one delivery at a time: the dedupe check and the write agree
            if self._seen.action(message_id) is not None:
                return JSONResponse({"status": "duplicate", "id": message_id})
            now = self.clock()
            if not signed.fresh_at(now, self.max_age):
                return _refused("stale")
            delivery = Delivery(message_id, signed.kind, signed.body, signed.iss, signed.iat)
            if delivery.kind == CONFORMANCE_KIND:
                receipt = Receipt(message_id, "conformance_acknowledged")
            elif delivery.kind in self.adapter.accepts:
                receipt = self._apply(delivery, compact, now)
            elif delivery.kind in GATEWAY_KINDS:  # the gateway sends it: kept for a person
                receipt = self._hold(delivery, compact, now, _not_handled(delivery.kind))
            else:
                # A kind the gateway does not send (a newer gateway's): nothing applied, nothing
                # remembered; the gateway's operator sees it dead-letter and retries it once the
                # adapter takes the kind.
                return JSONResponse({"code": "kind_not_accepted"}, status_code=422)
            if receipt.action != HELD_FOR_REVIEW:  # a held one was remembered as it was kept
                self._seen.remember(message_id, iat=signed.iat, action=receipt.action)
            self._prune(now)
            self._keep(receipt)
        if self.on_receipt is not None:
            self.on_receipt(delivery, receipt)
        return JSONResponse({"status": "accepted", "id": message_id, "action": receipt.action})

    def _apply(self, delivery: Delivery, compact: str, now: dt.datetime) -> Receipt:
        """The adapter's receipt for ``delivery``; one it refuses is held for review, sealed as
        it came, and its ``jti`` remembered in the same transaction."""
        try:
            return self.adapter.receive(delivery)
        except MappingRefused as exc:
            return self._hold(delivery, compact, now, exc.code)

    def _hold(self, delivery: Delivery, compact: str, now: dt.datetime, code: str) -> Receipt:
        """Keep ``delivery`` for a person under ``code``, sealed as it came, its ``jti``
        remembered in the same transaction."""
        held = HeldDelivery(
            delivery.message_id,
            delivery.kind,
            code,
            delivery.issued_at,
            now,
            _sealed_to(compact),
            compact,
        )
        self._seen.hold(held)
        return Receipt(delivery.message_id, HELD_FOR_REVIEW, notes=(code,))

    # -- review: what a person does with the deliveries held -------------------------------

    def held_deliveries(self) -> list[HeldDelivery]:
        """The deliveries held for review, the longest held first."""
        return self._seen.held()

    def open_held(self, jti: str) -> Delivery:
        """The held delivery ``jti`` opened, for a person to read: decrypted with the agency's
        key. Its signature was verified before it was held, and the store is this receiver's own
        (as the ids it remembers are), so it is not verified again: the gateway's signing key
        may have been retired since."""
        held = self._seen.held_one(jti)
        if held is None:
            raise LookupError(f"no delivery {jti!r} is held for review")
        inner = decrypt_delivery(held.sealed, self.identity)
        try:
            payload = jws.extract_compact(inner.encode("ascii")).payload
            signed = SignedPush.model_validate_json(payload)
        except (JoseError, ValueError) as exc:
            raise DeliveryRefused("bad_signature") from exc
        if (signed.jti, signed.kind, signed.aud) != (held.jti, held.kind, self.identity.agency_id):
            raise DeliveryRefused("misaddressed")
        return Delivery(signed.jti, held.kind, signed.body, signed.iss, signed.iat)

    async def reapply(self, jti: str) -> Receipt:
        """Hand the held delivery ``jti`` to the adapter again (once the agency's system holds
        what it lacked, say). Applied (or ``superseded``): released, its action remembered. Refused
        again: kept, with the new code. Of a kind the adapter does not take (now): kept, and
        :class:`DeliveryRefused` with the code it is held under (``kind_not_handled``, or
        ``erasure_notice``, say), since only a person can act on it (then :meth:`dismiss` it)."""
        delivery = self.open_held(jti)
        async with self._lock:
            sealed = self._seen.held_one(jti)
            if sealed is None:  # released meanwhile
                raise LookupError(f"no delivery {jti!r} is held for review")
            if delivery.kind not in self.adapter.accepts:
                raise DeliveryRefused(sealed.code)
            receipt = self._apply(delivery, sealed.sealed, self.clock())
            if receipt.action != HELD_FOR_REVIEW:
                self._seen.release(jti, receipt.action)
            self._keep(receipt)
        return receipt

    async def dismiss(self, jti: str) -> None:
        """Release the held delivery ``jti`` without applying it: a person dealt with it by
        hand. Its ``jti`` stays remembered (a redelivery is a duplicate)."""
        async with self._lock:
            self._seen.release(jti, DISMISSED)

    def _keep(self, receipt: Receipt) -> None:
        """Keep ``receipt``, dropping the oldest kept past ``max_receipts``."""
        self.receipts[receipt.message_id] = receipt
        while len(self.receipts) > max(self.max_receipts, 0):
            del self.receipts[next(iter(self.receipts))]

    def _prune(self, now: dt.datetime) -> None:
        """Drop the ids kept past their retention, if ``prune_every`` has passed since the last
        pruning (or the clock went back)."""
        last = self._pruned_at
        if last is not None and last <= now < last + self.prune_every:
            return
        self._seen.forget_before(int((now - 2 * self.max_age).timestamp()))
        self._pruned_at = now

    async def received(self, request: Request) -> JSONResponse:
        return JSONResponse(
            [{"id": r.message_id, "action": r.action} for r in self.receipts.values()]
        )

    def app(self) -> Starlette:
        routes = [Route("/mappa/deliveries", self.handle, methods=["POST"])]
        if self.list_received:
            routes.append(Route("/mappa/received", self.received, methods=["GET"]))
        return Starlette(routes=routes)


def _sealed_to(compact: str) -> str:
    """The kid of the agency's key a delivery is sealed to (its JWE header's)."""
    try:
        return signing_kid(compact)
    except MalformedSignature:
        return ""


def _server_class() -> Any:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """Leaves signals to the caller (several receivers share one process)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer


def stop_on_signals() -> asyncio.Event:
    """An event the running loop sets on SIGINT or SIGTERM, for a process to wait on before it
    stops cleanly. Where the loop has no signal handlers (Windows' proactor raises
    NotImplementedError) none is installed, and Ctrl+C's KeyboardInterrupt stops the process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def serve(
    receiver: Receiver,
    port: int,
    *,
    host: str = "127.0.0.1",
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    started: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``receiver`` until ``stop`` is set (or for ever)."""
    import uvicorn

    _Server = _server_class()
    config = uvicorn.Config(
        receiver.app(),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        lifespan="off",
        # h11 refuses a header block past the limit as it arrives; httptools (uvicorn's pick
        # when installed) buffers one of any size first.
        http="h11",
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # uvicorn has no started event: poll it for up to 10 s
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    if started is not None:
        started.set()
    if stop is None:
        await task
        return
    await stop.wait()
    server.should_exit = True
    await task
