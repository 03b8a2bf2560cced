"""The host's ``/console`` tunnel: TLS, ``CONNECT``, a bounded reply head, then raw bytes.

The console's ``location`` names the host that serves it (in a pool, the
member the VM runs on) and which console.  We add the session id, send
``CONNECT <path>?<query>&session_id=<sid> HTTP/1.0`` and read the reply head
with the sans-I/O :class:`~xcpconsole.http1.ConnectReplyParser` (16 KiB bound,
timeout).  A 200 turns the connection into the console's byte stream; bytes
that arrived together with the head are its first bytes and are not lost.

Two shapes for callers: :func:`open_tunnel` gives asyncio streams (RFB client,
web gateway); :func:`connect_console` gives the bare transport with reading
paused, for relays that plug in their own protocol (the proxy).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast
from urllib.parse import quote, urlsplit

from ..errors import NetworkError, TunnelError, XcpConsoleError
from ..http1 import DEFAULT_MAX_HEAD, ConnectReply, ConnectReplyParser
from ..settings import split_url
from ..trust import create_tls_connection

if TYPE_CHECKING:
    from ..xapi import ConsoleInfo, XapiSession

log = logging.getLogger("xcpconsole.tunnel")

DEFAULT_BUFSIZE = 256 * 1024

_STATUS_HINTS = {
    400: "the host did not understand the console request",
    401: "the host refused the session for this console",
    403: "your role may not open this console",
    404: "the host has no console server for it",
    500: "the VM is not running here or there is no such console",
    503: "the console is already in use (the pool limits console sessions)",
}


def console_target(location: str, default: tuple[str, int] | None = None
                   ) -> tuple[str, int, str]:
    """(host, port, request target) of a console ``location``, validated.

    A location without a port on the host we already talk to inherits our port
    (a forwarded or non-standard XenAPI port serves /console too).
    """
    parts = urlsplit(location)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "https" or not parts.hostname or port == -1 or not parts.path:
        raise TunnelError(f"unusable console location {location!r} (want https://HOST/console?...)")
    host = parts.hostname
    if port is None:
        port = default[1] if default and default[0] == host else 443
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    if any(c in target for c in " \r\n\t") or not target.startswith("/"):
        raise TunnelError(f"unusable console location {location!r}")
    return host, port, target


class _ReplyHeadProtocol(asyncio.Protocol):
    """Collects the reply head; pauses reading as soon as it is complete."""

    def __init__(self, max_head: int) -> None:
        self.parser = ConnectReplyParser(max_head)
        self.done: asyncio.Future[ConnectReply] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (asyncio's or uvloop's, which do not subclass asyncio.Transport)
        transport = cast(asyncio.Transport, transport)
        self.transport = transport

    def _fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        try:
            reply = self.parser.feed(data)
        except XcpConsoleError as exc:
            self._fail(TunnelError(f"bad reply to CONNECT /console: {exc}"))
            return
        if reply is not None:
            assert self.transport is not None
            self.transport.pause_reading()
            self.done.set_result(reply)

    def eof_received(self) -> bool | None:
        try:
            self.parser.feed(b"")
        except XcpConsoleError as exc:
            self._fail(TunnelError(f"the host closed the console connection: {exc}"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(TunnelError("the host closed the console connection "
                                                "before replying"))


def _status_error(reply: ConnectReply) -> TunnelError:
    hint = _STATUS_HINTS.get(reply.status, "unexpected reply")
    return TunnelError(f"console tunnel refused: {hint} (HTTP {reply.status} {reply.reason})",
                       status=reply.status)


async def _connect_once(session: XapiSession, console: ConsoleInfo, timeout: float,
                        max_head: int) -> tuple[asyncio.Transport, ConnectReply]:
    settings = session.settings
    host, port, target = console_target(console.location, split_url(settings.url))
    transport, proto = await create_tls_connection(
        lambda: _ReplyHeadProtocol(max_head), host, port, settings, timeout=timeout)
    sep = "&" if "?" in target else "?"
    request = f"CONNECT {target}{sep}session_id={quote(session.session_id, safe=':')} HTTP/1.0"
    transport.write(request.encode("ascii") + b"\r\n\r\n")
    try:
        reply = await asyncio.wait_for(proto.done, timeout)
    except TimeoutError:
        transport.abort()
        raise NetworkError(f"no reply to the console request within {timeout:g} s") from None
    except BaseException:
        transport.abort()
        raise
    return transport, reply


async def connect_console(session: XapiSession, console: ConsoleInfo, *,
                          timeout: float = 10.0, max_head: int = DEFAULT_MAX_HEAD
                          ) -> tuple[asyncio.Transport, bytes]:
    """Open the tunnel; returns (transport with reading paused, first console bytes).

    The caller must ``set_protocol`` and ``resume_reading``.  A 401 (session
    expired on the host) triggers one re-login and one retry.
    """
    for attempt in (1, 2):
        transport, reply = await _connect_once(session, console, timeout, max_head)
        if reply.status == 200:
            log.debug("tunnel to %s/%s open", console.vm_name_label, console.protocol)
            return transport, reply.leftover
        transport.abort()
        if reply.status == 401 and attempt == 1:
            log.info("console request refused with 401; logging in again")
            await session.relogin()
            continue
        raise _status_error(reply)
    raise AssertionError("unreachable")


async def open_tunnel(session: XapiSession, console: ConsoleInfo, *, timeout: float = 10.0,
                      limit: int = DEFAULT_BUFSIZE
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open the console tunnel as asyncio streams (first bytes included)."""
    loop = asyncio.get_running_loop()
    transport, leftover = await connect_console(session, console, timeout=timeout)
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if leftover:
        reader.feed_data(leftover)
    transport.resume_reading()
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
