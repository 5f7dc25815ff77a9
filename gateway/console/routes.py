"""The IG console at ``/console``: server-rendered pages, htmx for partial updates.

Pages: sign in and out; search and filter entries; the refusals; an entry's detail with its
inclusion proof checked on the server; the checkpoint and the verifier's verdict; CSV export and
the verifiable export pack. Only signed-in IG officers see any of it. Every action (sign-in,
failed sign-in, search, view, integrity run, export, sign-out) is audited, as operation
``console``, *before* anything is shown: if the entry cannot be written the page is a 503.

Each officer reads within their review scope (`gateway.console.scope`): searches, the
refusals, the CSV and an entry's page are read through `gateway.audit.search.within`, in the
database, so an entry of another area is never loaded; its page is the 404 of an entry that
does not exist, by the same path. The verifiable export pack holds the whole log, so only a
national officer gets it. The Integrity page verifies the whole log for anyone: it names
entries by their place in the tree (seq) only, never an id, a nominal or an agency.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Final, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from gateway import errors
from gateway.audit import log as audit_log
from gateway.audit.canonical import AUDIT_ENTRY_FIELDS
from gateway.audit.commit import Audited, commit_audited, record_alone
from gateway.audit.export import verify_database
from gateway.audit.search import (
    MAX_LIMIT,
    EntryFilter,
    SearchQuery,
    entry_within,
    parse_query,
    search_entries,
)
from gateway.audit.verify import LEAF_HASH_KEY, VerificationReport
from gateway.audit.witness import WitnessRead, read_witness
from gateway.console.accounts import check_password, officer_by_id, oidc_officer
from gateway.console.checks import check_entry, pending_bound, unsequenced_status
from gateway.console.exports import (
    BUSY,
    ReleasingStream,
    busy,
    hold_export_slot,
    pack_refusal,
    pack_response,
    per_process,
    since_param,
    since_refusal,
)
from gateway.console.limits import INTEGRITY_RUNS, IntegrityCache, LogState, Slots
from gateway.console.oidc import OIDC_COOKIE, OidcLoginFailed, OidcSignIn
from gateway.console.render import csv_rows, render, secure_headers
from gateway.console.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    OfficerSession,
    check_csrf,
    close_session,
    current_session,
    open_session,
)
from gateway.console.throttle import (
    BAD_CREDENTIALS,
    LOGIN_THROTTLED,
    LoginAttempt,
    LoginThrottle,
    settle,
)
from gateway.contract.types import is_resource_id
from gateway.flow.audit import AuditEvent, Operation, Outcome
from gateway.logs import get_logger
from gateway.oauth import mtls
from gateway.state import GatewayState
from gateway.store.models import AuditCheckpoint, AuditEntry, IGOfficer

__all__ = ["router"]

router = APIRouter(prefix="/console", include_in_schema=False)
log = get_logger("gateway.console")

_STATIC: Final = Path(__file__).parent / "static"
_STATIC_FILES: Final = {
    "htmx.min.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_FORM_LIMIT: Final = 8192
_BAD_LOGIN: Final = "The officer id or password is not right."
_CSV_LIMIT: Final = 100_000
#: The CSV is read and sent this many rows at a time (one search page each).
_CSV_PAGE: Final = MAX_LIMIT
_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("nominal", "Nominal"),
    ("agency", "Agency"),
    ("officer", "Officer"),
    ("legal_basis", "Legal basis"),
    ("purpose", "Purpose"),
    ("operation", "Operation"),
    ("outcome", "Outcome"),
    ("from", "From (date)"),
    ("to", "To (date)"),
)
#: An audit entry's id, as the gateway issues it: nothing else is looked up.


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def _request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


async def _officer(request: Request) -> OfficerSession | None:
    state = _state(request)
    return await current_session(
        state.db,
        request.cookies.get(SESSION_COOKIE),
        now=state.clock(),
        idle_seconds=state.settings.console_session_idle_seconds,
    )


def _to_login() -> RedirectResponse:
    return RedirectResponse("/console/login", status_code=303, headers=secure_headers())


async def _audit(
    request: Request,
    action: str,
    officer_id: str | None,
    *,
    outcome: Outcome = Outcome.ALLOWED,
    rule: str | None = None,
    reason_code: str | None = None,
    record_refs: tuple[str, ...] = (),
    attempt: LoginAttempt | None = None,
    **detail: Any,
) -> None:
    """Record a console action; raises AuditUnavailable (503) so nothing is shown unaudited.
    With ``attempt``, the sign-in's reservation is taken away in the same transaction."""
    event = AuditEvent(
        operation=Operation.CONSOLE,
        outcome=outcome,
        officer_id=officer_id,
        request_id=_request_id(request),
        rule=rule,
        reason_code=reason_code,
        record_refs=record_refs,
        detail={"action": action, **detail},
    )
    if attempt is None:
        await record_alone(_state(request).db, event)
        return
    reserved = attempt

    async def settled(session: AsyncSession) -> Audited[None]:
        await settle(session, reserved)
        return Audited(None, event)

    await commit_audited(_state(request).db, settled)


