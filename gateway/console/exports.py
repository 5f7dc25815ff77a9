"""What every export of the audit log shares: one pool of export slots per process, a streamed
response that gives its slot back however the sending ends, and the verifiable export pack.

The console's CSV export and pack (``/console/export.csv``, ``/console/export.jsonl``) and the
audit API's pack (``GET /v1/audit/export``) take their slot from the same pool
(`gateway.console.limits.EXPORTS` per process), so together they never send more at once. A
caller finding every slot held is refused by the route, which records the refusal in its own
way (the console as operation ``console``, the API as a ``consultation``) and answers
`busy` (429 with Retry-After). The pack is of the officer's review scope: the whole log for a
national officer (`gateway.audit.export`), the entries of the officer's areas each with its
inclusion proof for an area officer (`gateway.audit.scoped`). Each route asks `pack_refusal`,
before it calls `pack_response`, whether its caller may have one (an officer with no scope and
an agency's system may not), and records a refusal with the rule and reason it gives, the same
on both paths, answering its 403; nothing of the log is read here until a slot is held.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn, TypeVar

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from gateway import errors
from gateway.audit.export import EXPORT_FORMAT, ExportError, export_chunks, export_header
from gateway.audit.log import latest_checkpoint
from gateway.audit.scoped import SCOPED_FORMAT, scoped_chunks, scoped_header
from gateway.console.limits import EXPORTS, RETRY_AFTER_SECONDS, Slots
from gateway.console.scope import ReviewScope
from gateway.state import GatewayState
from gateway.store import Database

__all__ = [
    "BUSY",
    "CONSOLE_OFFICERS_ONLY",
    "NO_REVIEW_SCOPE",
    "PACK_MEDIA_TYPE",
    "PACK_RULE",
    "SINCE_BEYOND_CHECKPOINT",
    "PackRefusal",
    "ReleasingStream",
    "busy",
    "export_slots",
    "hold_export_slot",
    "in_threadpool",
    "pack_refusal",
    "pack_response",
    "per_process",
    "since_param",
    "since_refusal",
]

_T = TypeVar("_T")

#: The reason recorded, and given in the 429's diagnostics, when every export slot is held.
BUSY: Final = "console_busy"
PACK_MEDIA_TYPE: Final = "application/jsonl; charset=utf-8"
#: The rule that gives a console officer the pack of their review scope, and no one else any.
PACK_RULE: Final = "export-pack-of-review-scope"
#: The refusal's reason: an officer with no review scope.
NO_REVIEW_SCOPE: Final = "no_review_scope"
#: The refusal's reason: a caller that is no console officer (an agency's audit reader).
CONSOLE_OFFICERS_ONLY: Final = "console_officers_only"
#: The refusal's reason: a pack asked for ``since`` a tree larger than the log's latest
#: checkpoint signs. The officer saved a checkpoint of a larger log than the gateway now holds:
#: a log rolled back, or a fork shown to the officer, which the refusal's entry keeps on record.
SINCE_BEYOND_CHECKPOINT: Final = "since_beyond_checkpoint"


@dataclass(frozen=True, slots=True)
class PackRefusal:
    """Why a caller may not have an export pack: what its refusal records (``detail``, beside
    the rule and reason), and its answer: 403, or 409 for a ``since`` beyond the log."""

    reason_code: str
    rule: str = PACK_RULE
    detail: Mapping[str, Any] = field(default_factory=dict)

    def denied(self) -> errors.GatewayError:
        if self.reason_code == SINCE_BEYOND_CHECKPOINT:
            return errors.Conflict(
                "since: the log's latest checkpoint signs a smaller tree than the checkpoint "
                "you saved; report this to the gateway's operator and IG lead",
                diagnostics={"reason": self.reason_code, **self.detail},
            )
        return errors.AccessDenied(diagnostics={"reason": self.reason_code})


def pack_refusal(scope: ReviewScope | None) -> PackRefusal | None:
    """None if a console officer of review ``scope`` may have a pack (of the whole log if
    national, else of the scope's areas); the refusal otherwise: an officer with no scope, or
    ``scope`` None, a caller that is no console officer (an agency's system, whose reads are
    shaped by need-to-know, which no pack is)."""
    if scope is None:
        return PackRefusal(CONSOLE_OFFICERS_ONLY)
    return PackRefusal(NO_REVIEW_SCOPE) if scope.sees_nothing else None


#: A tree size as a query parameter: ASCII digits only, at most 15 of them.
_TREE_SIZE: Final = re.compile(r"[0-9]{1,15}")


def since_param(values: Sequence[str], scope: ReviewScope) -> int | None:
    """The ``since`` query parameter of a pack of review ``scope`` (its values as given): the
    tree size of a checkpoint the officer saved, or None if not given (or left empty, as a form
    leaves it). Repeated, not a whole number, or asked of the full pack (which holds every
    entry and needs no consistency proof): `InvalidParameter`, recorded nowhere, as any
    malformed parameter."""
    if len(values) > 1:
        raise errors.InvalidParameter("parameter 'since' given more than once")
    if not values or values[0] == "":
        return None
    if _TREE_SIZE.fullmatch(values[0]) is None:
        raise errors.InvalidParameter("since: the tree size of a checkpoint, a whole number")
    if scope.national:
        raise errors.InvalidParameter(
            "since: the full pack holds every entry; hold it to your saved checkpoint with "
            "`mappa-gateway audit verify --export PACK --checkpoint FILE`"
        )
    return int(values[0])


async def since_refusal(db: Database, since: int | None) -> PackRefusal | None:
    """The refusal of a pack asked for ``since`` a larger tree than the log's latest checkpoint
    signs (`SINCE_BEYOND_CHECKPOINT`, with both sizes), decided before an export slot is taken;
    None if it may be made."""
    if since is None:
        return None
    async with db.read() as session:
        checkpoint = await latest_checkpoint(session)
    size = checkpoint.tree_size if checkpoint is not None else 0
    if since <= size:
        return None
    return PackRefusal(SINCE_BEYOND_CHECKPOINT, detail={"since": since, "tree_size": size})


def per_process(app: FastAPI, name: str, make: Callable[[], Any]) -> Any:
    """This process's ``name`` on the app (made on first use, one per app)."""
    value = getattr(app.state, name, None)
    if value is None:
        value = make()
        setattr(app.state, name, value)
    return value


def export_slots(app: FastAPI) -> Slots:
    """The export slots of this process: the console's exports and the API's pack share them."""
    slots: Slots = per_process(app, "console_export_slots", lambda: Slots(EXPORTS))
    return slots


def busy(action: str) -> errors.RateLimited:
    """The 429 of ``action`` refused because as many run in this process as it allows."""
    return errors.RateLimited(
        retry_after=RETRY_AFTER_SECONDS, diagnostics={"reason": BUSY, "action": action}
    )


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """``action``, run on the first call only."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run


async def hold_export_slot(
    app: FastAPI,
    refuse: Callable[[], Awaitable[NoReturn]],
    start: Callable[[], Awaitable[_T]],
) -> tuple[_T, Callable[[], None]]:
    """Take an export slot (none free: ``refuse``, which records the refusal and raises), then
    ``start`` the export (read what it needs first, record it); return what ``start`` gave and
    what gives the slot back, at most once. The slot is given back at once if ``start`` raises."""
    slots = export_slots(app)
    if not slots.take():
        await refuse()
    release = _once(slots.give_back)
    try:
        started = await start()
    except BaseException:
        release()
        raise
    return started, release


class ReleasingStream(StreamingResponse):
    """A streamed response that gives back its export slot however the sending ends."""

    def __init__(self, content: Any, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def in_threadpool(chunks: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    """Each chunk read off the event loop; the database stream is closed however it ends."""
    try:
        while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
            yield chunk
    finally:
        await run_in_threadpool(chunks.close)


async def pack_response(
    app: FastAPI,
    scope: ReviewScope,
    *,
    refuse: Callable[[], Awaitable[NoReturn]],
    record: Callable[[Mapping[str, Any]], Awaitable[None]],
    headers: Mapping[str, str],
    since: int | None = None,
) -> ReleasingStream:
    """The export pack of review ``scope``, streamed in constant memory whatever the size of
    the log: with an export slot held (`hold_export_slot`), its header read (the latest
    checkpoint, fixed now) and the export ``record``-ed with that checkpoint's tree size before
    any byte is sent (and the pack's format, and ``since`` if given). A national scope gets the
    full pack, an area scope the scoped pack of its areas, with the consistency proof from the
    tree of ``since`` entries when given (a checkpoint the officer saved). 503 without the
    checkpoint key or before any checkpoint. The caller has decided, with `pack_refusal`,
    `since_param` and `since_refusal`, that it may have it."""
    state: GatewayState = app.state.gateway
    if state.audit is None:
        raise errors.Unavailable(diagnostics={"reason": "audit_checkpoint_key_unavailable"})
    audit = state.audit
    keys, now = audit.verifier_keys(), state.clock()
    url = state.settings.database_url

    async def start() -> AsyncIterator[bytes]:
        try:
            if scope.national:
                header = await run_in_threadpool(export_header, url, verifier_keys=keys, now=now)
                content = in_threadpool(export_chunks(url, header))
                size, form = header.tree_size, EXPORT_FORMAT
            else:
                scoped, checkpoint = await scoped_header(
                    state.db,
                    areas=scope.areas,
                    verifier_keys=keys,
                    now=now,
                    since=since,
                    cache=audit.subtrees,
                )
                content = scoped_chunks(state.db, scoped, checkpoint, cache=audit.subtrees)
                size, form = scoped.tree_size, SCOPED_FORMAT
        except ExportError as exc:
            raise errors.Unavailable(diagnostics={"reason": "no_checkpoint_yet"}) from exc
        made: dict[str, object] = {"tree_size": size, "format": form}
        if since is not None:
            made["since"] = since
        await record(made)
        return content

    content, release = await hold_export_slot(app, refuse, start)
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = "mappa-audit-pack" if scope.national else "mappa-audit-pack-scoped"
    return ReleasingStream(
        content,
        release,
        media_type=PACK_MEDIA_TYPE,
        headers={**headers, "Content-Disposition": f'attachment; filename="{name}-{stamp}.jsonl"'},
    )
