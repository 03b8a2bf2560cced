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

RBAC (sim/rbac.py) as ``xapi_http.ml`` and ``console.ml`` apply it: right after
the credentials, the session needs ``http/connect_console`` (``GET``:
``http/connect_console_ws``), else ``403 Forbidden``; once the console is known,
the control domain's needs ``http/connect_console/host_console`` (pool-admin),
else the ``500`` whose "Additional information" is the ``RBAC_PERMISSION_DENIED``.
``GET`` is the WebSocket form (sim/wsconsole.py); CONNECT tunnels are watched by
the idle monitor (sim/idle.py) when ``vm_console_idle_timeout`` is set.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import logging
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ..errors import XapiError
from ..relay import Relay, StreamEnd
from . import rbac, wsconsole
from .http import (
    HttpRequest,
    error_html,
    forbidden,
    headers_only,
    internal_error,
    unauthorised,
)
from .idle import IdleWatch
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
    """Serves ``CONNECT /console?...`` and its WebSocket form (``GET`` + upgrade)."""

    def __init__(
        self, model: SimModel, sockets: SocketLookup, *, host_ref: str | None = None
    ) -> None:
        self.model = model
        self.sockets = sockets
        #: The host this endpoint serves: consoles of VMs resident elsewhere are refused.
        self.host_ref = model.host.ref if host_ref is None else host_ref
        self.active: dict[str, list[str]] = {}  # VM ref -> users connected
        self._tunnels: dict[str, set[asyncio.Task[None]]] = {}  # VM ref -> open tunnels

    async def __call__(
        self, req: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        leftover: bytes,
    ) -> None:
        temp_session: str | None = None
        try:
            session, temp_session = self._authenticate(req)
            websocket = req.method == "GET"
            self._check_permission(
                session, rbac.CONNECT_CONSOLE_WS if websocket else rbac.CONNECT_CONSOLE, req)
            console = self._console_of(req)
            self._check_host_console(session, console, req)
            self._check_running_here(console, req)
            path = self.sockets(console.vm, console.protocol)
            if path is None:
                raise _Refused(headers_only(404, "Not Found"))
            if websocket:
                await self._tracked(
                    console.vm, self._websocket(req, reader, writer, path, leftover))
                return
            user = self.model.sessions[session].user if session in self.model.sessions else ""
            users = self.active.setdefault(console.vm, [])
            if self.model.pool.limit_console_sessions and users:
                raise _Refused(_limit_exceeded(users))
            users.append(user)
            try:
                writer.write(OK_REPLY)
                await writer.drain()
                await self._tracked(console.vm, _relay(
                    reader, writer, path, leftover, self._idle_timeout(console)))
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

    def close_vm(self, vm_ref: str) -> int:
        """End every open tunnel to ``vm_ref``'s consoles here (it migrated away); how many."""
        tasks = self._tunnels.pop(vm_ref, set())
        for task in tasks:
            task.cancel()
        return len(tasks)

    async def _tracked(self, vm_ref: str, work: Coroutine[Any, Any, None]) -> None:
        """Run one tunnel so that :meth:`close_vm` can end it; its errors pass through."""
        task = asyncio.ensure_future(work)
        tasks = self._tunnels.setdefault(vm_ref, set())
        tasks.add(task)
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            tasks.discard(task)
            if not tasks and self._tunnels.get(vm_ref) is tasks:
                del self._tunnels[vm_ref]
        if not task.cancelled():
            task.result()

    async def _websocket(
        self, req: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        path: Path, leftover: bytes,
    ) -> None:
        """``console.ml`` ``ws_proxy``: the limit refuses every WebSocket (bare 503), then
        the upgrade (no key: bare 501), then wsproxy connects to the backend."""
        if self.model.pool.limit_console_sessions:
            raise _Refused(wsconsole.LIMIT_REPLY)
        key = wsconsole.websocket_key(req)
        if key is None:
            raise _Refused(wsconsole.NO_UPGRADE_REPLY)
        writer.write(wsconsole.upgrade_reply(key))
        await writer.drain()
        try:
            backend_r, backend_w = await connect_unix(
                path, BACKEND_CONNECT_TIMEOUT, limit=wsconsole.SERVER_FRAME * 64)
        except (OSError, TimeoutError) as exc:
            log.info("console backend %s unreachable: %s", path.name, exc)
            return
        await wsconsole.relay_websocket(reader, writer, backend_r, backend_w, leftover)

    def _check_permission(self, session: str, permission: str, req: HttpRequest) -> None:
        """``xapi_http.ml`` ``assert_credentials_ok``: an RBAC denial is ``403``."""
        found = self.model.sessions.get(session)
        if found is None or not rbac.is_allowed(found.role, found.superuser, permission):
            raise _Refused(forbidden(version=req.reply_version))

    def _check_host_console(self, session: str, console: Console, req: HttpRequest) -> None:
        """``console.ml`` ``rbac_check_for_control_domain``: its ``Server_error`` becomes
        ``http_svr.ml``'s ``500`` with the error as "Additional information"."""
        if not self.model.vms[console.vm].is_control_domain:
            return
        found = self.model.sessions.get(session)
        if found is not None and rbac.is_allowed(found.role, found.superuser, rbac.HOST_CONSOLE):
            return
        denied = rbac.denial(rbac.HOST_CONSOLE)
        raise _Refused(internal_error(
            f"{denied.code}: [ {'; '.join(denied.params)} ]", version=req.reply_version))

    def _idle_timeout(self, console: Console) -> float | None:
        """``Console_idle_monitor.get_idle_timeout_config``, read when the tunnel opens.

        The control domain's console follows ``host.console_idle_timeout``, which the sim
        keeps at 0 (no setter): it is never timed out.
        """
        if self.model.vms[console.vm].is_control_domain:
            return None
        timeout = self.model.pool.vm_console_idle_timeout
        return float(timeout) if timeout > 0 else None

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
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, path: Path, leftover: bytes,
    idle_timeout: float | None = None,
) -> None:
    """Copy bytes both ways until either side closes (like xapi's ``Unixext.proxy``).

    A client half-close is passed on to the backend, which may still have bytes to send;
    a backend that ignores the EOF gets a bounded grace period, not forever.  With an
    ``idle_timeout`` the client's bytes go through the idle monitor (sim/idle.py),
    which shuts both sides once the client has been idle that long.
    """
    try:
        backend_r, backend_w = await connect_unix(path, BACKEND_CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        log.info("console backend %s unreachable: %s", path.name, exc)
        return
    client = StreamEnd(client_r, client_w, "client", chunk=RELAY_CHUNK)
    backend = StreamEnd(backend_r, backend_w, "backend", chunk=RELAY_CHUNK)
    if idle_timeout is None:
        relay = Relay(client, backend, grace=HALF_CLOSE_GRACE)
        relay.send("b", leftover)
        await relay.run()
        return
    relay_ref: list[Relay] = []
    watch = IdleWatch(idle_timeout, lambda: relay_ref[0].close("idle timeout"))
    relay = Relay(client, backend, a_to_b=watch.feed, grace=HALF_CLOSE_GRACE)
    relay_ref.append(relay)
    relay.send("b", watch.feed(leftover) if leftover else b"")
    timer = asyncio.create_task(watch.run(), name="console-idle")
    try:
        result = await relay.run()
    finally:
        timer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timer
    if watch.timed_out:
        log.info("console tunnel to %s closed after %.0f s idle (%s)", path.name,
                 idle_timeout, result.reason)