def _check_origin(request: Request) -> None:
    """A POST must come from the gateway's own pages (SameSite=Strict is the first line)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return
    issuer = urlsplit(_state(request).settings.issuer)
    allowed = {f"{issuer.scheme}://{issuer.netloc}", f"{request.url.scheme}://{request.url.netloc}"}
    if origin not in allowed:
        raise errors.CsrfRejected(diagnostics={"reason": "foreign_origin"})


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise errors.UnsupportedMediaType()
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > _FORM_LIMIT:
            raise errors.PayloadTooLarge()
    try:
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=8)
    except ValueError as exc:  # more fields than any console form has
        raise errors.MalformedBody(diagnostics={"reason": "too_many_fields"}) from exc
    return dict(pairs)


async def _checked_form(
    request: Request, expected: Callable[[], str | None], officer_id: str | None = None
) -> dict[str, str]:
    """The posted form, from this origin and carrying the CSRF token ``expected`` gives.

    A refusal is audited (``csrf_rejected``) as long as the address's sign-in bucket allows,
    like a failed sign-in; past it, only logged: a forged form needs no secret to send."""
    try:
        _check_origin(request)
        form = await _form(request)
        check_csrf(expected(), form.get("csrf_token"))
    except errors.CsrfRejected as exc:
        if _throttle(request).address_allows(_address(request)):
            await _audit(
                request,
                "csrf_rejected",
                officer_id,
                outcome=Outcome.REFUSED,
                reason_code=exc.code,
                check=str(exc.diagnostics.get("reason", "token")),
            )
        else:
            log.info("console_refusal_not_audited", code=exc.code)
        raise
    return form


@router.get("")
async def index() -> RedirectResponse:
    return RedirectResponse("/console/entries", status_code=303, headers=secure_headers())


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in _STATIC_FILES:
        raise errors.NotFound()
    content = await asyncio.to_thread((_STATIC / name).read_bytes)
    headers = {**secure_headers(), "Cache-Control": "public, max-age=3600"}
    return Response(content, media_type=_STATIC_FILES[name], headers=headers)


@router.get("/login")
async def login_page(request: Request) -> Response:
    if await _officer(request) is not None:
        return RedirectResponse("/console/entries", status_code=303, headers=secure_headers())
    return _login_form(request)


def _login_form(request: Request, error: str | None = None, status: int = 200) -> Response:
    token = request.cookies.get(LOGIN_COOKIE)
    if not token or len(token) > 64:
        token = secrets.token_urlsafe(24)
    settings = _state(request).settings
    response = render(
        "login.html",
        {
            "officer": None,
            "error": error,
            "login_csrf": token,
            "oidc": settings.console_oidc_issuer is not None,
            "password_login": settings.console_password_login,
        },
        status=status,
    )
    response.set_cookie(
        LOGIN_COOKIE, token, max_age=1800, secure=True, httponly=True, samesite="strict", path="/"
    )
    return response


def _throttle(request: Request) -> LoginThrottle:
    """This process's sign-in throttle (made on first use, one per app)."""
    throttle = getattr(request.app.state, "console_login_throttle", None)
    if not isinstance(throttle, LoginThrottle):
        throttle = LoginThrottle(_state(request).settings)
        request.app.state.console_login_throttle = throttle
    return throttle


def _address(request: Request) -> str:
    """The client's address for the per-address bucket, as the token endpoint takes it: behind
    a trusted proxy, the address it appended to X-Forwarded-For; else the socket's peer."""
    proxies = mtls.trusted_proxies(_state(request).settings.trusted_proxies)
    return mtls.client_address(request, proxies)


