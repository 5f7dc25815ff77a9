"""The authenticate stage: who is calling, for which officer, on what stated basis.

:func:`authenticate` is the one FastAPI dependency every protected route uses. On each call it

1. takes the access token from ``Authorization: DPoP <token>`` and verifies it
   (:func:`gateway.oauth.tokens.verify_access_token`);
2. verifies the ``DPoP`` proof for this method and URL, with ``ath`` over the token, and checks
   that its key is the one the token is bound to (``cnf.jkt``); or, for a token bound to a
   client certificate (RFC 8705, ``cnf.x5t#S256``, sent as ``Authorization: Bearer``), checks
   that a trusted proxy forwarded that very certificate with the call (a token sent under the
   other scheme than its binding's is refused);
3. checks the context headers ``MAPPA-Legal-Basis``, ``MAPPA-Purpose`` and ``MAPPA-Officer`` are
   present and well formed (whether they are lawful is the lawful-basis stage's question);
4. in one statement, checks the agency is still active (a suspension bites on the next call,
   whatever tokens are outstanding) and spends the proof's ``jti`` in the shared replay store
   (grouped with other requests' writes when the state has a group committer); a
   certificate-bound call has no proof to spend, and its statement only checks the agency.

It yields a frozen :class:`Caller`. The case API's routes use :func:`authenticate_deferred`
instead, which does 1-3 and leaves step 4 to the transaction that commits the call's answer
with its audit entry (:mod:`gateway.cases.context`): one commit per call instead of two, and
still nothing released unless the proof was spent there.

Every refusal is audited with its precise reason and answered with the one opaque 401
(``WWW-Authenticate: DPoP ...``) or, for context headers, 400.
Headers are read from the request directly, so a missing one is never FastAPI's 422.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, cast

from sqlalchemy import String, Table, bindparam, exists, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from gateway import errors
from gateway.domain import AgencyStatus
from gateway.flow.group_commit import Unspent
from gateway.logs import get_logger
from gateway.oauth import mtls, replay
from gateway.oauth.dpop import DPoPProof, verify_proof
from gateway.oauth.endpoint import audit_refusal
from gateway.oauth.jose import JoseRefused
from gateway.oauth.tokens import AccessToken, verify_access_token
from gateway.state import GatewayState
from gateway.store.direct import Direct
from gateway.store.models import Agency, UsedJti, UTCDateTime

log = get_logger("gateway.flow.authenticate")

__all__ = [
    "CONTEXT_HEADERS",
    "CONTEXT_PATTERN",
    "Caller",
    "PendingSpend",
    "authenticate",
    "authenticate_deferred",
    "refuse_unspent",
    "settle",
]

#: What a context header value may look like (a code or an officer's identifier).
CONTEXT_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
CONTEXT_HEADERS = ("mappa-legal-basis", "mappa-purpose", "mappa-officer")
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~+/=-]+$")


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated agency system acting for one officer, on a stated basis and purpose."""

    client_id: str
    agency_id: str
    agency_type: str
    role: str
    area: str
    scopes: tuple[str, ...]
    officer: str
    legal_basis: str
    purpose: str
    request_id: str | None
    token_jti: str
    #: What the call proved it holds: the DPoP key's thumbprint, or the client certificate's
    #: (a certificate-bound token). Exactly one is set.
    jkt: str | None
    #: The proof's jti, when the route spends it with its answer (see authenticate_deferred).
    pending: PendingSpend | None = None

    x5t: str | None = None
    #: The case API operation the call runs: its route's name (``gateway/routes/cases.py``),
    #: set when the call starts; what the legal-basis register's ``operations`` name.
    operation_name: str | None = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


