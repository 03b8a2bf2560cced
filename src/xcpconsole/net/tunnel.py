"""The host's ``/console`` tunnel: TLS, ``CONNECT``, a bounded reply head, then raw bytes.

The console's ``location`` names the host that serves it (in a pool, the
member the VM runs on) and which console.  We add the session id, send
``CONNECT <path>?<query>&session_id=<sid> HTTP/1.0`` and read the reply head
with the sans-I/O :class:`~xcpconsole.http1.ConnectReplyParser` (16 KiB bound,
timeout).  A 200 turns the connection into the console's byte stream; bytes
that arrived together with the head are its first bytes and are not lost.

Two shapes for callers: :func:`open_tunnel` gives asyncio streams (RFB client,
web gateway); :func:`open_console` gives a :class:`Tunnel` whose transport
:meth:`Tunnel.take` hands, reading paused, to a relay's own protocol (the proxy,
attach; :func:`connect_console` does both).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from urllib.parse import quote, urlsplit

from ..errors import (
    ConsoleForbiddenError,
    NetworkError,
    TrustError,
    TunnelError,
    XcpConsoleError,
)
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
    """Collects the reply head; pauses reading as soon as it is complete.

    What arrives after the head and before :meth:`Tunnel.take` hands the transport on
    is kept: more bytes, and the host's close.  asyncio's TLS delivers a close_notify
    read together with the reply in the same call, even with reading paused, and never
    again to the next protocol: a host that answers ``200 OK`` and closes (xapi, when
    the backend is gone) would otherwise leave the console open for ever.
    """

    def __init__(self, max_head: int) -> None:
        self.parser = ConnectReplyParser(max_head)
        self.done: asyncio.Future[ConnectReply] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.late = bytearray()
        #: after the head: ("eof", None) and/or ("lost", exc), in the order they came
        self.ended: list[tuple[str, Exception | None]] = []

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
            self.late += data
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
        if self.done.done():
            self.ended.append(("eof", None))
            return None
        try:
            self.parser.feed(b"")
        except XcpConsoleError as exc:
            self._fail(TunnelError(f"the host closed the console connection: {exc}"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(TunnelError("the host closed the console connection "
                                                "before replying"))
        else:
            self.ended.append(("lost", exc))


_CONNECTED_USERS = re.compile(r"Users? '([^<]{1,400}?)' (?:is|are) currently connected")


def _status_error(reply: ConnectReply, host: str) -> TunnelError:
    hint = _STATUS_HINTS.get(reply.status, "unexpected reply")
    if reply.status == 503:
        # limit_console_sessions: the page names who holds the console (HTML-escaped)
        found = _CONNECTED_USERS.search(reply.leftover[:8192].decode("utf-8", "replace"))
        if found:
            hint = f"{html.unescape(found.group(1))} is using this console; the pool allows " \
                "one console session per VM (limit_console_sessions)"
    elif reply.status == 500:
        hint = f"the VM is not running on {host} (any more) or there is no such console"
    elif reply.status == 403:
        return ConsoleForbiddenError(
            f"console refused: your role on the pool may list this VM but not open its "
            f"console (HTTP 403 {reply.reason}); ask for vm-operator or higher",
            status=403)
    return TunnelError(f"console tunnel refused: {hint} (HTTP {reply.status} {reply.reason})",
                       status=reply.status)


async def _connect_once(session: XapiSession, console: ConsoleInfo, timeout: float,
                        max_head: int, refresh_trust: bool = False
                        ) -> tuple[asyncio.Transport, ConnectReply, _ReplyHeadProtocol]:
    settings = session.settings
    host, port, target = console_target(console.location, split_url(settings.url))
    # The host serving the console (a pool member) is trusted because the master, which
    # we already trust, names its certificate; nothing is sent before that check.
    # (The master itself was checked like the XenAPI connection: pin, known_hosts, TOFU.)
    vouched = None if (host, port) == split_url(settings.url) else \
        await session.vouched_for(host, port, refresh=refresh_trust)
    transport, proto = await create_tls_connection(
        lambda: _ReplyHeadProtocol(max_head), host, port, settings, timeout=timeout,
        vouched=vouched)
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
    return transport, reply, proto


@dataclass(frozen=True)
class Tunnel:
    """An open tunnel: its transport (reading paused) and the console it reached (looked
    up again if the VM moved).  Hand it to the protocol that reads it with :meth:`take`."""

    transport: asyncio.Transport
    console: ConsoleInfo
    _head: _ReplyHeadProtocol

    def take(self, protocol: asyncio.BaseProtocol) -> bytes:
        """Make ``protocol`` the tunnel's protocol; returns the first console bytes (they
        came with the reply), which the caller hands on before it next awaits.

        A close that came with the reply reaches ``protocol`` on the next loop turn,
        after those bytes; reading stays paused (the caller resumes it)."""
        head = self._head
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        first = head.done.result().leftover + bytes(head.late)
        head.late.clear()
        if head.ended:
            asyncio.get_running_loop().call_soon(_replay, protocol, list(head.ended))
            head.ended.clear()
        return first


def _replay(protocol: asyncio.BaseProtocol, ended: list[tuple[str, Exception | None]]) -> None:
    for what, exc in ended:
        if what == "eof" and isinstance(protocol, asyncio.Protocol):
            protocol.eof_received()
        elif what == "lost":
            protocol.connection_lost(exc)


async def open_console(session: XapiSession, console: ConsoleInfo, *,
                       timeout: float = 10.0, max_head: int = DEFAULT_MAX_HEAD,
                       notice: Callable[[str], None] | None = None) -> Tunnel:
    """Open the tunnel to the host ``console`` lives on, following the VM.

    A 401 (session expired on the host) triggers one re-login and one retry.  A 500
    (the VM is not running there: it moved, rebooted or stopped) makes it look the
    console up again, once, and go where it is now; ``notice`` is told so.  A member
    whose certificate is not the one the master lists is refused; the master is asked
    again once (the certificate may have been renewed) before giving up.
    """
    relogged = moved = refreshed = False
    while True:
        host = console_target(console.location)[0]
        try:
            transport, reply, head = await _connect_once(session, console, timeout, max_head,
                                                         refresh_trust=refreshed)
        except TrustError:
            if refreshed:
                raise
            refreshed = True
            continue
        if reply.status == 200:
            log.debug("tunnel to %s/%s open", console.vm_name_label, console.protocol)
            return Tunnel(transport, console, head)
        transport.abort()
        if reply.status == 401 and not relogged:
            log.info("console request refused with 401; logging in again")
            relogged = True
            await session.relogin()
            continue
        if reply.status == 500 and not moved:
            moved = True
            (notice or log.info)(f"the VM {console.vm_name_label} is no longer running on "
                                 f"{host}; looking for it...")
            try:
                fresh = await session.find_console(console.vm_uuid, console.protocol)
            except XcpConsoleError as exc:
                raise TunnelError(f"console tunnel refused by {host} (HTTP 500), and the "
                                  f"VM's console is gone: {exc}", status=500) from None
            if fresh.location != console.location:
                console = fresh
                continue
        raise _status_error(reply, host)


async def connect_console(session: XapiSession, console: ConsoleInfo, protocol: asyncio.Protocol,
                          *, timeout: float = 10.0, max_head: int = DEFAULT_MAX_HEAD
                          ) -> tuple[asyncio.Transport, bytes]:
    """:func:`open_console`, handed to ``protocol``: (transport with reading paused, first
    console bytes).  The caller hands the bytes on, then resumes reading."""
    tunnel = await open_console(session, console, timeout=timeout, max_head=max_head)
    return tunnel.transport, tunnel.take(protocol)


async def open_tunnel(session: XapiSession, console: ConsoleInfo, *, timeout: float = 10.0,
                      limit: int = DEFAULT_BUFSIZE,
                      notice: Callable[[str], None] | None = None
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open the console tunnel as asyncio streams (first bytes included)."""
    loop = asyncio.get_running_loop()
    tunnel = await open_console(session, console, timeout=timeout, notice=notice)
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    first = tunnel.take(protocol)
    if first:
        reader.feed_data(first)
    tunnel.transport.resume_reading()
    return reader, asyncio.StreamWriter(tunnel.transport, protocol, reader, loop)