async def _refuse_login(
    request: Request, officer_id: str | None, reason: str, **detail: Any
) -> Response:
    """Audit a refused sign-in; every refusal answers the same page, whatever its reason."""
    await _audit(
        request, "login_failed", officer_id, outcome=Outcome.REFUSED, reason_code=reason, **detail
    )
    return _login_form(request, _BAD_LOGIN, status=401)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _checked_form(request, lambda: request.cookies.get(LOGIN_COOKIE))
    state = _state(request)
    officer_id = form.get("officer_id", "")[:200]
    # The audit keeps the id as typed, control characters and all, except a NUL: no account
    # has one and PostgreSQL cannot store it, so such an id is neither looked up nor recorded.
    typed = officer_id if "\x00" not in officer_id else ""
    withheld = {} if typed == officer_id else {"officer_id_withheld": "nul"}
    if not state.settings.console_password_login:
        return await _refuse_login(request, typed or None, "password_login_disabled", **withheld)
    throttle = _throttle(request)
    if not throttle.address_allows(_address(request)):
        return await _refuse_login(
            request, typed or None, LOGIN_THROTTLED, limit="address", **withheld
        )
    if withheld:
        return await _refuse_login(request, None, BAD_CREDENTIALS, **withheld)
    with throttle.admission() as admitted:
        if not admitted:  # as many sign-ins as this process checks at once: none queues
            return await _refuse_login(request, officer_id or None, LOGIN_THROTTLED, limit="busy")
        # Counted as a failure before the password is checked: concurrent attempts take turns
        # at the per-id limit, and at most that many passwords are checked.
        attempt = await throttle.reserve(state.db, officer_id, state.clock())
        if attempt is None:
            return await _refuse_login(
                request, officer_id or None, LOGIN_THROTTLED, limit="account"
            )
        async with state.db.read() as session:
            found = await officer_by_id(session, officer_id)
        officer = await check_password(
            found, form.get("password", "")[:200], limiter=throttle.hashing
        )
    if officer is None:  # the failure's audit entry counts from now on, instead of the attempt
        await _audit(
            request,
            "login_failed",
            officer_id or None,
            outcome=Outcome.REFUSED,
            reason_code=BAD_CREDENTIALS,
            attempt=attempt,
        )
        return _login_form(request, _BAD_LOGIN, status=401)
    await _audit(request, "login", officer.id, method="password", attempt=attempt)
    response = RedirectResponse("/console/entries", status_code=303, headers=secure_headers())
    return await _signed_in(request, officer, response)


