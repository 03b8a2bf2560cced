"""Slow and numerous clients: what one address, or everyone, may make the gateway hold.

A connection costs a file descriptor until it closes, and a console two (the browser's
and the tunnel's).  Without bounds, a thousand half-sent requests (slowloris) keep their
descriptors until the open-files limit, and then nobody can connect.  So:

- a request head must be complete within ``head_timeout`` of the connection opening or
  of the previous answer (aiohttp's keep-alive timer does this, armed at connection
  start: it is also how long an idle keep-alive connection stays);
- a request body must arrive within ``body_timeout`` (:func:`read_body`, called by the
  middleware before any handler reads it);
- :class:`GuardedSite` counts connections in all and per client address, and answers a
  connection over either cap with one ``503`` line and closes it, before any parsing;
- :func:`raise_open_files_limit` lifts the soft open-files limit to the hard one, and
  :func:`connection_cap` keeps the total cap below what that limit can hold.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from collections.abc import Callable
from typing import cast

from aiohttp import web

log = logging.getLogger(__name__)

#: Descriptors kept back for the tunnels, the host's XenAPI connections, logs and files.
RESERVED_FDS = 64

_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Connection: close\r\nRetry-After: 5\r\nContent-Length: 41\r\n\r\n"
         b"too many connections; try again shortly\r\n")


def raise_open_files_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit to %s: %s", target, exc)
    return soft


def connection_cap(wanted: int, open_files: int) -> int:
    """``wanted``, or less if the open-files limit cannot hold that many browser
    connections, each with a tunnel behind it."""
    fits = max(8, (open_files - RESERVED_FDS) // 2)
    if wanted > fits:
        log.warning("at most %d connections (--max-connections %d does not fit the "
                    "open-files limit %d)", fits, wanted, open_files)
    return min(wanted, fits)


class ConnectionCounter:
    """Connections in all and per client address, against their caps."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total, self.per_address = total, per_address
        self.open = 0
        self.by_address: dict[str, int] = {}
        self.refused = 0

    def admit(self, address: str) -> bool:
        if self.open >= self.total or self.by_address.get(address, 0) >= self.per_address:
            self.refused += 1
            return False
        self.open += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return True

    def release(self, address: str) -> None:
        self.open -= 1
        left = self.by_address.get(address, 0) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)


class _Guarded(asyncio.Protocol):
    """Stands in front of aiohttp's request handler: counts the connection, or refuses it
    over a cap (the handler then never starts)."""

    def __init__(self, counter: ConnectionCounter, make: Callable[[], asyncio.Protocol]
                 ) -> None:
        self._counter = counter
        self._make = make
        self._inner: asyncio.Protocol | None = None
        self._address: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self._counter.admit(address):
            tr = cast(asyncio.Transport, transport)
            tr.write(_BUSY)
            tr.close()
            return
        self._address = address
        self._inner = self._make()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is not None:
            self._counter.release(self._address)
            self._address = None
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A TCP site whose connections pass a :class:`ConnectionCounter` first."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *,
                 counter: ConnectionCounter, ssl_context: ssl.SSLContext | None = None
                 ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self.counter = counter

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        counter = self.counter
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Guarded(counter, server), self._host, self._port,
            ssl=self._ssl_context, backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


async def read_body(request: web.Request, timeout: float) -> None:
    """Read the body now, within ``timeout`` (aiohttp keeps it for ``post()``/``read()``);
    a client that drips it gets 408."""
    if not request.can_read_body:
        return
    try:
        await asyncio.wait_for(request.read(), timeout)
    except TimeoutError:
        slow = web.HTTPRequestTimeout(text="the request body came too slowly")
        slow.force_close()  # the rest of the body is not waited for
        raise slow from None


async def start_gateway(app: web.Application, host: str, port: int,
                        ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    """Run ``app`` on ``host:port`` with the limits of its config (``serve`` and
    ``demo``); OSError if it cannot listen (the runner is cleaned up then)."""
    from .gateway import GATEWAY

    config = app[GATEWAY].config
    counter = ConnectionCounter(connection_cap(config.max_connections,
                                               raise_open_files_limit()),
                                config.max_connections_per_address)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5,
                           keepalive_timeout=config.head_timeout)
    await runner.setup()
    try:
        await GuardedSite(runner, host, port, counter=counter, ssl_context=ssl_context).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
