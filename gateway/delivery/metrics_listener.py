"""The metrics listener of the relay run alone: ``GET /metrics``, the relay's metrics only.

``mappa-gateway relay`` opens it when ``MAPPA_RELAY_METRICS_PORT`` is set (0, the default: none),
on ``MAPPA_RELAY_METRICS_HOST`` (the loopback by default). ``serve`` never opens it: the relay it
runs counts into that process's own ``/metrics`` (:mod:`gateway.routes.metrics`), so the two
never compete for a port or a name. What it serves is :class:`RelayMetrics`' registry in the
Prometheus text format: pushes by outcome and code, dead letters by kind and code, the outbox's
depth and the age of its oldest waiting message (read from the store at each scrape); no id of a
message, an agency, a nominal or a record.

As ``/metrics`` of ``serve``, it answers only the addresses in ``MAPPA_METRICS_ALLOWED`` (the
socket's peer); to anyone else, and at any other path, it is a 404. It is no web server: it reads
one request head (at most 8 KiB, within 5 seconds), answers, and closes the connection. Only the
request line is looked at; the headers are read past, a body never, and nothing a client sends is
logged or echoed. (uvicorn, which ``serve`` runs on, is not used here: its server takes SIGINT
and SIGTERM for itself, and those belong to the relay's clean stop.)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.delivery.metrics import RelayMetrics
from gateway.errors import StoreUnavailable
from gateway.logs import get_logger
from gateway.oauth.mtls import TrustedProxies
from gateway.store import Database

__all__ = ["MetricsListener"]

log = get_logger("gateway.delivery")

#: The longest request head read, and how long a client has to send it and read the answer.
MAX_HEAD: Final = 8192
DEADLINE: Final = 5.0
#: A peer outside the allow-list is answered its 404 within this, not DEADLINE.
STRANGER_DEADLINE: Final = 1.0
#: Connections open at once; one more is closed unanswered, nothing read: the relay's file
#: descriptors are for its database and its pushes.
MAX_CONNECTIONS: Final = 16
_REQUEST_LINE: Final = re.compile(rb"([A-Z]{1,16}) (/[\x21-\x7e]{0,2047}) HTTP/1\.[01]")
_REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def _response(status: int, body: bytes = b"", *, head: bool = False) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Cache-Control: no-store",
    ]
    if status == 200:
        lines.append(f"Content-Type: {CONTENT_TYPE_LATEST}")
    if status == 405:
        lines.append("Allow: GET, HEAD")
    return "\r\n".join([*lines, "", ""]).encode("ascii") + (b"" if head else body)


class MetricsListener:
    """Serves ``metrics`` at ``/metrics`` to ``allowed`` peers, the gauges read from ``db``."""

    def __init__(
        self,
        metrics: RelayMetrics,
        db: Database,
        *,
        allowed: Iterable[str],
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.metrics = metrics
        self.db = db
        self.allowed = TrustedProxies(allowed)
        self.clock = clock
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[object]] = set()

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose, when started with 0)."""
        if self._server is None:
            raise RuntimeError("the metrics listener is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``; OSError when that cannot be done (the port is taken, the
        address is not this host's), for the caller to refuse to start."""
        self._server = await asyncio.start_server(self._connection, host, port, limit=MAX_HEAD)
        log.info("relay_metrics_listening", host=host, port=self.port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peer = writer.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else None
        try:
            async with asyncio.timeout(DEADLINE if host in self.allowed else STRANGER_DEADLINE):
                head = await reader.readuntil(b"\r\n\r\n")
                request = _REQUEST_LINE.fullmatch(head.split(b"\r\n", 1)[0])
                if request is None:
                    writer.write(_response(400))
                else:
                    method, target = request.group(1), request.group(2)
                    status, body = await self._answer(method, target, peer)
                    writer.write(_response(status, body, head=method == b"HEAD"))
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a client too slow, gone, or that sent no whole head: no answer
        except asyncio.LimitOverrunError:
            with contextlib.suppress(ConnectionError):
                writer.write(_response(400))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)

    async def _answer(self, method: bytes, target: bytes, peer: object) -> tuple[int, bytes]:
        host = peer[0] if isinstance(peer, tuple) and peer else None
        if host not in self.allowed or target.split(b"?", 1)[0] != b"/metrics":
            return 404, b""
        if method not in (b"GET", b"HEAD"):
            return 405, b""
        try:
            async with self.db.read() as session:
                await self.metrics.refresh_outbox(session, self.clock())
        except StoreUnavailable:
            pass  # the counters still answer; the gauges keep their last values
        return 200, generate_latest(self.metrics.registry)