async def _signed_in(request: Request, officer: IGOfficer, response: Response) -> Response:
    """Open a session for ``officer`` and set its cookie on ``response``."""
    state = _state(request)
    token, _ = await open_session(
        state.db,
        officer,
        now=state.clock(),
        max_seconds=state.settings.console_session_max_seconds,
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=state.settings.console_session_max_seconds,
        secure=True,
        httponly=True,
        samesite="strict",
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


def _oidc(request: Request) -> OidcSignIn:
    """This process's OIDC client (made on first use); 404 when OIDC is not configured."""
    settings = _state(request).settings
    if settings.console_oidc_issuer is None:
        raise errors.NotFound()
    client = getattr(request.app.state, "console_oidc", None)
    if not isinstance(client, OidcSignIn):
        client = OidcSignIn(settings)
        request.app.state.console_oidc = client
    return client


@router.get("/login/oidc")
async def oidc_begin(request: Request) -> Response:
    """Send the browser to the identity provider, with state, nonce and a PKCE challenge."""
    client = _oidc(request)
    if not _throttle(request).address_allows(_address(request)):
        return await _refuse_login(request, None, LOGIN_THROTTLED, limit="address", method="oidc")
    try:
        url, binding = await client.begin(_state(request).db, now=_state(request).clock())
    except OidcLoginFailed as exc:
        return await _refuse_login(request, None, exc.reason, method="oidc")
    response = RedirectResponse(url, status_code=303, headers=secure_headers())
    response.set_cookie(
        OIDC_COOKIE, binding, max_age=600, secure=True, httponly=True, samesite="lax", path="/"
    )
    return response


@router.get("/login/oidc/callback")
async def oidc_callback(request: Request) -> Response:
    """The provider's answer: an IG officer's identity opens a session; anything else is the
    generic sign-in refusal, audited with its reason."""
    client = _oidc(request)
    state = _state(request)
    if not _throttle(request).address_allows(_address(request)):
        return await _refuse_login(request, None, LOGIN_THROTTLED, limit="address", method="oidc")
    params = request.query_params
    if params.get("error"):
        return await _refuse_login(request, None, "oidc_provider_error", method="oidc")
    try:
        identity = await client.complete(
            state.db,
            state=params.get("state"),
            code=params.get("code"),
            binding=request.cookies.get(OIDC_COOKIE),
            now=state.clock(),
        )
    except OidcLoginFailed as exc:
        return await _refuse_login(request, None, exc.reason, method="oidc")
    async with state.db.read() as session:
        officer = await oidc_officer(session, identity.issuer, identity.subject)
    if officer is None:
        return await _refuse_login(
            request,
            None,
            "oidc_not_an_ig_officer",
            method="oidc",
            oidc_issuer=identity.issuer,
            oidc_subject=identity.subject,
        )
    await _audit(request, "login", officer.id, method="oidc")
    # A page of the gateway's own moves on: a redirect here would carry on the provider's
    # cross-site navigation, and the browser would withhold the SameSite=Strict session cookie.
    response = render("signed_in.html", {"officer": None})
    response.delete_cookie(OIDC_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return await _signed_in(request, officer, response)


@router.post("/logout")
async def logout(request: Request) -> Response:
    officer = await _officer(request)
    if officer is None:
        _check_origin(request)
        return _to_login()
    await _checked_form(request, lambda: officer.csrf_token, officer.officer_id)
    await _audit(request, "logout", officer.officer_id)
    await close_session(_state(request).db, request.cookies.get(SESSION_COOKIE, ""))
    response = _to_login()
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


async def _search_page(request: Request, *, refusals: bool) -> Response:
    officer = await _officer(request)
    if officer is None:
        return _to_login()
    items = [(k, v) for k, v in request.query_params.multi_items()]
    if refusals:
        items = [(k, v) for k, v in items if k != "outcome"] + [("outcome", "refused")]
    action = "/console/refusals" if refusals else "/console/entries"
    context: dict[str, Any] = {
        "officer": officer,
        "heading": "Refusals" if refusals else "Audit log",
        "action": action,
        "fields": [f for f in _FIELDS if not (refusals and f[0] == "outcome")],
        "values": dict(items),
        "query_string": urlencode([(k, v) for k, v in items if k != "cursor" and v]),
        "entries": [],
        "unsequenced": {},
        "next_cursor": None,
        "error": None,
    }
    status = 200
    try:
        query = parse_query(items)
    except errors.InvalidParameter as exc:
        context["error"] = exc.detail
        status = 400
        query = None
    if query is not None:
        await _audit(
            request,
            "refusals" if refusals else "search",
            officer.officer_id,
            filters=query.filter.as_detail(),
            scope=officer.scope.as_detail(),
        )
        context.update(await _page(request, query, items, officer.scope.searched))
    template = "_results.html" if request.headers.get("hx-request") == "true" else "entries.html"
    return render(template, context, status=status, headers={"Vary": "HX-Request"})


async def _page(
    request: Request,
    query: SearchQuery,
    items: list[tuple[str, str]],
    areas: tuple[str, ...] | None,
) -> dict[str, Any]:
    state = _state(request)
    async with state.db.read() as session:
        page = await search_entries(session, query, areas=areas)
    entries = [audit_log.entry_record(row) for row in page.entries]
    now, bound = state.clock(), pending_bound(state.settings.audit_sequence_interval_seconds)
    unsequenced = {
        row.entry_id: status
        for row in page.entries
        if (status := unsequenced_status(row, now, bound)) is not None
    }
    next_query = urlencode(
        [(k, v) for k, v in items if k != "cursor" and v] + [("cursor", page.next_cursor or "")]
    )
    return {
        "entries": entries,
        "unsequenced": unsequenced,
        "next_cursor": page.next_cursor,
        "next_query": next_query,
    }


@router.get("/entries")
async def entries(request: Request) -> Response:
    return await _search_page(request, refusals=False)


@router.get("/refusals")
async def refusals(request: Request) -> Response:
    return await _search_page(request, refusals=True)


@router.get("/entries/{entry_id}")
async def entry(request: Request, entry_id: str) -> Response:
    officer = await _officer(request)
    if officer is None:
        return _to_login()
    state = _state(request)
    if not is_resource_id(entry_id):  # no such entry: never looked up
        await _audit(request, "view", officer.officer_id, entry="malformed")
        raise errors.NotFound()
    await _audit(request, "view", officer.officer_id, record_refs=(entry_id,))
    verifier = state.audit.verifier() if state.audit is not None else None
    cache = state.audit.subtrees if state.audit is not None else None
    # Read before the database: the sequencer writes the file after its checkpoint commits.
    witness = await run_in_threadpool(read_witness, state.settings)
    async with state.db.read() as session:
        # Outside the officer's scope is not found, by the same query as no such entry.
        row = await entry_within(session, entry_id, officer.scope.searched)
        if row is None:
            raise errors.NotFound()
        check = await check_entry(
            session,
            row,
            verifier,
            cache,
            witness=witness,
            now=state.clock(),
            bound=pending_bound(state.settings.audit_sequence_interval_seconds),
        )
        record = audit_log.entry_record(row)
    fields = [(name, record[name]) for name in (*AUDIT_ENTRY_FIELDS, LEAF_HASH_KEY)]
    return render(
        "entry.html", {"officer": officer, "entry": record, "fields": fields, "check": check}
    )


async def _refuse_busy(request: Request, action: str, officer_id: str, **detail: Any) -> NoReturn:
    """As many of ``action`` run in this process as it allows: audited, then 429."""
    await _audit(request, action, officer_id, outcome=Outcome.REFUSED, reason_code=BUSY, **detail)
    raise busy(action)


async def _log_state(
    session: AsyncSession, latest: AuditCheckpoint | None, witness: WitnessRead
) -> LogState:
    """What the integrity verdict depends on that can be read without verifying."""
    sequenced, last_seq = (
        await session.execute(select(func.count(AuditEntry.seq), func.max(AuditEntry.seq)))
    ).one()
    return LogState(
        latest.note if latest is not None else None,
        int(sequenced),
        last_seq,
        witness.note,
        witness.error,
    )


@router.get("/integrity")
async def integrity(request: Request) -> Response:
    officer = await _officer(request)
    if officer is None:
        return _to_login()
    state = _state(request)
    # Read before the database: the sequencer writes the file after its checkpoint commits.
    witness = await run_in_threadpool(read_witness, state.settings)
    async with state.db.read() as session:
        latest = await audit_log.latest_checkpoint(session)
        lag_count, lag_age = await audit_log.unsequenced_lag(session, state.clock())
        log_state = await _log_state(session, latest, witness)
    report = None
    keys: list[str] = []
    if state.audit is None:
        await _audit(request, "integrity", officer.officer_id)
        verdict, summary = "not run", "The checkpoint key is not loaded in this gateway."
    else:
        keys = [str(key) for key in state.audit.verifier_keys()]
        report, reused = await _integrity_report(request, officer.officer_id, log_state, witness)
        if report.ok:
            verdict = "verified"
            summary = (
                f"All {report.tree_size} sequenced entries recomputed; the tree head matches "
                f"the signed checkpoint of size {report.checkpoint.size}."
                if report.checkpoint is not None
                else "No entry is sequenced yet, and no checkpoint is stored to check."
            )
        else:
            assert report.problem is not None
            where = f" at entry seq {report.seq}" if report.seq is not None else ""
            verdict = "FAILED"
            summary = f"{report.problem.value}{where}: {report.detail}"
        if reused is not None:
            summary += (
                f" (The verdict of a run {reused:.0f} s ago: the latest checkpoint, the "
                "sequenced entries' count and last seq, and the witness file are as they were.)"
            )
    return render(
        "integrity.html",
        {
            "officer": officer,
            "report": report,
            "verdict": verdict,
            "summary": summary,
            "note": latest.note if latest else None,
            "keys": keys,
            "lag_count": lag_count,
            "lag_age": round(lag_age, 1),
            "witness": witness,
        },
    )


async def _integrity_report(
    request: Request, officer_id: str, log_state: LogState, witness: WitnessRead
) -> tuple[VerificationReport, float | None]:
    """The verifier's report on the log, and its age in seconds when it is a recent run's on
    the same ``log_state`` (`gateway.console.limits`); one run at a time in this process."""
    state = _state(request)
    assert state.audit is not None
    cache: IntegrityCache = per_process(request.app, "console_integrity_cache", IntegrityCache)
    cached = cache.get(log_state, state.clock())
    if cached is not None:
        await _audit(request, "integrity", officer_id, reused=True)
        return cached
    runs: Slots = per_process(request.app, "console_integrity_runs", lambda: Slots(INTEGRITY_RUNS))
    if not runs.take():
        await _refuse_busy(request, "integrity", officer_id)
    try:
        await _audit(request, "integrity", officer_id)
        started = state.clock()
        report = await run_in_threadpool(
            verify_database,
            state.settings.database_url,
            state.audit.verifier(),
            witness=witness.note,
        )
        async with state.db.read() as session:
            after = await _log_state(session, await audit_log.latest_checkpoint(session), witness)
        if after == log_state:  # else the run may have read another state: not kept
            cache.put(log_state, report, started)
    finally:
        runs.give_back()
    return report, None


@router.get("/export.csv")
async def export_csv(request: Request) -> Response:
    """The current search as CSV, streamed a search page at a time (up to `_CSV_LIMIT` rows)."""
    officer = await _officer(request)
    if officer is None:
        return _to_login()
    query = parse_query(
        [(k, v) for k, v in request.query_params.multi_items() if k not in ("limit", "cursor")]
    )
    filters = query.filter.as_detail()

    async def refuse() -> NoReturn:
        await _refuse_busy(request, "export_csv", officer.officer_id, filters=filters)

    async def start() -> None:
        scope = officer.scope.as_detail()
        await _audit(request, "export_csv", officer.officer_id, filters=filters, scope=scope)

    _, release = await hold_export_slot(request.app, refuse, start)
    stamp = _state(request).clock().strftime("%Y%m%dT%H%M%SZ")
    return ReleasingStream(
        _csv_chunks(_state(request), query.filter, officer.scope.searched),
        release,
        media_type="text/csv; charset=utf-8",
        headers={
            **secure_headers(),
            "Content-Disposition": f'attachment; filename="mappa-audit-{stamp}.csv"',
        },
    )


async def _csv_chunks(
    state: GatewayState, entry_filter: EntryFilter, areas: tuple[str, ...] | None
) -> AsyncIterator[bytes]:
    """The CSV's header, then the matching entries of ``areas`` (`within`) newest first, one
    search page per chunk, each page read in its own short transaction."""
    header = [*AUDIT_ENTRY_FIELDS, LEAF_HASH_KEY]
    yield "".join(csv_rows(header, ())).encode("utf-8")
    left, after = _CSV_LIMIT, None
    while left > 0:
        async with state.db.read() as session:
            page = await search_entries(
                session,
                SearchQuery(entry_filter, min(_CSV_PAGE, left), after_id=after),
                areas=areas,
            )
        if not page.entries:
            return
        records = (audit_log.entry_record(row) for row in page.entries)
        yield "".join(csv_rows(None, ([r[name] for name in header] for r in records))).encode(
            "utf-8"
        )
        left -= len(page.entries)
        if page.next_cursor is None:
            return
        after = page.entries[-1].id


@router.get("/export.jsonl")
async def export_pack(request: Request) -> Response:
    """The verifiable export pack of the officer's review scope, streamed: constant memory
    whatever the size of the log. A national officer's holds every entry (it verifies only
    whole); an area officer's, the areas' entries each with its inclusion proof."""
    officer = await _officer(request)
    if officer is None:
        return _to_login()
    refused, since = pack_refusal(officer.scope), None
    if refused is None:
        since = since_param(request.query_params.getlist("since"), officer.scope)
        refused = await since_refusal(_state(request).db, since)
    if refused is not None:
        await _audit(
            request,
            "export_pack",
            officer.officer_id,
            outcome=Outcome.REFUSED,
            rule=refused.rule,
            reason_code=refused.reason_code,
            scope=officer.scope.as_detail(),
            **refused.detail,
        )
        raise refused.denied()

    async def refuse() -> NoReturn:
        await _refuse_busy(request, "export_pack", officer.officer_id)

    async def record(made: Mapping[str, Any]) -> None:
        await _audit(
            request, "export_pack", officer.officer_id, scope=officer.scope.as_detail(), **made
        )

    return await pack_response(
        request.app,
        officer.scope,
        refuse=refuse,
        record=record,
        headers=secure_headers(),
        since=since,
    )
