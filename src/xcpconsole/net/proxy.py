"""A local TCP endpoint for a VM console: every accepted connection gets its own tunnel.

So any VNC viewer (or ``socat``, or a terminal) can use a console without
knowing XenAPI: ``vncviewer 127.0.0.1::5900``.  Each accepted connection and its
tunnel are the two :class:`~xcpconsole.relay.TransportEnd` s of one
:class:`~xcpconsole.relay.Relay` (transport to transport: no task switch per chunk,
the transports' own flow control bounds memory).

On an RFB console the relay's filters are a
:class:`~xcpconsole.rfb.shareflag.ShareFlagRewriter` unless ``shared=False``: a viewer
asking for an exclusive session (TigerVNC's default) would make QEMU drop every other
client of the console, so its ClientInit is made shared.  The rewriter touches one byte
in the handshake and afterwards hands each chunk back as it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..address import format_hostport
from ..errors import XcpConsoleError
from ..relay import Filter, Relay, TransportEnd
from ..rfb.shareflag import ShareFlagRewriter
from .tunnel import DEFAULT_BUFSIZE, Tunnel, open_console

if TYPE_CHECKING:
    from ..xapi import ConsoleInfo, XapiSession

log = logging.getLogger("xcpconsole.proxy")


class _Link:
    """A local client and its tunnel; closing either closes both (after flushing)."""

    def __init__(self, proxy: ConsoleProxy) -> None:
        self.proxy = proxy
        self.local = TransportEnd("viewer", high_water=proxy.bufsize, on_connect=self._accepted)
        self.relay: Relay | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def _accepted(self, transport: asyncio.Transport) -> None:
        """The local client is connected (its reading is paused until the tunnel is open)."""
        self.task = asyncio.get_running_loop().create_task(self._run(transport))
        self.task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("proxy link failed", exc_info=task.exception())
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.relay is not None:
            self.relay.close()
        elif self.task is not None and not self.task.done():
            self.task.cancel()
        self.local.close()

    async def _run(self, local: asyncio.Transport) -> None:
        peer = local.get_extra_info("peername")
        try:
            try:
                tunnel = await self.proxy.open()
            except XcpConsoleError as exc:
                self.proxy.report(f"connection from {_addr(peer)}: {exc}")
                return
            remote = TransportEnd("tunnel", high_water=self.proxy.bufsize)
            first = tunnel.take(remote)
            if local.is_closing():
                remote.abort()
                return
            to_console, to_viewer = self._filters(_addr(peer))
            self.relay = Relay(self.local, remote, a_to_b=to_console, b_to_a=to_viewer)
            self.relay.send("a", to_viewer(first) if to_viewer is not None else first)
            self.proxy.report(f"connection from {_addr(peer)}: tunnel open")
            result = await self.relay.run()
            self.proxy.report(
                f"connection from {_addr(peer)}: closed ({result.reason}); "
                f"{result.a_to_b} bytes to the console, {result.b_to_a} bytes back")
        finally:
            self.local.close()

    def _filters(self, peer: str) -> tuple[Filter | None, Filter | None]:
        """(viewer -> console, console -> viewer): the shared-flag rewriter on RFB."""
        if not self.proxy.shared or self.proxy.console.protocol != "rfb":
            return None, None
        rewriter = ShareFlagRewriter()
        told = False

        def to_console(data: bytes) -> bytes:
            nonlocal told
            out = rewriter.client_data(data)
            if rewriter.finished and not told:
                told = True
                if rewriter.rewritten:
                    self.proxy.report(
                        f"connection from {peer}: the viewer asked for an exclusive session; "
                        "made it shared (proxy --exclusive lets it have one)")
                elif rewriter.gave_up and rewriter.version is not None:
                    self.proxy.report(f"connection from {peer}: cannot make the session "
                                      f"shared: {rewriter.gave_up}")
            return out

        return to_console, rewriter.server_data


def _addr(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return format_hostport(str(peer[0]), int(peer[1]))
    return str(peer)


class ConsoleProxy:
    """Listens locally; each accepted connection is relayed through a fresh tunnel.

    ``shared`` (the default): viewers of an RFB console get a shared session even if they
    ask for an exclusive one; False relays their ClientInit as it is.
    """

    def __init__(self, session: XapiSession, console: ConsoleInfo, *,
                 timeout: float = 10.0, bufsize: int = DEFAULT_BUFSIZE,
                 report: Callable[[str], None] | None = None, shared: bool = True) -> None:
        self.session = session
        self.console = console
        self.shared = shared
        self.timeout = timeout
        self.bufsize = bufsize
        self.report = report or log.info
        self.links: set[_Link] = set()
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._first_done: asyncio.Future[None] | None = None

    async def open(self) -> Tunnel:
        """A tunnel to wherever the VM runs now (after a reboot or a migration the console
        is looked up again, and later viewers go straight to its new host)."""
        tunnel = await open_console(self.session, self.console, timeout=self.timeout,
                                    notice=self.report)
        self.console = tunnel.console
        return tunnel

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
                      report: Callable[[str], None] | None = None,
                      shared: bool = True) -> int:
    """Serve until ``stop`` is set (or the first connection ended, with ``once``).

    ``on_ready(host, port)`` is called once listening.  ``shared``: see
    :class:`ConsoleProxy`.  Returns how many connections were accepted.
    """
    proxy = ConsoleProxy(session, console, timeout=timeout, report=report, shared=shared)
    host, port = await proxy.start(*listen, once=once)
    if on_ready is not None:
        on_ready(host, port)
    try:
        await proxy.wait(stop)
    finally:
        await proxy.close()
    return proxy.accepted
