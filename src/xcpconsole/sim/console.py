"""The ``/console`` handler: authenticate, pick the console, answer, relay bytes.

Order of checks as in xapi (``xapi_http.ml``, ``console.ml``): credentials
first (``session_id`` from a cookie or the query, else HTTP Basic which makes
a temporary session logged out afterwards) -> ``401`` with realm
``connect_console``; then which console (``uuid=`` naming a VM or a console,
else ``ref=`` naming a VM - its first ``rfb`` console - or a console) and
whether its VM is running here -> ``500`` with xapi's HTML; then the
backend's address -> ``404``; then ``limit_console_sessions`` -> ``503``.
Success is ``HTTP/1.1 200 OK`` whatever the request's version, written
before the backend is even connected (a failed connect just closes).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import logging
import socket
from collections.abc import Callable
from pathlib import Path

from ..errors import XapiError
from ..relay import Relay, StreamEnd
from .http import (
    HttpRequest,
    error_html,
    headers_only,
    internal_error,
    unauthorised,
)
from .model import RUNNING, Console, SimModel

log = logging.getLogger(__name__)

REALM = "connect_console"
OK_REPLY = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"
RELAY_CHUNK = 256 * 1024
HALF_CLOSE_GRACE = 30.0
BACKEND_CONNECT_TIMEOUT = 10.0
_FAILURE = "Console.Failure"

#: Finds the unix socket serving ``protocol`` for a VM ref, or None if it has none.
SocketLookup = Callable[[str, str], Path | None]


class _Refused(Exception):
    def __init__(self, reply: bytes) -> None:
        self.reply = reply


class ConsoleEndpoint:
    """Serves ``CONNECT /console?...`` (and refuses ``GET`` WebSocket upgrades, see docs)."""

    def __init__(
        self, model: SimModel, sockets: SocketLookup, *, host_ref: str | None = None
    ) -> None:
        self.model = model
        self.sockets = sockets
        #: The host this endpoint serves: consoles of VMs resident elsewhere are refused.
        self.host_ref = model.host.ref if host_ref is None else host_ref
        self.active: dict[str, list[str]] = {}  # VM ref -> users connected

    async def __call__(
        self, req: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        leftover: bytes,
    ) -> None:
        temp_session: str | None = None
        try:
            session, temp_session = self._authenticate(req)
            console = self._console_of(req)
            self._check_running_here(console, req)
            path = self.sockets(console.vm, console.protocol)
            if path is None:
                raise _Refused(headers_only(404, "Not Found"))
            if req.method == "GET":
                # A real host hands WebSocket upgrades to its wsproxy; the sim has none.
                raise _Refused(headers_only(501, "Method not implemented"))
            user = self.model.sessions[session].user if session in self.model.sessions else ""
            users = self.active.setdefault(console.vm, [])
            if self.model.pool.limit_console_sessions and users:
                raise _Refused(_limit_exceeded(users))
            users.append(user)
            try:
                writer.write(OK_REPLY)
                await writer.drain()
                await _relay(reader, writer, path, leftover)
            finally:
                users.remove(user)
                if not users:
                    self.active.pop(console.vm, None)
        except _Refused as refused:
            writer.write(refused.reply)
            await writer.drain()
        finally:
            if temp_session is not None:
                self.model.logout(temp_session)

    def _authenticate(self, req: HttpRequest) -> tuple[str, str | None]:
        """The session to act as, and the temporary one to log out afterwards."""
        deny = _Refused(unauthorised(REALM, version=req.reply_version))
        session = req.cookies.get("session_id") or req.query_param("session_id")
        if session is not None:
            if session not in self.model.sessions:
                raise deny
            return session, None
        auth = req.header("authorization")
        if auth is None:
            raise deny
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "basic":
            raise _Refused(internal_error(
                "Failure(&quot;Unknown authorization header&quot;)", version=req.reply_version
            ))
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode(
                "utf-8"
            ).partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise deny from None
        if not sep:
            raise deny
        try:
            temp = self.model.login(user, password, "xcpconsole-sim /console", temporary=True)
        except XapiError:
            raise deny from None
        return temp, temp

    def _console_of(self, req: HttpRequest) -> Console:
        refuse = _Refused(internal_error(_FAILURE, version=req.reply_version))
        uuid = req.query_param("uuid")
        ref = req.query_param("ref")
        if uuid is not None:
            try:
                ref = self.model.vm_by_uuid(uuid).ref
            except XapiError:
                try:
                    ref = self.model.console_by_uuid(uuid).ref
                except XapiError:
                    raise _Refused(internal_error(
                        f"UUID_INVALID: [ console; {_html(uuid)} ]", version=req.reply_version
                    )) from None
        if ref is None:
            raise refuse
        if ref in self.model.vms:
            vm = self.model.vms[ref]
            for cref in vm.consoles:
                if self.model.consoles[cref].protocol == "rfb":
                    return self.model.consoles[cref]
            raise refuse
        if ref in self.model.consoles:
            return self.model.consoles[ref]
        raise refuse

    def _check_running_here(self, console: Console, req: HttpRequest) -> None:
        vm = self.model.vms[console.vm]
        if vm.power_state != RUNNING or vm.resident_on != self.host_ref:
            raise _Refused(internal_error(_FAILURE, version=req.reply_version))


def _html(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        .replace("'", "&apos;").replace('"', "&quot;")
    )


def _limit_exceeded(users: list[str]) -> bytes:
    names = ", ".join(_html(u) for u in users)
    who = f"User '{names}' is" if len(users) == 1 else f"Users '{names}' are"
    body = (
        f"<html><body><h1>Connection Limit Exceeded</h1><p>{who} currently connected to this "
        "console. No new connections are allowed. Please check the limit_console_sessions "
        "config and try again later.</p></body></html>"
    )
    return error_html(503, "Connection Limit Exceeded", body)


async def connect_unix(
    path: Path, timeout: float, *, limit: int = RELAY_CHUNK
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a unix stream socket, waiting while its listen backlog is full.

    QEMU listens on its VNC socket with a backlog of 1.  A non-blocking
    ``connect(2)`` to a unix socket whose backlog is full fails with EAGAIN
    at once (it never goes "in progress" like TCP), and asyncio's
    ``open_unix_connection`` then takes the still unconnected socket for a
    connected one: the first read fails with EINVAL and the client is
    dropped.  xapi connects with a blocking ``connect``, which simply waits
    for QEMU to accept; this retries EAGAIN (with a short back-off, up to
    ``timeout`` seconds) to the same effect.  Other errors (no such socket,
    refused) are raised at once, as they are for xapi.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.002
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(path))
        except OSError as exc:
            sock.close()
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
            if loop.time() + delay > deadline:
                raise TimeoutError(f"{path.name}: listen backlog still full") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            continue
        try:
            return await asyncio.open_unix_connection(sock=sock, limit=limit)
        except BaseException:
            sock.close()
            raise


async def _relay(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, path: Path, leftover: bytes
) -> None:
    """Copy bytes both ways until either side closes (like xapi's ``Unixext.proxy``).

    A client half-close is passed on to the backend, which may still have bytes to send;
    a backend that ignores the EOF gets a bounded grace period, not forever.
    """
    try:
        backend_r, backend_w = await connect_unix(path, BACKEND_CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        log.info("console backend %s unreachable: %s", path.name, exc)
        return
    client = StreamEnd(client_r, client_w, "client", chunk=RELAY_CHUNK)
    backend = StreamEnd(backend_r, backend_w, "backend", chunk=RELAY_CHUNK)
    relay = Relay(client, backend, grace=HALF_CLOSE_GRACE)
    relay.send("b", leftover)
    await relay.run()