def _spend_statement(dialect: str) -> Any:
    """INSERT the spent jti SELECTed only if the agency is active, ignoring a duplicate key."""
    active = exists().where(
        Agency.id == bindparam("agency_id"), Agency.status == AgencyStatus.ACTIVE
    )
    row = select(
        bindparam("key", type_=String()),
        literal("dpop", String()),
        bindparam("agency_id", type_=String()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("expires_at", type_=UTCDateTime()),
    ).where(active)
    columns = ["key", "kind", "agency_id", "seen_at", "expires_at"]
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = cast(Table, UsedJti.__table__)  # Core: a parameter dict is not an ORM bulk insert
    return insert(table).from_select(columns, row).on_conflict_do_nothing().returning(table.c.key)


#: Built once per dialect and run below SQLAlchemy's execution layer (every call spends a
#: proof: gateway.store.direct).
_SPEND = {name: Direct(_spend_statement(name)) for name in ("postgresql", "sqlite")}
#: A certificate-bound call has no proof: the agency's status alone is checked.
_ACTIVE = Direct(
    select(Agency.id).where(
        Agency.id == bindparam("agency_id"), Agency.status == AgencyStatus.ACTIVE
    )
)


def _one_header(request: Request, name: str) -> str | None:
    values = request.headers.getlist(name)
    if len(values) > 1:
        raise errors.InvalidToken(diagnostics={"reason": f"{name}_repeated"})
    return values[0] if values else None


def _access_token(request: Request) -> tuple[str, str]:
    """The scheme (``dpop`` or ``bearer``) and the token of the Authorization header."""
    authorization = _one_header(request, "authorization")
    if not authorization:
        raise errors.InvalidToken(diagnostics={"reason": "token_missing"})
    scheme, _, token = authorization.partition(" ")
    token, scheme = token.strip(), scheme.lower()
    if scheme not in ("dpop", "bearer") or not token or not _TOKEN_CHARS.fullmatch(token):
        raise errors.InvalidToken(diagnostics={"reason": "authorization_malformed"})
    return scheme, token


def _raw_path(request: Request) -> str:
    """The path as the client sent it (still percent-encoded, as it signed it in ``htu``);
    Starlette's ``url.path`` is decoded, so ``/a%2Fb`` would be compared as ``/a/b``."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("ascii", "replace").partition("?")[0]
    return str(request.url.path)


def _context(request: Request) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in CONTEXT_HEADERS:
        found = request.headers.getlist(name)
        if len(found) != 1:
            raise errors.InvalidContext(
                diagnostics={"reason": f"{name}_{'missing' if not found else 'repeated'}"}
            )
        if not CONTEXT_PATTERN.fullmatch(found[0]):
            raise errors.InvalidContext(diagnostics={"reason": f"{name}_malformed"})
        values[name] = found[0]
    return values


def _verify(state: GatewayState, request: Request) -> tuple[AccessToken, DPoPProof | None]:
    """The verified token and proof; no proof for a certificate-bound token (whose certificate
    is checked here instead)."""
    settings = state.settings
    now = state.clock()
    scheme, raw = _access_token(request)
    assert state.token_signer is not None
    try:
        token = verify_access_token(
            raw,
            state.token_signer,
            issuer=settings.issuer,
            audience=settings.api_audience,
            now=now,
            leeway=settings.clock_leeway_seconds,
        )
    except JoseRefused as exc:
        raise errors.InvalidToken(diagnostics={"reason": exc.reason}) from exc
    if token.x5t is not None:
        _certificate_holder(state, request, token, scheme)
        return token, None
    if scheme == "bearer":
        raise errors.InvalidToken(
            diagnostics={"reason": "dpop_token_as_bearer", "agency_id": token.client_id}
        )
    try:
        proof = verify_proof(
            _one_header(request, "dpop"),
            htm=request.method,
            htu=settings.issuer.rstrip("/") + _raw_path(request),
            now=now,
            max_age=settings.dpop_max_age_seconds,
            future_skew=settings.max_future_skew_seconds,
            access_token=raw,
        )
    except JoseRefused as exc:
        raise errors.InvalidDPoPProof(
            diagnostics={"reason": exc.reason, "agency_id": token.client_id}
        ) from exc
    if proof.jkt != token.jkt:
        raise errors.InvalidDPoPProof(
            diagnostics={"reason": "dpop_key_mismatch", "agency_id": token.client_id}
        )
    return token, proof


def _certificate_holder(
    state: GatewayState, request: Request, token: AccessToken, scheme: str
) -> None:
    """Refuse unless the call came through a trusted proxy with the certificate ``token`` is
    bound to (RFC 8705 section 3), under the ``Bearer`` scheme. A refusal challenges with
    ``Bearer``, the scheme the token is used under."""
    refused = {"agency_id": token.client_id}
    if scheme != "bearer":
        raise errors.InvalidCertificateBoundToken(
            diagnostics={"reason": "certificate_token_as_dpop", **refused}
        )
    try:
        presented = mtls.presented_certificate(request, state)
    except mtls.CertificateRefused as exc:
        raise errors.InvalidCertificateBoundToken(
            diagnostics={"reason": exc.reason, **refused}
        ) from exc
    if presented is None:
        raise errors.InvalidCertificateBoundToken(
            diagnostics={"reason": "client_cert_missing", **refused}
        )
    if presented.thumbprint != token.x5t:
        raise errors.InvalidCertificateBoundToken(
            diagnostics={"reason": "client_cert_mismatch", **refused}
        )


@dataclass(frozen=True, slots=True)
class PendingSpend:
    """A verified DPoP proof whose ``jti`` is still to be spent in the replay store.

    Spent in the transaction that releases the answer (the call's audit entry commits with it),
    so a call costs one commit, not two; until it is spent nothing may be released. The spend
    also checks the agency is still active, in the same statement. A certificate-bound call
    has no proof (``key`` None): only the agency's status is checked, the same way."""

    key: str | None
    agency_id: str
    replay_until: dt.datetime
    now: dt.datetime
    request_id: str | None
    method: str
    route: str

    async def spend(self, session: AsyncSession) -> str:
        """``spent``, or why not: ``replayed`` or ``suspended`` (one statement when spent; why
        it was not is looked up only then)."""
        return (await self.spend_all(session, [self]))[0]

    @classmethod
    async def spend_all(cls, session: AsyncSession, spends: Sequence[PendingSpend]) -> list[str]:
        """:meth:`spend` for many proofs in one executemany (a group commit's batch): each
        one's outcome, in order. Each proof's ``jti`` is inserted only if its agency is active
        and the key is new (one statement does both); two proofs with one ``jti`` in a batch:
        the first is spent."""
        keyed = [one for one in spends if one.key is not None]
        statement = _SPEND[session.get_bind().dialect.name]
        spent = (
            await statement.first_of_each(
                session,
                [
                    {
                        "key": one.key,
                        "agency_id": one.agency_id,
                        "now": one.now,
                        "expires_at": one.replay_until,
                    }
                    for one in keyed
                ],
            )
            if keyed
            else []
        )
        if len(keyed) == len(spends):
            rows = spent
        else:
            active = iter(
                await _ACTIVE.first_of_each(
                    session, [{"agency_id": one.agency_id} for one in spends if one.key is None]
                )
            )
            outcomes = iter(spent)
            rows = [next(outcomes) if one.key is not None else next(active) for one in spends]
        return [
            "spent" if row is not None else await one._why_not(session)
            for one, row in zip(spends, rows, strict=True)
        ]

    async def _why_not(self, session: AsyncSession) -> str:
        if self.key is None:
            return "suspended"
        agency = await session.get(Agency, self.agency_id)
        return "replayed" if agency and agency.status == AgencyStatus.ACTIVE else "suspended"


async def refuse_unspent(state: GatewayState, pending: PendingSpend, outcome: str) -> NoReturn:
    """Audit and raise the refusal of a proof that could not be spent."""
    # a certificate-bound call (no proof, key None) is challenged under its own scheme, Bearer
    invalid = (
        errors.InvalidToken if pending.key is not None else errors.InvalidCertificateBoundToken
    )
    exc: errors.AuthenticationFailed = (
        invalid(diagnostics={"reason": "agency_suspended"})
        if outcome == "suspended"
        else errors.InvalidDPoPProof(diagnostics={"reason": "dpop_jti_replayed"})
    )
    await _audit_refusal(state, exc, pending.agency_id, pending.request_id, pending)
    raise exc


async def _nothing(_session: AsyncSession) -> None:
    """The act of a call whose only write is its proof's spend."""


async def settle(state: GatewayState, pending: PendingSpend) -> None:
    """Spend ``pending`` in a commit of its own (a call that committed nothing else), or refuse."""
    if state.commits is not None:
        # Spent with other requests' proofs, in one statement, and committed with their small
        # writes (gateway/flow/group_commit.py).
        try:
            await state.commits.run(_nothing, spend=pending)
            outcome = "spent"
        except Unspent as exc:
            outcome = exc.outcome
    else:
        async with state.db.write() as session:
            outcome = await pending.spend(session)
    if outcome != "spent":
        await refuse_unspent(state, pending, outcome)


def _refusals_within_quota(state: GatewayState, request: Request) -> None:
    """Refused calls are audited one by one, up to the per-address quota of the token endpoint
    (its own bucket per address); beyond it a refusal is 429 with Retry-After, logged with its
    code but not audited: garbage tokens need no key, so without this anyone could fill the
    audit log at the rate the gateway answers."""
    if state.token_limiter is None:
        return
    proxies = mtls.trusted_proxies(state.settings.trusted_proxies)
    try:
        state.token_limiter.check("refused " + mtls.client_address(request, proxies))
    except errors.RateLimited:
        log.info("refusals_rate_limited", code="rate_limited")
        raise


async def _audit_refusal(
    state: GatewayState,
    exc: errors.GatewayError,
    agency_id: str | None,
    request_id: str | None,
    where: PendingSpend | Request,
) -> None:
    await audit_refusal(
        state,
        exc,
        agency_id=agency_id,
        request_id=request_id,
        stage="resource",
        extra={"method": where.method, "route": _route(where)},
    )


def _route(where: PendingSpend | Request) -> str:
    return where.route if isinstance(where, PendingSpend) else where.url.path[:200]


async def authenticate(request: Request) -> Caller:
    """FastAPI dependency: the verified :class:`Caller`, its proof spent, or a refusal that is
    audited."""
    caller = await _authenticate(request)
    assert caller.pending is not None
    await settle(request.app.state.gateway, caller.pending)
    return dataclasses.replace(caller, pending=None)


async def authenticate_deferred(request: Request) -> Caller:
    """FastAPI dependency: the verified :class:`Caller` with its proof still to spend
    (``caller.pending``), for routes whose every answer commits through
    :mod:`gateway.cases.context`, which spends it in the answer's own transaction (and in a
    commit of its own if the call committed nothing). A route that cannot promise that uses
    :func:`authenticate`."""
    return await _authenticate(request)


async def _authenticate(request: Request) -> Caller:
    state: GatewayState = request.app.state.gateway
    if state.token_signer is None:
        raise errors.Unavailable(diagnostics={"reason": "token_signing_key_unavailable"})
    request_id = request.scope.get("state", {}).get("request_id")
    agency_id: str | None = None
    try:
        token, proof = _verify(state, request)
        agency_id = token.client_id
        if state.call_limiter is not None:
            # Before any database work; a 429 is not audited (it would let a flood fill the
            # log), it is counted in the logs with the agency id and code.
            try:
                state.call_limiter.check(token.client_id)
            except errors.RateLimited:
                log.info("rate_limited", agency_id=token.client_id, code="rate_limited")
                raise
        context = _context(request)
    except (errors.AuthenticationFailed, errors.InvalidContext) as exc:
        agency_id = agency_id or exc.diagnostics.get("agency_id")
        _refusals_within_quota(state, request)
        await _audit_refusal(state, exc, agency_id, request_id, request)
        raise
    pending = PendingSpend(
        key=replay.replay_key("dpop", proof.jkt, proof.jti) if proof is not None else None,
        agency_id=token.client_id,
        replay_until=proof.replay_until if proof is not None else state.clock(),
        now=state.clock(),
        request_id=request_id,
        method=request.method,
        route=request.url.path[:200],
    )
    return Caller(
        client_id=token.client_id,
        agency_id=token.client_id,
        agency_type=token.agency_type,
        role=token.role,
        area=token.area,
        scopes=token.scopes,
        officer=context["mappa-officer"],
        legal_basis=context["mappa-legal-basis"],
        purpose=context["mappa-purpose"],
        request_id=request_id,
        token_jti=token.jti,
        jkt=proof.jkt if proof is not None else None,
        x5t=token.x5t,
        pending=pending,
    )
