"""A local TCP endpoint for a VM console: every accepted connection gets its own tunnel.

So any VNC viewer (or ``socat``, or a terminal) can use a console without
knowing XenAPI: ``vncviewer 127.0.0.1::5900``.  The relay is built on asyncio
Protocols, not stream loops: ``data_received`` hands each chunk (up to 256 KiB,
what the event loop reads at once) straight to the other transport's
``write``, and the transports' own flow control (``pause_writing`` ->
``pause_reading`` on the other side) bounds memory.  No per-chunk task switch,
no copy into a StreamReader buffer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ..errors import TunnelError, XcpConsoleError
from .tunnel import DEFAULT_BUFSIZE, connect_console

if TYPE_CHECKING:
    from ..xapi import ConsoleInfo, XapiSession

log = logging.getLogger("xcpconsole.proxy")


class _Side(asyncio.Protocol):
    """One end of a relay: what it receives goes to ``peer`` (the other end's transport)."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.peer: asyncio.Transport | None = None
        self.received = 0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (asyncio's or uvloop's, which do not subclass asyncio.Transport)
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self.link.bufsize)
        if self is self.link.local:
            self.link.accepted(transport)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.peer is not None:
            self.peer.write(data)

    def eof_received(self) -> bool | None:
        self.link.close()
        return None

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.link.close()


class _Link:
    """A local client and its tunnel; closing either closes both (after flushing)."""

    def __init__(self, proxy: ConsoleProxy) -> None:
        self.proxy = proxy
        self.bufsize = proxy.bufsize
        self.local = _Side(self)
        self.remote = _Side(self)
        self.task: asyncio.Task[None] | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def accepted(self, transport: asyncio.Transport) -> None:
        """The local client is connected: hold its bytes until the tunnel is open."""
        transport.pause_reading()
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.task = asyncio.get_running_loop().create_task(self.start())

    def close(self) -> None:
        for side in (self.local, self.remote):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.close()
        if self.task is not None and not self.task.done() and self.remote.transport is None:
            self.task.cancel()
        ended = self.local.lost and (self.remote.transport is None or self.remote.lost)
        if ended and not self.closed.done():
            self.closed.set_result(None)

    async def start(self) -> None:
        local = self.local.transport
        assert local is not None
        peer = local.get_extra_info("peername")
        try:
            transport, first = await self.proxy.open()
        except XcpConsoleError as exc:
            self.proxy.report(f"connection from {_addr(peer)}: {exc}")
            self.close()
            return
        if local.is_closing():
            transport.abort()
            self.close()
            return
        transport.set_protocol(self.remote)
        self.remote.connection_made(transport)
        self.remote.peer, self.local.peer = local, transport
        if first:
            local.write(first)
        transport.resume_reading()
        local.resume_reading()
        self.proxy.report(f"connection from {_addr(peer)}: tunnel open")


def _addr(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class ConsoleProxy:
    """Listens locally; each accepted connection is relayed through a fresh tunnel."""

    def __init__(self, session: XapiSession, console: ConsoleInfo, *,
                 timeout: float = 10.0, bufsize: int = DEFAULT_BUFSIZE,
                 report: Callable[[str], None] | None = None) -> None:
        self.session = session
        self.console = console
        self.timeout = timeout
        self.bufsize = bufsize
        self.report = report or log.info
        self.links: set[_Link] = set()
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._first_done: asyncio.Future[None] | None = None

    async def open(self) -> tuple[asyncio.Transport, bytes]:
        """A tunnel to the console; after a VM restart the console ref is looked up anew."""
        try:
            return await connect_console(self.session, self.console, timeout=self.timeout)
        except TunnelError as exc:
            if exc.status != 500:
                raise
            fresh = await self.session.find_console(self.console.vm_uuid,
                                                    self.console.protocol)
            if fresh.ref == self.console.ref and fresh.location == self.console.location:
                raise
            self.console = fresh
            return await connect_console(self.session, fresh, timeout=self.timeout)

    async def start(self, host: str = "127.0.0.1", port: int = 5900, *,
                    once: bool = False) -> tuple[str, int]:
        """Start listening; returns the bound (host, port) (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        self._first_done = loop.create_future() if once else None

        def factory() -> asyncio.Protocol:
            link = _Link(self)
            self.links.add(link)
            self.accepted += 1
            link.closed.add_done_callback(lambda _f: self._forget(link))
            if once and self._server is not None:
                loop.call_soon(self._server.close)  # not now: asyncio attaches the transport
            return link.local

        self._server = await loop.create_server(factory, host, port, reuse_address=True)
        sock = self._server.sockets[0]
        bound = sock.getsockname()
        return str(bound[0]), int(bound[1])

    def _forget(self, link: _Link) -> None:
        self.links.discard(link)
        if self._first_done is not None and not self._first_done.done() and not self.links:
            self._first_done.set_result(None)

    async def wait(self, stop: asyncio.Event | None = None) -> None:
        """Until ``stop`` is set or, with ``once``, the first connection ended."""
        waits: list[asyncio.Future[object]] = []
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        if self._first_done is not None:
            waits.append(asyncio.ensure_future(self._first_done))
        if not waits:
            waits.append(asyncio.get_running_loop().create_future())
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def close(self) -> None:
        """Stop listening and close every relayed connection."""
        if self._server is not None:
            self._server.close()
        for link in list(self.links):
            link.close()
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0)


async def serve_proxy(session: XapiSession, console: ConsoleInfo,
                      listen: tuple[str, int] = ("127.0.0.1", 5900), once: bool = False, *,
                      stop: asyncio.Event | None = None,
                      on_ready: Callable[[str, int], None] | None = None,
                      timeout: float = 10.0,
                      report: Callable[[str], None] | None = None) -> int:
    """Serve until ``stop`` is set (or the first connection ended, with ``once``).

    ``on_ready(host, port)`` is called once listening.  Returns how many
    connections were accepted.
    """
    proxy = ConsoleProxy(session, console, timeout=timeout, report=report)
    host, port = await proxy.start(*listen, once=once)
    if on_ready is not None:
        on_ready(host, port)
    try:
        await proxy.wait(stop)
    finally:
        await proxy.close()
    return proxy.accepted
