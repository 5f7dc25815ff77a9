"""The IG audit API: checkpoint, verifier key, proofs, the entries and the export pack (IG only).

Who may call what:

- ``GET /v1/audit/checkpoint``, ``GET /v1/audit/verifier-key`` and
  ``GET /v1/audit/proof/consistency``: anyone. They reveal tree sizes and hashes only, and are
  what a witness, an auditor or the ICO needs to hold the gateway to its log.
- ``GET /v1/audit/entries`` and ``GET /v1/audit/proof/inclusion``: information governance only,
  authenticated in one of two ways:

  1. an IG officer's console session (the ``__Host-mappa-console`` cookie set by ``/console``
     after an argon2 password login; SameSite=Strict, so no other site can ride it); or
  2. an agency system's DPoP-bound access token (with its ``MAPPA-*`` context headers, as on
     every data call) whose agency is of type ``mappa_coordination`` *and* holds the scope
     ``audit:read`` (granted at onboarding, e.g. to the area's MAPPA co-ordination unit).

  Any other authenticated agency gets 403 ``forbidden`` and the attempt is audited
  (``consultation`` / ``refused``, rule ``ig-endpoints-only``). Every IG read is itself audited
  before anything is returned (no audit, no disclosure).

  An agency reads its own area's entries (`gateway.audit.search.of_area`), each decided by
  need-to-know on the nominal it names (`gateway.audit.agency_view`): an entry about a nominal
  it may not know is left out, or, if it is the agency's own 404 refusal, shown as the refusal
  about a nominal that does not exist; a ``nominal`` filter naming such a nominal finds nothing,
  and an entry not seen as stored has no inclusion proof (the 404 of an unknown entry).

  A console officer reads the entries of their review scope (`gateway.console.scope`), whole:
  a national officer every entry; an officer of areas those areas' entries (`of_area`); an
  officer with no scope none. An entry outside it has no inclusion proof: the 404 of an
  unknown entry, by the same query.
- ``GET /v1/audit/export``: the verifiable export pack of the console session's review scope,
  the console's own: for a national officer the full pack (`gateway.audit.export`: every entry,
  verifying only whole), for an area officer the scoped pack (`gateway.audit.scoped`: the
  areas' entries, each with its inclusion proof; with ``since``, a saved checkpoint's tree size,
  also the consistency proof from that tree). An officer with no scope and an agency reader
  (whose reads are shaped by need-to-know, which no pack is) get 403, recorded with the reason
  (``no_review_scope``, ``console_officers_only``) before anything of the log is read. It takes
  an export slot from the
  pool the console's exports take theirs from (`gateway.console.exports`): none free is 429,
  recorded too.

Hashes are standard base64, as in the checkpoint note. Query parameters are validated strictly:
unknown, repeated or malformed ones answer 400 ``invalid_parameter``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, NoReturn

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

import policies
from gateway import errors
from gateway.audit import log as audit_log
from gateway.audit.agency_view import AgencyView
from gateway.audit.commit import Audited, commit_audited, record_alone
from gateway.audit.export import EXPORT_FORMAT
from gateway.audit.scoped import SCOPED_FORMAT
from gateway.audit.search import (
    SearchQuery,
    SeenPage,
    entry_within,
    parse_query,
    search_entries,
    search_seen,
)
from gateway.audit.service import AuditService
from gateway.audit.subtrees import SubtreeCache
from gateway.console.exports import (
    BUSY,
    busy,
    pack_refusal,
    pack_response,
    since_param,
    since_refusal,
)
from gateway.console.scope import NO_SCOPE, ReviewScope
from gateway.console.session import SESSION_COOKIE, current_session
from gateway.domain import AgencyType, Scope
from gateway.flow.audit import AuditEvent, Operation, Outcome
from gateway.flow.authenticate import authenticate
from gateway.flow.need_to_know import caller_agency
from gateway.http.problems import openapi_problem, openapi_problems
from gateway.logs import get_logger
from gateway.state import GatewayState

__all__ = ["AUDIT_READ_SCOPE", "IGReader", "ig_reader", "router"]

AUDIT_READ_SCOPE: Final = Scope.AUDIT_READ.value
IG_RULE: Final = "ig-endpoints-only"
_TEXT: Final = "text/plain; charset=utf-8"
#: A tree size: 1 to 15 ASCII digits (``str.isdigit`` also passes other scripts' digits).
_SIZE: Final = re.compile(r"[0-9]{1,15}")

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=openapi_problems(query=True))
log = get_logger("gateway.audit.api")


@dataclass(frozen=True, slots=True)
class IGReader:
    """An authenticated information governance reader of the audit log."""

    via: str  # "console" or "agency"
    officer_id: str
    agency_id: str | None
    legal_basis: str | None
    purpose: str | None
    request_id: str | None
    #: An agency reader's MAPPA area (None for a console officer).
    area: str | None = None
    #: An agency reader as need-to-know sees it (None for a console officer).
    agency: policies.CallerAgency | None = None
    #: A console officer's review scope (unused for an agency reader).
    review: ReviewScope = NO_SCOPE

    @property
    def areas(self) -> tuple[str, ...] | None:
        """The areas whose entries the reader reads (`gateway.audit.search.within`): an agency
        reader its own area's; a console officer those of their review scope, and the whole
        log (None) for a national officer."""
        if self.via == "agency":
            return (self.area,) if self.area is not None else ()
        return self.review.searched

    def scope_detail(self) -> dict[str, object]:
        """What a read records of the areas it covered."""
        if self.via == "agency":
            return {"area": self.area} if self.area else {}
        return {"scope": self.review.as_detail()}

    def view(self, now: dt.datetime) -> AgencyView | None:
        """What an agency reader may see of entries (None: an IG officer's console, all)."""
        return AgencyView(self.agency, now) if self.agency is not None else None

    def event(self, outcome: Outcome, **fields: object) -> AuditEvent:
        return AuditEvent.model_validate(
            {
                "operation": Operation.CONSULTATION,
                "outcome": outcome,
                "agency_id": self.agency_id,
                "officer_id": self.officer_id,
                "legal_basis": self.legal_basis,
                "purpose": self.purpose,
                "request_id": self.request_id,
                **fields,
            }
        )


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def _audit(state: GatewayState) -> AuditService:
    if state.audit is None:
        raise errors.Unavailable(diagnostics={"reason": "audit_checkpoint_key_unavailable"})
    return state.audit


def _subtrees(state: GatewayState) -> SubtreeCache | None:
    """The process's proof cache (none without the log's keys: proofs then read every leaf)."""
    return state.audit.subtrees if state.audit is not None else None


async def _seen_in_full(
    session: AsyncSession, entry_id: str, areas: tuple[str, ...] | None, view: AgencyView | None
) -> bool:
    """Whether the entry ``entry_id`` is one of ``areas``' (`gateway.audit.search.entry_within`)
    and, for an agency, the agency sees it as stored (`AgencyView.in_full`)."""
    row = await entry_within(session, entry_id, areas)
    if row is None:
        return False
    return view is None or await view.sees_whole(session, row)


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", request.url.path))[:200]


async def ig_reader(request: Request) -> IGReader:
    """FastAPI dependency: the IG reader, or 401 (unauthenticated) / 403 (not IG), audited."""
    state = _state(request)
    request_id = request.scope.get("state", {}).get("request_id")
    officer = await current_session(
        state.db,
        request.cookies.get(SESSION_COOKIE),
        now=state.clock(),
        idle_seconds=state.settings.console_session_idle_seconds,
    )
    if officer is not None:
        return IGReader(
            "console", officer.officer_id, None, None, None, request_id, review=officer.scope
        )
    caller = await authenticate(request)
    reader = IGReader(
        "agency",
        caller.officer,
        caller.agency_id,
        caller.legal_basis,
        caller.purpose,
        request_id,
        caller.area,
        caller_agency(caller),
    )
    if caller.agency_type == AgencyType.MAPPA_COORDINATION and caller.has_scope(AUDIT_READ_SCOPE):
        return reader
    refusal = reader.event(
        Outcome.REFUSED,
        rule=IG_RULE,
        reason_code="not_information_governance",
        detail={
            "resource": "audit_log",
            "route": _route(request),
            "method": request.method,
            "agency_type": caller.agency_type,
            "has_audit_read": caller.has_scope(AUDIT_READ_SCOPE),
        },
    )
    try:
        await record_alone(state.db, refusal)
    except errors.AuditUnavailable:
        log.warning("refusal_not_audited", code="forbidden")
    raise errors.AccessDenied(diagnostics={"reason": "not_information_governance"})


def _check_params(request: Request, allowed: set[str]) -> None:
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name not in allowed:
            raise errors.InvalidParameter(f"unknown parameter {name[:40]!r}")
        if name in seen:
            raise errors.InvalidParameter(f"parameter {name!r} given more than once")
        seen.add(name)


def _size(name: str, value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if _SIZE.fullmatch(value) is None:
        raise errors.InvalidParameter(f"{name}: a whole number")
    return int(value)


@router.get(
    "/checkpoint",
    summary="The latest signed checkpoint (C2SP signed note, Ed25519)",
    response_class=PlainTextResponse,
)
async def checkpoint(request: Request) -> PlainTextResponse:
    state = _state(request)
    _check_params(request, set())
    async with state.db.read() as session:
        latest = await audit_log.latest_checkpoint(session)
    if latest is None:
        raise errors.Unavailable(diagnostics={"reason": "no_checkpoint_yet"})
    return PlainTextResponse(latest.note, media_type=_TEXT, headers={"Cache-Control": "no-cache"})


@router.get(
    "/verifier-key",
    summary="The note verifier keys of the checkpoint signer (one per line, newest first)",
    response_class=PlainTextResponse,
)
async def verifier_key(request: Request) -> PlainTextResponse:
    _check_params(request, set())
    keys = _audit(_state(request)).verifier_keys()
    return PlainTextResponse("".join(f"{key}\n" for key in keys), media_type=_TEXT)


@router.get("/proof/consistency", summary="RFC 9162 consistency proof between two tree sizes")
async def consistency(
    request: Request,
    first: Annotated[str | None, Query(description="the older tree size")] = None,
    second: Annotated[str | None, Query(description="the newer tree size")] = None,
) -> JSONResponse:
    _check_params(request, {"first", "second"})
    old, new = _size("first", first), _size("second", second)
    if old is None or new is None:
        raise errors.InvalidParameter("first and second are required")
    state = _state(request)
    async with state.db.read() as session:
        proof = await audit_log.consistency_proof(session, old, new, cache=_subtrees(state))
    return JSONResponse(proof.as_json())


@router.get("/proof/inclusion", summary="RFC 9162 inclusion proof of an entry (IG only)")
async def inclusion(
    request: Request,
    reader: Annotated[IGReader, Depends(ig_reader)],
    entry_id: Annotated[str | None, Query(max_length=200)] = None,
    tree_size: Annotated[str | None, Query(description="default: latest checkpoint")] = None,
) -> JSONResponse:
    _check_params(request, {"entry_id", "tree_size"})
    if not entry_id:
        raise errors.InvalidParameter("entry_id is required")
    size = _size("tree_size", tree_size)

    view = reader.view(_state(request).clock())
    areas = reader.areas

    async def act(session: AsyncSession) -> Audited[audit_log.InclusionProof]:
        scoped = view is not None or areas is not None
        if scoped and not await _seen_in_full(session, entry_id, areas, view):
            raise errors.NotFound("No entry with this id is covered by that tree size")
        proof = await audit_log.inclusion_proof(
            session, entry_id, size, cache=_subtrees(_state(request))
        )
        event = reader.event(
            Outcome.ALLOWED,
            record_refs=(entry_id,),
            detail={"resource": "audit_log", "action": "inclusion_proof", "via": reader.via},
        )
        return Audited(proof, event)

    proof = await commit_audited(_state(request).db, act)
    return JSONResponse(proof.as_json())


@router.get("/entries", summary="Search the audit log (IG only); newest first, cursor paging")
async def entries(
    request: Request,
    reader: Annotated[IGReader, Depends(ig_reader)],
    nominal: Annotated[str | None, Query(alias="nominal")] = None,
    agency: Annotated[str | None, Query()] = None,
    officer: Annotated[str | None, Query()] = None,
    legal_basis: Annotated[str | None, Query()] = None,
    purpose: Annotated[str | None, Query()] = None,
    operation: Annotated[str | None, Query()] = None,
    outcome: Annotated[str | None, Query()] = None,
    from_: Annotated[str | None, Query(alias="from", description="ISO 8601, inclusive")] = None,
    to: Annotated[str | None, Query(description="ISO 8601, exclusive; a date: end of day")] = None,
    limit: Annotated[str | None, Query(description="1 to 500, default 50")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> JSONResponse:
    query = parse_query(request.query_params.multi_items())
    view = reader.view(_state(request).clock())

    async def act(session: AsyncSession) -> Audited[SeenPage]:
        page = await _search(session, query, reader.areas, view)
        event = reader.event(
            Outcome.ALLOWED,
            detail={
                "resource": "audit_log",
                "action": "search",
                "via": reader.via,
                "filters": query.filter.as_detail(),
                "returned": len(page.records),
                **reader.scope_detail(),
            },
        )
        return Audited(page, event)

    page = await commit_audited(_state(request).db, act)
    return JSONResponse({"entries": list(page.records), "next_cursor": page.next_cursor})


async def _search(
    session: AsyncSession,
    query: SearchQuery,
    areas: tuple[str, ...] | None,
    view: AgencyView | None,
) -> SeenPage:
    """The page the reader sees: the console, the entries of the officer's scope as stored;
    an agency, its area's entries as need-to-know lets it see them, and nothing for a nominal
    it may not know (as for an id that does not exist)."""
    if view is None:
        page = await search_entries(session, query, areas=areas)
        return SeenPage([audit_log.entry_record(row) for row in page.entries], page.next_cursor)
    nominal = dict(query.filter.equals).get("nominal")
    if nominal is not None:
        await view.decide(session, (nominal,))
        if not view.knows(nominal):
            return SeenPage([], None)
    return await search_seen(session, query, view.seen, areas=areas)


class _JsonLines(StreamingResponse):
    """The export pack's answer, as the OpenAPI document declares it."""

    media_type = "application/jsonl"


@router.get(
    "/export",
    summary="The verifiable export pack of the review scope, streamed (IG console session)",
    response_class=_JsonLines,
    responses={
        200: {
            "description": (
                f"JSON lines. A national officer's ({EXPORT_FORMAT}): a header (the latest "
                "signed checkpoint, the verifier keys) then every entry the checkpoint covers, "
                f"seq 0 up, each with its leaf_hash. An area officer's ({SCOPED_FORMAT}): a "
                "header naming the areas too (with since, also the consistency proof from "
                "that tree size), then each of their entries the checkpoint covers, "
                'as {"entry", "proof"} with its inclusion proof. Verify either offline with '
                "`mappa-gateway audit verify --export` and a verifier key obtained separately, "
                "never the pack's own"
            ),
            "content": {"application/jsonl": {"schema": {"type": "string"}}},
        },
        409: openapi_problem(
            "since is larger than the tree the log's latest checkpoint signs (conflict, reason "
            "since_beyond_checkpoint): the log holds less than a checkpoint the officer saved"
        ),
    },
)
async def export(
    request: Request,
    reader: Annotated[IGReader, Depends(ig_reader)],
    since: Annotated[
        str | None,
        Query(
            description=(
                "an area officer's pack: the tree size of a checkpoint you saved; the pack's "
                "header then proves the pack's tree extends it"
            )
        ),
    ] = None,
) -> StreamingResponse:
    _check_params(request, {"since"})
    state = _state(request)
    detail: dict[str, object] = {
        "resource": "audit_log",
        "action": "export_pack",
        "via": reader.via,
        **reader.scope_detail(),
    }
    review = reader.review if reader.via == "console" else None
    refused, from_size = pack_refusal(review), None
    if refused is None and review is not None:
        from_size = since_param(request.query_params.getlist("since"), review)
        refused = await since_refusal(state.db, from_size)
    if refused is not None:
        refusal = reader.event(
            Outcome.REFUSED,
            rule=refused.rule,
            reason_code=refused.reason_code,
            detail={**detail, **refused.detail, "route": _route(request), "method": request.method},
        )
        await record_alone(state.db, refusal)
        raise refused.denied()

    async def refuse() -> NoReturn:
        await record_alone(state.db, reader.event(Outcome.REFUSED, reason_code=BUSY, detail=detail))
        raise busy("export_pack")

    async def record(made: Mapping[str, Any]) -> None:
        await record_alone(state.db, reader.event(Outcome.ALLOWED, detail={**detail, **made}))

    return await pack_response(
        request.app,
        reader.review,
        refuse=refuse,
        record=record,
        headers={"Cache-Control": "no-store"},
        since=from_size,
    )
