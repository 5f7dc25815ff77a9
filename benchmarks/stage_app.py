"""The gateway with a stopwatch on each stage of a request, for ``benchmarks/stages.py``.

:data:`STAGES` names the functions that make up the full read and write paths. Before the app
is built, each is replaced, wherever the ``gateway`` package has bound it, by a wrapper that
adds the wall time of every call to a per-stage list; when the server stops, the lists are
written as JSON to ``$MAPPA_BENCH_STAGES``. Driven at concurrency 1, wall time is the stage's
own time (the stages of one request do not overlap with another's). Measurement only: nothing
here is imported by the product.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

__all__ = ["STAGES", "create_app", "instrument"]

#: (label, "module:attribute" or "module:Class.method"), in the order a request meets them.
STAGES: list[tuple[str, str]] = [
    ("authenticate: token, DPoP proof, context", "gateway.flow.authenticate:_authenticate"),
    ("open the sealed body: JWE + agency JWS", "gateway.flow.seal:Sealer.open"),
    ("idempotency key lookup", "gateway.flow.idempotency:lookup"),
    ("nominal, need-to-know, basis (read)", "gateway.cases.subjects:visible_nominal"),
    ("  of which involvements query", "gateway.flow.need_to_know:involvements"),
    ("agency keys query", "gateway.cases.context:Call.keys"),
    ("case document (unseal at rest)", "gateway.cases.documents:nominal_document"),
    ("redaction chain", "gateway.flow.redact:redact"),
    ("sign + encrypt (JWS in JWE)", "gateway.flow.seal:Sealer.seal"),
    ("group commit: wait + transaction", "gateway.flow.group_commit:GroupCommitter.run"),
    ("  of which the transaction", "gateway.flow.group_commit:GroupCommitter._commit"),
    ("the whole case operation", "gateway.cases.context:guarded"),
]

TIMES: dict[str, list[float]] = {label: [] for label, _ in STAGES}


def _timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    times = TIMES[label]
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                times.append(time.perf_counter() - started)

        return timed_async

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - started)

    return timed


def instrument(label: str, target: str) -> None:
    """Wrap ``target`` (``module:attr`` or ``module:Class.method``) for ``label``; a function
    is also replaced in every ``gateway`` module that imported it by name."""
    module_name, _, path = target.partition(":")
    module = importlib.import_module(module_name)
    owner_name, _, method = path.rpartition(".")
    if owner_name:
        owner = getattr(module, owner_name)
        setattr(owner, method, _timed(label, getattr(owner, method)))
        return
    original = getattr(module, path)
    wrapped = _timed(label, original)
    for name, loaded in list(sys.modules.items()):
        if (name == "gateway" or name.startswith("gateway.")) and getattr(
            loaded, path, None
        ) is original:
            setattr(loaded, path, wrapped)


def _write_times() -> None:
    Path(os.environ["MAPPA_BENCH_STAGES"]).write_text(json.dumps(TIMES), encoding="utf-8")


def create_app() -> FastAPI:
    importlib.import_module("gateway.routes.cases")  # every case module, bound before wrapping
    for label, target in STAGES:
        instrument(label, target)
    from gateway.app import create_app as create_gateway

    app = create_gateway()
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(started: FastAPI) -> AsyncIterator[Any]:
        async with inner(started) as state:
            yield state
        _write_times()  # at shutdown, when nothing else is waiting on the loop

    app.router.lifespan_context = lifespan
    return app
