"""The authenticate stage: who is calling, for which officer, on what stated basis.

:func:`authenticate` is the one FastAPI dependency every protected route uses. On each call it

1. takes the access token from ``Authorization: DPoP <token>`` (a DPoP-bound token sent as
   ``Bearer`` is refused) and verifies it (:func:`gateway.oauth.tokens.verify_access_token`);
2. verifies the ``DPoP`` proof for this method and URL, with ``ath`` over the token, and checks
   that its key is the one the token is bound to (``cnf.jkt``);
3. checks the context headers ``MAPPA-Legal-Basis``, ``MAPPA-Purpose`` and ``MAPPA-Officer`` are
   present and well formed (whether they are lawful is the lawful-basis stage's question);
4. in one transaction, checks the agency is still active (a suspension bites on the next call,
   whatever tokens are outstanding) and spends the proof's ``jti`` in the shared replay store.

It yields a frozen :class:`Caller`. Every refusal is audited with its precise reason and
answered with the one opaque 401 (``WWW-Authenticate: DPoP ...``) or, for context headers, 400.
Headers are read from the request directly, so a missing one is never FastAPI's 422.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request

from gateway import errors
from gateway.domain import AgencyStatus
from gateway.logs import get_logger
from gateway.oauth import replay
from gateway.oauth.dpop import DPoPProof, verify_proof
from gateway.oauth.endpoint import audit_refusal
from gateway.oauth.jose import JoseRefused
from gateway.oauth.tokens import AccessToken, verify_access_token
from gateway.state import GatewayState
from gateway.store.models import Agency

log = get_logger("gateway.flow.authenticate")

__all__ = ["CONTEXT_HEADERS", "CONTEXT_PATTERN", "Caller", "authenticate"]

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
    jkt: str

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


def _one_header(request: Request, name: str) -> str | None:
    values = request.headers.getlist(name)
    if len(values) > 1:
        raise errors.InvalidToken(diagnostics={"reason": f"{name}_repeated"})
    return values[0] if values else None


def _access_token(request: Request) -> str:
    authorization = _one_header(request, "authorization")
    if not authorization:
        raise errors.InvalidToken(diagnostics={"reason": "token_missing"})
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer":
        raise errors.InvalidToken(diagnostics={"reason": "dpop_token_as_bearer"})
    if scheme.lower() != "dpop" or not token or not _TOKEN_CHARS.match(token):
        raise errors.InvalidToken(diagnostics={"reason": "authorization_malformed"})
    return token


def _context(request: Request) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in CONTEXT_HEADERS:
        found = request.headers.getlist(name)
        if len(found) != 1:
            raise errors.InvalidContext(
                diagnostics={"reason": f"{name}_{'missing' if not found else 'repeated'}"}
            )
        if not CONTEXT_PATTERN.match(found[0]):
            raise errors.InvalidContext(diagnostics={"reason": f"{name}_malformed"})
        values[name] = found[0]
    return values


def _verify(state: GatewayState, request: Request) -> tuple[AccessToken, DPoPProof]:
    settings = state.settings
    now = state.clock()
    raw = _access_token(request)
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
    try:
        proof = verify_proof(
            _one_header(request, "dpop"),
            htm=request.method,
            htu=settings.issuer.rstrip("/") + request.url.path,
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


async def authenticate(request: Request) -> Caller:
    """FastAPI dependency: the verified :class:`Caller`, or a refusal that is audited."""
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
        now = state.clock()
        try:
            async with state.db.write() as session:
                agency = await session.get(Agency, token.client_id)
                if agency is None or agency.status != AgencyStatus.ACTIVE:
                    raise errors.InvalidToken(diagnostics={"reason": "agency_suspended"})
                await replay.consume(
                    session,
                    kind="dpop",
                    issuer=proof.jkt,
                    jti=proof.jti,
                    expires_at=proof.replay_until,
                    agency_id=token.client_id,
                    now=now,
                )
        except replay.Replayed as exc:
            raise errors.InvalidDPoPProof(diagnostics={"reason": "dpop_jti_replayed"}) from exc
    except (errors.AuthenticationFailed, errors.InvalidContext) as exc:
        agency_id = agency_id or exc.diagnostics.get("agency_id")
        await audit_refusal(
            state,
            exc,
            agency_id=agency_id,
            request_id=request_id,
            stage="resource",
            extra={"method": request.method, "route": request.url.path[:200]},
        )
        raise
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
        jkt=proof.jkt,
    )
