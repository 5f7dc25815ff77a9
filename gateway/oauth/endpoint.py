"""``POST /oauth/token``: the async shell around the Authlib core.

1. Read the form (``application/x-www-form-urlencoded``, small, no repeated parameter).
2. Parse the client assertion's structure and load the claimed agency's
   :class:`~gateway.oauth.clients.ClientRecord` (from the store, or its registered ``jwks_uri``,
   refetched once if the ``kid`` is new). With no assertion, the ``client_id`` parameter names
   the agency and the certificate a trusted proxy forwarded is its credential
   (``tls_client_auth``, :mod:`gateway.oauth.mtls`).
3. Run Authlib in a worker thread: client authentication, grant checks, DPoP proof, minting.
4. In one transaction: spend the assertion ``jti`` and the proof ``jti`` (those there are) in
   the shared replay store, record the issued token (never the token itself) and audit
   ``token_issue``. Only after that commits is the token returned.

Any refusal is audited (``authentication`` / ``refused``, the precise reason, the agency if it is
a registered one) in its own transaction and answered by the one opaque problem+json.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from gateway import errors
from gateway.contract.types import AGENCY_ID
from gateway.flow.audit import AuditEvent, Operation, Outcome, record
from gateway.logs import get_logger
from gateway.oauth import mtls, replay
from gateway.oauth.assertion import parse_assertion
from gateway.oauth.clients import ClientRecord, load_client, with_fetched_keys
from gateway.oauth.jose import Compact, JoseRefused
from gateway.oauth.jwks import JwksUnavailable
from gateway.oauth.server import TokenRequest, TokenResult
from gateway.store.models import Agency, IssuedToken

if TYPE_CHECKING:
    from gateway.state import GatewayState

__all__ = ["MAX_FORM_BYTES", "audit_refusal", "handle_token_request"]

log = get_logger("gateway.oauth")

MAX_FORM_BYTES = 16_384
_FORM_TYPE = "application/x-www-form-urlencoded"
#: What a client id may be: an agency id as onboarding registers it. Anything else names no
#: client, and is never looked up (a NUL, which PostgreSQL cannot take, would be a 500).
_CLIENT_ID = re.compile(AGENCY_ID)


def _registrable(client_id: str) -> bool:
    return _CLIENT_ID.fullmatch(client_id) is not None


async def _read_form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != _FORM_TYPE:
        raise errors.InvalidOAuthRequest(diagnostics={"reason": "not_form_encoded"})
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise errors.InvalidOAuthRequest(diagnostics={"reason": "form_too_large"})
    try:
        pairs = parse_qsl(
            bytes(body).decode("ascii"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=16,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise errors.InvalidOAuthRequest(diagnostics={"reason": "form_malformed"}) from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise errors.InvalidOAuthRequest(diagnostics={"reason": "parameter_repeated"})
        form[name] = value
    return form


async def _preload(
    state: GatewayState,
    form: dict[str, str],
    now: dt.datetime,
    certificate: mtls.ClientCertificate | None,
) -> tuple[Compact | None, ClientRecord | None, str | None]:
    """Parse the assertion and load the client it claims to be (with no assertion but a
    forwarded certificate: the client that ``client_id`` names, for ``tls_client_auth``); never
    verifies anything."""
    assert state.jwks_fetcher is not None
    raw = form.get("client_assertion")
    if not raw:
        named = form.get("client_id")
        if certificate is None or not named or not _registrable(named):
            return None, None, None  # no client: refused as client_unknown
        async with state.db.read() as session:
            client = await load_client(session, named, with_keys=False)
        return None, client, (client.client_id if client else None)
    try:
        compact = parse_assertion(raw)
    except JoseRefused as exc:
        raise errors.InvalidClient(diagnostics={"reason": exc.reason}) from exc
    claimed = compact.claims.get("iss")
    if not isinstance(claimed, str) or not 0 < len(claimed) <= 64:
        raise errors.InvalidClient(diagnostics={"reason": "assertion_iss_missing"})
    if "client_id" in form and form["client_id"] != claimed:
        raise errors.InvalidClient(diagnostics={"reason": "client_id_mismatch"})
    if not _registrable(claimed):
        return compact, None, None  # as an unregistered client: refused as client_unknown
    async with state.db.read() as session:
        client = await load_client(session, claimed)
    try:  # with no database connection held: a partner's host may be slow, or down
        client = await with_fetched_keys(client, state.jwks_fetcher)
        kid = compact.header.get("kid")
        if client is not None and isinstance(kid, str) and not client.knows_kid(kid):
            client = await with_fetched_keys(client, state.jwks_fetcher, refresh=True)
    except JwksUnavailable as exc:
        raise errors.InvalidClient(
            diagnostics={"reason": exc.reason, "agency_id": claimed}
        ) from exc
    return compact, client, (client.client_id if client else None)


async def handle_token_request(state: GatewayState, request: Request) -> TokenResult:
    """Authenticate the agency and issue a DPoP-bound access token, or raise and audit."""
    if state.authorization_server is None:
        raise errors.Unavailable(diagnostics={"reason": "token_signing_key_unavailable"})
    now = state.clock()
    request_id = request.scope.get("state", {}).get("request_id")
    agency_id: str | None = None
    try:
        form = await _read_form(request)
        try:
            certificate = mtls.presented_certificate(request, state)
        except mtls.CertificateRefused as exc:
            raise errors.InvalidClient(diagnostics={"reason": exc.reason}) from exc
        compact, client, agency_id = await _preload(state, form, now, certificate)
        oauth_request = TokenRequest(
            uri=state.settings.token_endpoint,
            headers=dict(request.headers),
            form=form,
            client=client,
            assertion=compact,
            dpop_proof=_single_header(request, "dpop"),
            now=now,
            certificate=certificate,
        )
        result = await run_in_threadpool(state.authorization_server.issue, oauth_request)
        await _commit_issue(state, oauth_request, now, request_id)
        return result
    except errors.GatewayError as exc:
        agency_id = agency_id or exc.diagnostics.get("agency_id")
        await audit_refusal(state, exc, agency_id=agency_id, request_id=request_id, stage="token")
        raise


def _single_header(request: Request, name: str) -> str | None:
    values = request.headers.getlist(name)
    if len(values) > 1:
        raise errors.TokenRequestProofRefused(diagnostics={"reason": "dpop_repeated"})
    return values[0] if values else None


async def _commit_issue(
    state: GatewayState, oauth_request: TokenRequest, now: dt.datetime, request_id: str | None
) -> None:
    assertion, proof, issued = (
        oauth_request.verified_assertion,
        oauth_request.dpop,
        oauth_request.issued,
    )
    assert issued is not None
    try:
        async with state.db.write() as session:
            if assertion is not None:
                await replay.consume(
                    session,
                    kind="client_assertion",
                    issuer=assertion.client_id,
                    jti=assertion.jti,
                    expires_at=assertion.replay_until,
                    agency_id=assertion.client_id,
                    now=now,
                )
            if proof is not None:
                await replay.consume(
                    session,
                    kind="dpop",
                    issuer=proof.jkt,
                    jti=proof.jti,
                    expires_at=proof.replay_until,
                    agency_id=issued.client_id,
                    now=now,
                )
            session.add(
                IssuedToken(
                    jti=issued.jti,
                    agency_id=issued.client_id,
                    jkt=issued.jkt,
                    x5t_s256=issued.x5t,
                    scopes=list(issued.scopes),
                    issued_at=issued.issued_at,
                    expires_at=issued.expires_at,
                )
            )
            record(
                session,
                AuditEvent(
                    occurred_at=now,
                    operation=Operation.TOKEN_ISSUE,
                    outcome=Outcome.ALLOWED,
                    agency_id=issued.client_id,
                    request_id=request_id,
                    detail={
                        "token_jti": issued.jti,
                        "auth_method": oauth_request.auth_method,
                        **({"jkt": issued.jkt} if issued.jkt else {"x5t#S256": issued.x5t}),
                        **({"kid": assertion.kid} if assertion is not None else {}),
                        "scopes": list(issued.scopes),
                        "expires_at": issued.expires_at.isoformat(),
                    },
                ),
            )
    except replay.Replayed as exc:
        reason = {"reason": f"{exc.kind}_jti_replayed"}
        if exc.kind == "client_assertion":
            raise errors.InvalidClient(diagnostics=reason) from exc
        raise errors.TokenRequestProofRefused(diagnostics=reason) from exc


async def audit_refusal(
    state: GatewayState,
    exc: errors.GatewayError,
    *,
    agency_id: str | None,
    request_id: str | None,
    stage: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Record a refused authentication: the precise reason, never a secret or a token."""
    reason = str(exc.diagnostics.get("reason", exc.code))[:64]
    try:
        async with state.db.write() as session:
            known = agency_id
            if known is not None and await session.get(Agency, known) is None:
                known = None
            record(
                session,
                AuditEvent(
                    occurred_at=state.clock(),
                    operation=Operation.AUTHENTICATION,
                    outcome=Outcome.REFUSED,
                    agency_id=known,
                    request_id=request_id,
                    reason_code=reason,
                    detail={"code": exc.code, "stage": stage, **(extra or {})},
                ),
            )
    except errors.StoreUnavailable:
        # The refusal stands either way; failing to record it must not turn it into a 500.
        log.warning("refusal_not_audited", code=exc.code)
