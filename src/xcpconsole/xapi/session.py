"""An asyncio-friendly XenAPI session over the official (synchronous) SDK.

Why the SDK and not our own XML-RPC: it is what the host's vendors test
against, and it already re-logs in and retries when the host says
``SESSION_INVALID`` (up to three times, with the remembered credentials).
We add: our TLS trust (:class:`~xcpconsole.xapi.transport.TrustedTransport`, so
the password leaves only after the certificate passed), calls in a worker
thread (the loop's default executor or one given, e.g. the gateway's bounded
pool; one at a time, the SDK shares one HTTP connection) with a deadline for the
whole call (DNS and connect included: a host that drips bytes cannot hold a call
longer; its connection is shut down), ``HOST_IS_SLAVE`` -> retry on the pool
master, failures mapped to :mod:`xcpconsole.errors`, and lookups by name or
uuid.  When the host ends the session and refuses the saved credentials at the
SDK's re-login, the session stops (:class:`~xcpconsole.errors.SessionEndedError`)
instead of trying the old password again on every call.  The session id is
only ever sent to the host: not in ``repr``, logs or error messages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import http.client
import logging
import socket
import ssl
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit
from xml.parsers.expat import ExpatError

from ..address import format_host, format_hostport
from ..errors import (
    AmbiguousError,
    AuthError,
    NetworkError,
    NotFoundError,
    ProtocolError,
    SessionEndedError,
    TunnelError,
    XapiError,
    XcpConsoleError,
    redact,
)
from ..settings import HostSettings, normalise_url, split_url
from ..trust import TrustStore
from .models import ConsoleInfo, VmInfo
from .pool import CACHE_SECONDS, EXPIRY_WARNING_DAYS, HostInfo, read_hosts, vouched_store
from .transport import TrustedTransport

log = logging.getLogger("xcpconsole.xapi")

ORIGINATOR = "xcpconsole"
API_VERSION = "1.0"
MAX_MASTER_HOPS = 3

T = TypeVar("T")


def _sdk() -> Any:
    import XenAPI

    return XenAPI


def _map_error(exc: BaseException, what: str) -> XcpConsoleError:
    """Turn what the SDK / xmlrpc.client / sockets raise into one of our errors."""
    if isinstance(exc, XcpConsoleError):
        return exc
    if isinstance(exc, _sdk().Failure):
        details = [str(d) for d in (exc.details or ["UNKNOWN"])]
        code, params = details[0], details[1:]
        if code == "SESSION_AUTHENTICATION_FAILED":
            return AuthError("the host refused the user name or password "
                             f"({redact(params[-1]) if params else 'authentication failed'})")
        if code in ("RBAC_PERMISSION_DENIED", "PERMISSION_DENIED"):
            return AuthError(f"permission denied for {what}: {redact(' '.join(params))}")
        return XapiError(code, params)
    if isinstance(exc, xmlrpc.client.Fault):
        text = redact(str(exc.faultString))
        if "valid session" in text or exc.faultCode == 401:
            return AuthError(f"the host kept refusing the session for {what} ({text})")
        return XapiError("XMLRPC_FAULT", [str(exc.faultCode), text])
    if isinstance(exc, xmlrpc.client.ProtocolError):
        return ProtocolError(f"HTTP {exc.errcode} {exc.errmsg} from the XenAPI endpoint")
    if isinstance(exc, ExpatError | http.client.HTTPException | ValueError):
        return ProtocolError(f"malformed XenAPI reply to {what}: {type(exc).__name__}")
    if isinstance(exc, TimeoutError | socket.timeout):
        return NetworkError(f"timed out waiting for the host ({what})")
    if isinstance(exc, ssl.SSLError | OSError):
        return NetworkError(f"connection to the host failed ({what}): {exc}")
    return XcpConsoleError(f"{what} failed: {type(exc).__name__}")


def _master_url(current: str, master: str) -> str:
    """URL of the pool master named by HOST_IS_SLAVE (an address, maybe with a port).

    Without a port the master is assumed on the same port as the member we
    reached (443 on real pools; tests and port forwards use others).
    """
    _, port = split_url(current)
    address = master.strip()
    if address.count(":") > 1 and not address.startswith("["):
        address = format_host(address)
    try:
        has_port = urlsplit("//" + address).port is not None
    except ValueError as exc:
        raise ProtocolError(f"HOST_IS_SLAVE names a bad master address {master!r}") from exc
    return normalise_url(address if has_port else f"{address}:{port}")


#: How a keep-alive connection the host closed while idle shows up on the next request.
_DEAD_CONNECTION = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError,
                    BrokenPipeError, http.client.RemoteDisconnected)


def _shut(transport: Any) -> None:
    """Shut down the socket a blocked SDK call waits on (from another thread): its
    ``recv`` returns at once and the call ends with an error."""
    conn = getattr(transport, "_connection", None)
    sock = getattr(conn[1], "sock", None) if conn else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


async def _bounded(executor: concurrent.futures.Executor | None, fn: Callable[[], T],
                   deadline: float, what: str, on_timeout: Callable[[], None]) -> T:
    """``fn()`` in ``executor``, for at most ``deadline`` seconds in all (queueing for a
    thread included); then ``on_timeout`` unblocks the thread and NetworkError."""
    future = asyncio.get_running_loop().run_in_executor(executor, fn)
    try:
        return await asyncio.wait_for(future, deadline)
    except TimeoutError:
        on_timeout()
        raise NetworkError(f"timed out: the host did not answer {what} within {deadline:g} s"
                           ) from None


class XapiSession:
    """A logged-in XenAPI session; create with ``await XapiSession.login(settings)``.

    ``timeout`` bounds each network step and each call as a whole; ``executor`` runs
    the SDK's blocking calls (None: the event loop's default executor)."""

    def __init__(self, sdk_session: Any, settings: HostSettings, timeout: float = 60.0,
                 executor: concurrent.futures.Executor | None = None) -> None:
        self._sdk = sdk_session
        self.settings = settings
        self._timeout = timeout
        self._executor = executor
        self._lock = threading.Lock()
        self._closed = False
        #: set once the host refused the saved credentials; every call raises it
        self._ended: SessionEndedError | None = None
        #: a call was abandoned at its deadline: its connection is not to be reused
        self._stale = False
        self._hosts: tuple[float, list[HostInfo]] | None = None
        self._expiry_warned: set[str] = set()

    def __repr__(self) -> str:
        return f"<XapiSession {self.settings.user}@{self.settings.url}>"

    @property
    def session_id(self) -> str:
        """The current session ref (changes when the SDK re-logs in). Never print it."""
        sid = self._sdk._session
        if not sid:
            raise AuthError("not logged in")
        return str(sid)

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    async def login(cls, settings: HostSettings, *, timeout: float = 60.0,
                    executor: concurrent.futures.Executor | None = None,
                    login_executor: concurrent.futures.Executor | None = None
                    ) -> XapiSession:
        """Log in (following HOST_IS_SLAVE to the master); AuthError on bad credentials.

        The session's calls run in ``executor``; the login itself in ``login_executor``
        if given (the gateway keeps unauthenticated sign-ins off the signed-in users'
        threads).
        ``timeout`` bounds each network step (connect, TLS handshake, each read) of the
        login and of every later call, and each call as a whole.  A missing password is
        asked for (``settings.password_prompt``) only once the certificate of the host
        passed (the deadline then starts after the answer)."""
        transports: list[TrustedTransport] = []

        def give_up() -> None:
            for transport in transports:
                _shut(transport)

        runner = login_executor or executor
        if not settings.password and settings.password_prompt is not None:
            return await asyncio.get_running_loop().run_in_executor(
                runner, cls._login_sync, settings, timeout, executor, transports)
        return await _bounded(runner,
                              lambda: cls._login_sync(settings, timeout, executor, transports),
                              timeout, "the login", give_up)

    @classmethod
    def _login_sync(cls, settings: HostSettings, timeout: float,
                    executor: concurrent.futures.Executor | None,
                    transports: list[TrustedTransport]) -> XapiSession:
        seen: list[str] = []
        while True:
            seen.append(settings.url)
            transport = TrustedTransport(settings, timeout)
            transports.append(transport)
            sdk = _sdk().Session(settings.url, transport=transport)
            try:
                if not settings.password and settings.password_prompt is not None:
                    transport.connect_now(settings.url)  # the trust question first
                    settings = settings.with_password()
                    # the host may have given up on the idle connection while the user
                    # typed (a request-head timeout): log in on a fresh one
                    transport.close()
                sdk.xenapi.login_with_password(settings.user, settings.password,
                                               API_VERSION, ORIGINATOR)
            except _sdk().Failure as exc:
                details = [str(d) for d in (exc.details or [""])]
                if details[0] == "HOST_IS_SLAVE" and len(details) > 1:
                    url = _master_url(settings.url, details[1])
                    if url in seen or len(seen) > MAX_MASTER_HOPS:
                        raise XapiError("HOST_IS_SLAVE", details[1:],
                                        f"pool member redirect loop: {' -> '.join(seen)}"
                                        ) from None
                    log.info("%s is a pool member; logging in on the master %s",
                             settings.url, url)
                    # the pin still names the host it was given for
                    settings = dataclasses.replace(settings, url=url,
                                                   pinned_for=settings.pin_key)
                    continue
                raise _map_error(exc, "login") from None
            except BaseException as exc:
                raise _map_error(exc, "login") from None
            log.info("logged in to %s as %s", settings.url, settings.user)
            return cls(sdk, settings, timeout, executor)

    async def relogin(self) -> None:
        """Log in again with the same credentials (after the host dropped the session).

        On a fresh connection: the host that dropped the session (a restart) also dropped
        the idle keep-alive one, and the first request on it would fail."""
        def run() -> None:
            with self._lock:
                if self._ended is not None:
                    raise self._ended
                with contextlib.suppress(Exception):
                    self._sdk.transport.close()
                self._stale = False
                try:
                    self._sdk.xenapi.login_with_password(
                        self.settings.user, self.settings.password, API_VERSION, ORIGINATOR)
                except BaseException as exc:
                    error = _map_error(exc, "login")
                    if type(error) is AuthError:
                        raise self._end(error) from None
                    raise error from None

        await self._off_loop(run, "the login")

    def _end(self, error: AuthError) -> SessionEndedError:
        """The host refused the saved credentials: no more tries with them."""
        self._ended = SessionEndedError(
            f"the host ended the session and refused the saved credentials of "
            f"{self.settings.user!r} ({error}); sign in again")
        log.warning("the host refused the saved credentials of %r; not trying them again",
                    self.settings.user)
        return self._ended

    async def _off_loop(self, fn: Callable[[], T], what: str) -> T:
        def give_up() -> None:
            self._stale = True
            _shut(self._sdk.transport)

        return await _bounded(self._executor, fn, self._timeout, what, give_up)

    async def logout(self) -> None:
        """Log out (errors ignored: the session may already be gone); idempotent."""
        if self._closed:
            return
        self._closed = True

        def run() -> None:
            with self._lock:
                try:
                    if self._ended is None:
                        self._sdk.xenapi.session.logout()
                except Exception as exc:  # best effort: the session may be gone already
                    log.debug("logout failed: %s", type(exc).__name__)
                with contextlib.suppress(Exception):
                    self._sdk.transport.close()

        await self._off_loop(run, "the logout")

    async def __aenter__(self) -> XapiSession:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.logout()

    # -- calls -----------------------------------------------------------------------------
    async def call(self, method: str, *args: Any) -> Any:
        """``await s.call("VM.get_all_records")``: the session is added by the SDK."""
        if self._closed:
            raise AuthError("the XenAPI session is logged out")

        def run() -> Any:
            with self._lock:
                if self._ended is not None:
                    raise self._ended
                if self._stale:  # a call given up at its deadline left it half-read
                    with contextlib.suppress(Exception):
                        self._sdk.transport.close()
                    self._stale = False
                moved = False
                for attempt in (1, 2, 3):
                    try:
                        return self._sdk.xenapi_request(method, tuple(args))
                    except _sdk().Failure as exc:
                        details = [str(d) for d in (exc.details or [""])]
                        if details[0] == "SESSION_AUTHENTICATION_FAILED":
                            # the SDK's own re-login after SESSION_INVALID was refused
                            raise self._end(AuthError(redact(details[-1]))) from None
                        if details[0] != "HOST_IS_SLAVE" or len(details) < 2 or moved:
                            raise _map_error(exc, method) from None
                        moved = True  # the pool has a new master; the session lives on
                        self._follow_master(details[1])
                    except _DEAD_CONNECTION as exc:
                        # The host closed the idle keep-alive connection (xmlrpc.client
                        # retries only some of the ways this shows): reconnect once.
                        if attempt == 3:
                            raise _map_error(exc, method) from None
                        log.debug("%s: connection closed by the host; reconnecting", method)
                        with contextlib.suppress(Exception):
                            self._sdk.transport.close()
                    except BaseException as exc:
                        raise _map_error(exc, method) from None
            raise AssertionError("unreachable")

        log.debug("call %s", method)
        return await self._off_loop(run, method)

    def _follow_master(self, address: str) -> None:
        """Move this session to the pool's new master (``designate_new_master``): xapi
        keeps sessions across the change.  Called with the lock held, in a thread.

        The new master, a member until now, is trusted as the old master described it
        (the cached host list), or by the usual rules (pin, known_hosts)."""
        url = _master_url(self.settings.url, address)
        host, port = split_url(url)
        vouched = None
        if self._hosts is not None:
            master = format_hostport(self.settings.host, self.settings.port)
            vouched = vouched_store(self._hosts[1], host, port, master)
        log.info("the pool master moved to %s; following it", url)
        old = self._sdk
        sdk = _sdk().Session(url, transport=TrustedTransport(self.settings, self._timeout,
                                                             vouched))
        self._stale = False
        sdk._session = old._session
        sdk.last_login_method = getattr(old, "last_login_method", None)
        sdk.last_login_params = getattr(old, "last_login_params", None)
        sdk._API_version = getattr(old, "_API_version", sdk._API_version)
        with contextlib.suppress(Exception):
            old.transport.close()
        self._sdk = sdk
        self.settings = dataclasses.replace(self.settings, url=url,
                                            pinned_for=self.settings.pin_key)
        self._hosts = None

    # -- the pool's hosts -------------------------------------------------------------------
    async def pool_hosts(self, *, refresh: bool = False) -> list[HostInfo]:
        """The pool's hosts with their certificates (master first), cached for a minute."""
        now = time.monotonic()
        if refresh or self._hosts is None or now - self._hosts[0] > CACHE_SECONDS:
            self._hosts = (now, await read_hosts(self.call, with_vms=False))
        return self._hosts[1]

    async def host_names(self) -> dict[str, str]:
        """host ref -> name-label (one round trip), for listings."""
        records = await self.call("host.get_all_records")
        if not isinstance(records, dict):
            raise ProtocolError("host.get_all_records did not return a map")
        return {str(ref): str(rec.get("name_label", "")) for ref, rec in records.items()
                if isinstance(rec, dict)}

    async def vouched_for(self, host: str, port: int, *, refresh: bool = False) -> TrustStore:
        """What the master (trusted: this session runs over its verified TLS) says the
        certificate of ``host:port`` is; warns once when it expires within 30 days."""
        hosts = await self.pool_hosts(refresh=refresh)
        master = format_hostport(self.settings.host, self.settings.port)
        store = vouched_store(hosts, host, port, master)
        for info in hosts:
            if (host in (info.address, info.hostname) and info.ref not in self._expiry_warned
                    and info.expires_within(EXPIRY_WARNING_DAYS)):
                self._expiry_warned.add(info.ref)
                assert info.not_after is not None
                message = (f"the certificate of host {info.name_label} ({info.address}) "
                           f"expires on {info.not_after:%Y-%m-%d}")
                if self.settings.warn is not None:
                    self.settings.warn(message)
                else:
                    log.warning("%s", message)
        return store

    # -- lookups ---------------------------------------------------------------------------
    async def _records(self) -> tuple[dict[str, Any], dict[str, Any]]:
        vms, consoles = await asyncio.gather(self.call("VM.get_all_records"),
                                             self.call("console.get_all_records"))
        if not isinstance(vms, dict) or not isinstance(consoles, dict):
            raise ProtocolError("get_all_records did not return a map")
        return vms, consoles

    @staticmethod
    def _protocols(vm_ref: str, consoles: dict[str, Any]) -> tuple[str, ...]:
        found = {str(c.get("protocol", "")) for c in consoles.values()
                 if isinstance(c, dict) and c.get("VM") == vm_ref}
        return tuple(sorted(p for p in found if p))

    async def all_vms(self) -> list[VmInfo]:
        """Every VM that is not a template or snapshot, control domains included."""
        return self._vm_list(*await self._records())

    def _vm_list(self, vms: dict[str, Any], consoles: dict[str, Any]) -> list[VmInfo]:
        out = []
        for ref, rec in vms.items():
            if not isinstance(rec, dict) or rec.get("is_a_template") or rec.get("is_a_snapshot"):
                continue
            out.append(VmInfo.from_record(str(ref), rec, self._protocols(ref, consoles)))
        out.sort(key=lambda v: (v.is_control_domain, v.name_label.lower(), v.uuid))
        return out

    async def vms(self, include_control_domain: bool = False) -> list[VmInfo]:
        """User VMs (no templates, snapshots or, unless asked, control domains)."""
        return [vm for vm in await self.all_vms()
                if include_control_domain or not vm.is_control_domain]

    async def find_vm(self, name_or_uuid: str) -> VmInfo:
        """The VM with that uuid or name-label; NotFoundError / AmbiguousError otherwise."""
        vms, consoles = await self._records()
        return self._pick_vm(self._vm_list(vms, consoles), name_or_uuid, vms)

    @staticmethod
    def _pick_vm(vms: list[VmInfo], name_or_uuid: str,
                 records: dict[str, Any] | None = None) -> VmInfo:
        key = name_or_uuid.strip()
        by_uuid = [vm for vm in vms if vm.uuid.lower() == key.lower()]
        if by_uuid:
            return by_uuid[0]
        named = [vm for vm in vms if vm.name_label == key]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            lines = "\n".join(f"  {vm.uuid}  {vm.name_label}  ({vm.power_state})"
                              for vm in named)
            raise AmbiguousError(f"{len(named)} VMs are named {key!r}; use a uuid:\n{lines}")
        if records is not None:
            _refuse_non_vm(records, key)
        names = ", ".join(repr(vm.name_label) for vm in vms[:12])
        raise NotFoundError(f"no VM named {key!r} or with that uuid"
                            + (f" (VMs: {names}{', ...' if len(vms) > 12 else ''})"
                               if vms else ""))

    async def consoles(self, vm: VmInfo | None = None) -> list[ConsoleInfo]:
        """Console records (all, or ``vm``'s), like ``xe console-list``."""
        return self._console_list(*await self._records(), vm)

    @staticmethod
    def _console_list(vms: dict[str, Any], consoles: dict[str, Any],
                      vm: VmInfo | None) -> list[ConsoleInfo]:
        out = []
        for ref, rec in consoles.items():
            if not isinstance(rec, dict):
                continue
            vm_ref = str(rec.get("VM", ""))
            if vm is not None and vm_ref != vm.ref:
                continue
            found = vms.get(vm_ref)
            vrec: dict[str, Any] = found if isinstance(found, dict) else {}
            out.append(ConsoleInfo(
                ref=str(ref), uuid=str(rec.get("uuid", "")), vm_ref=vm_ref,
                vm_uuid=str(vrec.get("uuid", "")), vm_name_label=str(vrec.get("name_label", "")),
                protocol=str(rec.get("protocol", "")), location=str(rec.get("location", "")),
                vm_resident_on=str(vrec.get("resident_on", "OpaqueRef:NULL"))))
        out.sort(key=lambda c: (c.vm_name_label.lower(), c.vm_uuid, c.protocol))
        return out

    async def find_console(self, vm: str, protocol: str = "rfb") -> ConsoleInfo:
        """The ``protocol`` console of VM ``vm`` (name or uuid); it must be running."""
        # One snapshot of the records serves both lookups (each is a round trip to the host).
        vms, consoles = await self._records()
        info = self._pick_vm(self._vm_list(vms, consoles), vm, vms)
        if info.power_state != "Running":
            from .power import way_to  # lazily: power.py builds on this module

            fix = way_to("Running", info.power_state, vm)
            raise TunnelError(
                f"VM {info.name_label!r} is {info.power_state.lower()}: its console works only "
                "while it runs" + (f" ({fix})" if fix else ""))
        found = [c for c in self._console_list(vms, consoles, info) if c.protocol == protocol]
        if not found:
            have = ", ".join(info.console_protocols) or "none"
            raise NotFoundError(f"VM {info.name_label!r} has no {protocol} console "
                                f"(it has: {have})")
        return found[0]


def _refuse_non_vm(records: dict[str, Any], key: str) -> None:
    """NotFoundError naming what ``key`` is when it names a template or a snapshot."""
    for rec in records.values():
        if not isinstance(rec, dict) or (key != rec.get("name_label")
                                         and key.lower() != str(rec.get("uuid", "")).lower()):
            continue
        if rec.get("is_a_template") and not rec.get("is_a_snapshot"):
            raise NotFoundError(f"{key!r} is a template, not a VM: templates never run and have "
                                "no console (install a VM from it first)")
        if rec.get("is_a_snapshot"):
            raise NotFoundError(f"{key!r} is a snapshot, not a VM: snapshots never run and "
                                "have no console")
