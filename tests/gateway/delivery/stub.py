"""A real HTTP partner on 127.0.0.1 that misbehaves on demand, with TLS from a test CA.

Each request takes the next behaviour from ``script`` (then ``default``): ``ok``, ``500``,
``429``, ``503``, ``503-far`` (a ``Retry-After`` date no datetime can hold), ``slow`` (answers
after ``slow_seconds``), ``reset`` (TCP RST), ``redirect`` (307 elsewhere), ``garbage`` (bytes
that are not HTTP), ``big`` (a 2xx body over any sane limit), ``hang`` (never answers).
Accepted deliveries are deduplicated on ``Idempotency-Key``, as the contract asks of partners.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from keys import DevelopmentCA


@dataclass
class PartnerPKI:
    ca_pem: str
    cert_file: Path
    key_file: Path


def make_pki(directory: Path, host: str = "127.0.0.1") -> PartnerPKI:
    """A throwaway CA and a server certificate for ``host`` signed by it."""
    ca = DevelopmentCA.generate("Test partner CA", hosts=(host,))
    cert_file, key_file = ca.issue_server((host,)).save(directory)
    return PartnerPKI(ca.certificate_pem, cert_file, key_file)


@dataclass
class Received:
    idempotency_key: str
    kind: str
    content_type: str
    body: bytes
    #: When the whole request had arrived (``time.monotonic()``): the attempt as the partner saw it.
    at: float = field(default_factory=time.monotonic)


@dataclass
class PartnerStub:
    pki: PartnerPKI | None = None
    default: str = "ok"
    slow_seconds: float = 2.0
    script: deque[str] = field(default_factory=deque)
    #: Every request that reached the handler, in order (duplicates included).
    requests: list[Received] = field(default_factory=list)
    #: Deliveries accepted, deduplicated on Idempotency-Key.
    accepted: dict[str, Received] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.pki else "http"
        return f"{scheme}://127.0.0.1:{self.port}/mappa/deliveries"

    async def start(self, port: int = 0) -> PartnerStub:
        self._closing.clear()
        context = None
        if self.pki is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.pki.cert_file, self.pki.key_file)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._closing.set()
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=5)
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                mode = self.script.popleft() if self.script else self.default
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    keep = await self._answer(mode, headers, body, writer)
                finally:
                    self.in_flight -= 1
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        finally:
            self._handlers.discard(task)
            if not writer.is_closing():
                writer.transport.abort()

    async def _answer(
        self, mode: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        received = Received(
            headers.get("idempotency-key", ""),
            headers.get("mappa-message-kind", ""),
            headers.get("content-type", ""),
            body,
        )
        self.requests.append(received)

        def respond(status: str, extra: str = "", content: bytes = b"") -> None:
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Length: {len(content)}\r\n{extra}\r\n".encode()
                + content
            )

        if mode == "ok" or mode == "slow":
            # The partner commits first, then acknowledges (slowly, in "slow").
            self.accepted.setdefault(received.idempotency_key, received)
            if mode == "slow":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.slow_seconds)
            respond("200 OK", "Content-Type: application/json\r\n", b'{"status":"accepted"}')
        elif mode == "500":
            respond("500 Internal Server Error")
        elif mode == "429":
            respond("429 Too Many Requests", "Retry-After: 0\r\n")
        elif mode == "503":
            respond("503 Service Unavailable", "Retry-After: 0\r\n")
        elif mode == "503-far":
            respond("503 Service Unavailable", "Retry-After: 01 Jan 99999999999 00:00:00 GMT\r\n")
        elif mode == "redirect":
            respond("307 Temporary Redirect", "Location: https://evil.invalid/steal\r\n")
        elif mode == "big":
            self.accepted.setdefault(received.idempotency_key, received)
            respond("200 OK", "", b"x" * 2_000_000)
        elif mode == "garbage":
            writer.write(b"\x00\xffNOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
            return False
        elif mode == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        elif mode == "hang":
            await self._closing.wait()
            return False
        else:  # pragma: no cover - a typo in a test
            raise AssertionError(mode)
        await writer.drain()
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
