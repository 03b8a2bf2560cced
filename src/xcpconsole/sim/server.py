"""Assemble the simulated host (or pool): model, console backends, TLS listeners, lifecycle.

:func:`serve` starts everything and returns a :class:`SimHost` once every
host's listener is up and every running VM's console answers; :func:`run` is
the CLI's entry: it writes ``sim.json`` (mode 0600) and keeps serving until
SIGTERM/SIGINT, then stops every backend so no QEMU outlives it.

A pool (``--hosts N``, ``[[hosts]]``, ``--member-listen``) is N hosts in one
process sharing one database, as a real pool shares the master's: each host
has its own listener, key pair and certificate, XenAPI dispatcher (a member
answers ``HOST_IS_SLAVE``) and ``/console`` endpoint (serving only the VMs
resident on it); the console backends are shared, so a migrated guest keeps
running.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import re
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..address import format_hostport, parse_hostport
from ..errors import ConfigError, XapiError
from .backends import BackendError, ConsoleBackend
from .console import ConsoleEndpoint
from .hostplan import HostPlan, plan_hosts
from .http import HttpFrontEnd, HttpLimits
from .inventory import build_model, load_inventory, member_listen_of
from .model import VM, Host, SimModel
from .pool import add_host_certificate
from .qemu import QemuBackend
from .tls import (
    certificate_fingerprint,
    ensure_certificate,
    ensure_host_certificate,
    server_context,
)
from .xapi import XenApiDispatcher

log = logging.getLogger(__name__)

SIM_JSON = "sim.json"


@dataclass
class SimConfig:
    """Everything ``xcpconsole sim`` can be told."""

    state_dir: Path
    password: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 8443
    user: str = "root"
    inventory: Path | None = None
    limits: HttpLimits = field(default_factory=HttpLimits)
    #: ``(host, port)`` of the first pool member (None: the inventory's ``[member]``, if any).
    member_listen: tuple[str, int] | None = None
    #: ``--hosts``: how many hosts the pool has (None: ``[[hosts]]``, else one).
    hosts: int | None = None
    #: ``--listen`` was not given: the master's ``[[hosts]]`` entry may say where it listens.
    listen_from_inventory: bool = False
    #: a refused login answers after this many seconds (PAM's ``pam_faildelay``)
    auth_fail_delay: float = 0.0


class BackendSet:
    """The running console backends, one per VM with a domain; implements PowerControl."""

    def __init__(self, model: SimModel, run_dir: Path) -> None:
        self.model = model
        self.run_dir = run_dir
        self._backends: dict[str, ConsoleBackend] = {}
        self._running: set[str] = set()
        atexit.register(self._kill_now)

    def _make(self, vm: VM) -> ConsoleBackend | None:
        run_dir = self.run_dir / vm.uuid[:8]
        if vm.backend == "qemu":
            return QemuBackend(vm_name=vm.name_label, run_dir=run_dir, memory_mib=64)
        if vm.backend == "vncterm":
            try:
                module = importlib.import_module(f"{__package__}.vncterm")
            except ImportError as exc:
                raise BackendError(f"the virtual terminal backend is unavailable: {exc}") from exc
            host = self.model.hosts.get(vm.affinity) if vm.is_control_domain else None
            backend: ConsoleBackend = module.VirtualTerminal(
                vm_name=vm.name_label, hostname=(host or self.model.host).hostname,
                run_dir=run_dir, boot_script=vm.boot_script,
            )
            return backend
        if vm.backend in ("stream", "echo"):
            from .loadgen import LoadBackend

            return LoadBackend(kind=vm.backend, run_dir=run_dir, name="console")
        return None

    async def start(self, vm: VM) -> None:
        backend = self._backends.get(vm.ref)
        if backend is None:
            backend = self._make(vm)
            if backend is None:
                return
            self._backends[vm.ref] = backend
        await backend.start()
        self._running.add(vm.ref)

    async def stop(self, vm_ref: str) -> None:
        self._running.discard(vm_ref)
        backend = self._backends.pop(vm_ref, None)
        if backend is not None:
            try:
                await asyncio.wait_for(backend.stop(), 15.0)
            except Exception:
                log.exception("stopping the console backend of %s failed", vm_ref)

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(ref) for ref in list(self._backends)))

    def socket_for(self, vm_ref: str, protocol: str) -> Path | None:
        backend = self._backends.get(vm_ref)
        if backend is None or vm_ref not in self._running:
            return None
        try:
            return backend.socket_for(protocol)
        except BackendError:
            return None

    # PowerControl
    async def vm_starting(self, vm: VM) -> None:
        try:
            await self.start(vm)
        except BackendError as exc:
            await self.stop(vm.ref)
            raise XapiError("INTERNAL_ERROR", [str(exc)]) from exc

    async def vm_stopped(self, vm: VM) -> None:
        await self.stop(vm.ref)

    async def vm_rebooting(self, vm: VM) -> None:
        await self.stop(vm.ref)
        try:
            await self.start(vm)
        except BackendError as exc:
            log.error("console of %s did not come back after reboot: %s", vm.name_label, exc)

    def _kill_now(self) -> None:
        for backend in self._backends.values():
            kill = getattr(backend, "kill_now", None)
            if callable(kill):
                kill()


@dataclass
class HostListener:
    """One host of the pool as the network sees it: listener, certificate, front door."""

    plan: HostPlan
    server: asyncio.base_events.Server
    port: int
    cert: Path
    fingerprint: str
    front: list[HttpFrontEnd] = field(default_factory=list)  # set once the model exists
    ref: str = ""
    endpoint: ConsoleEndpoint | None = None

    @property
    def url(self) -> str:
        return _url(self.plan.listen_host, self.port)


class PoolHosts:
    """The pool's listeners by host ref; ends tunnels when a VM migrates (PoolControl)."""

    def __init__(self, model: SimModel, listeners: list[HostListener]) -> None:
        self.model = model
        self.listeners = listeners

    def by_ref(self, ref: str) -> HostListener | None:
        return next((lst for lst in self.listeners if lst.ref == ref), None)

    def slave_of(self, host: Host) -> Callable[[], str | None]:
        """What ``host`` names in ``HOST_IS_SLAVE`` (None while it is the master)."""

        def naming() -> str | None:
            master = self.model.master
            if master.ref == host.ref:
                return None
            mine, theirs = self.by_ref(host.ref), self.by_ref(master.ref)
            if mine is None or theirs is None:
                return master.address
            return _master_address(master.address, theirs.port, mine.port)

        return naming

    async def vm_migrated(self, vm: VM, old_host: str) -> None:
        listener = self.by_ref(old_host)
        if listener is not None and listener.endpoint is not None:
            closed = listener.endpoint.close_vm(vm.ref)
            log.info("%s left %s: %d console tunnel(s) closed", vm.name_label,
                     listener.plan.name_label, closed)


class SimHost:
    """A running simulated host (the pool master) and, in a pool, its members."""

    def __init__(
        self, config: SimConfig, model: SimModel, backends: BackendSet,
        listeners: list[HostListener],
    ) -> None:
        self.config = config
        self.model = model
        self.backends = backends
        self.hosts = listeners
        master = listeners[0]
        self.port = master.port
        self.fingerprint = master.fingerprint
        self.url = master.url

    @property
    def member(self) -> HostListener | None:
        """The first member, if any (what ``--member-listen`` used to add)."""
        return self.hosts[1] if len(self.hosts) > 1 else None

    def info(self) -> dict[str, Any]:
        """The content of ``sim.json`` (docs/simulator.md; ``member`` only in a pool)."""
        info: dict[str, Any] = {
            "url": self.url, "port": self.port, "fingerprint": self.fingerprint,
            "user": self.config.user, "password": self.config.password, "pid": os.getpid(),
            "hosts": [
                {"name_label": h.plan.name_label, "address": h.plan.address, "url": h.url,
                 "fingerprint": h.fingerprint}
                for h in self.hosts
            ],
        }
        member = self.member
        if member is not None:
            info["member"] = {
                "url": member.url, "port": member.port,
                "master_address": _master_address(self.hosts[0].plan.address, self.port,
                                                  member.port),
            }
        return info

    def write_info(self) -> Path:
        path = self.config.state_dir / SIM_JSON
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.info(), f, indent=2)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        return path

    async def close(self) -> None:
        """Stop accepting, end every connection, stop every backend."""
        await _close_listeners(self.hosts, stop=self.backends.stop_all)


async def _close_listeners(
    listeners: list[HostListener], stop: Callable[[], Any] | None = None
) -> None:
    for listener in listeners:
        listener.server.close()
        for front in listener.front:
            for task in list(front.connections):
                task.cancel()
            await asyncio.gather(*front.connections, return_exceptions=True)
    if stop is not None:
        await stop()
    for listener in listeners:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(listener.server.wait_closed(), 5.0)


def _inventory_for(config: SimConfig) -> tuple[dict[str, Any], bool]:
    """The inventory, and whether it is the packaged pool default (which fills empty hosts)."""
    if config.inventory is not None:
        return load_inventory(config.inventory), False
    if (config.hosts or 1) > 1 or config.member_listen is not None:
        return load_inventory(None, pool=True), True
    return load_inventory(None), False


async def serve(config: SimConfig) -> SimHost:
    """Start a simulated host or pool; returns once it serves and its consoles answer."""
    state = config.state_dir
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    inventory, pool_default = _inventory_for(config)
    member_at = config.member_listen
    if member_at is None and (text := member_listen_of(inventory)) is not None:
        member_at = parse_hostport(text, "inventory member.listen")
    plans = plan_hosts(
        inventory, count=config.hosts, master_listen=(config.listen_host, config.listen_port),
        master_listen_explicit=not config.listen_from_inventory, member_listen=member_at,
    )
    pooled = len(plans) > 1 or bool(inventory.get("hosts"))
    listeners: list[HostListener] = []
    try:
        for plan in plans:
            if pooled:
                cert, key = ensure_host_certificate(state / "hosts" / _dir_name(plan), plan.address)
            else:
                cert, key = ensure_certificate(state, plan.hostname)
            front: list[HttpFrontEnd] = []
            server = await _listen(
                plan.listen_host, plan.listen_port, server_context(cert, key), config, front)
            listeners.append(HostListener(
                plan, server, int(server.sockets[0].getsockname()[1]), cert,
                certificate_fingerprint(cert), front,
            ))
    except BaseException:
        await _close_listeners(listeners)
        raise
    plans = [dataclasses.replace(lst.plan, listen_port=lst.port) for lst in listeners]
    model = build_model(
        inventory, user=config.user, password=config.password,
        address=plans[0].address, port=listeners[0].port,
        hosts=plans if pooled else None, fill_empty_hosts=pool_default,
    )
    backends = BackendSet(model, state / "run")
    pool = PoolHosts(model, listeners)
    lock = asyncio.Lock()
    for listener, host in zip(listeners, list(model.hosts.values()), strict=True):
        listener.ref = host.ref
        add_host_certificate(model, host, listener.cert)
        listener.endpoint = ConsoleEndpoint(model, backends.socket_for, host_ref=host.ref)
        dispatcher = XenApiDispatcher(
            model, backends, slave_of=pool.slave_of(host), pool=pool, power_lock=lock,
            auth_fail_delay=config.auth_fail_delay)
        listener.front.append(HttpFrontEnd(config.limits, dispatcher, listener.endpoint))
    running = [vm for vm in model.vms.values() if vm.consoles]
    results = await asyncio.gather(
        *(backends.start(vm) for vm in running), return_exceptions=True
    )
    for vm, result in zip(running, results, strict=True):
        if isinstance(result, BaseException):
            log.error("console backend of %s failed to start: %s", vm.name_label, result)
    _quiet_tls_errors(asyncio.get_running_loop())
    for listener in listeners:
        await listener.server.start_serving()
    return SimHost(config, model, backends, listeners)


def _dir_name(plan: HostPlan) -> str:
    """Where a pool host keeps its key pair: ``STATE_DIR/hosts/<name_label>/``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", plan.name_label) or "host"


async def _listen(
    host: str, port: int, ctx: ssl.SSLContext, config: SimConfig, front: list[HttpFrontEnd]
) -> asyncio.base_events.Server:
    """A TLS listener (not yet serving) whose connections go to ``front[0]`` once set."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await front[0].handle_connection(reader, writer)

    try:
        return await asyncio.start_server(
            on_connection, host, port, ssl=ctx,
            ssl_handshake_timeout=config.limits.head_timeout, start_serving=False,
            limit=256 * 1024,
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {format_hostport(host, port)}: {exc.strerror}") from exc


def _url(host: str, port: int) -> str:
    return f"https://{format_hostport(host, port)}"  # the port even when 443, as before


def _master_address(address: str, master_port: int, member_port: int) -> str:
    """What the member's HOST_IS_SLAVE names.

    A real member names the master's address only (``Pool_role.get_master_address``):
    every host of a pool listens on 443, and clients retry on the master with the
    port they used for the member.  The sim does the same when master and member
    share a port (different loopback addresses); otherwise it must add the
    master's port, as ``address:port``, or such a client would come back to the member.
    """
    return address if master_port == member_port else f"{address}:{master_port}"


def _quiet_tls_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Hostile or confused clients (plain HTTP on the TLS port) must not flood the log."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, ssl.SSLError | ConnectionError | TimeoutError):
            log.debug("connection error: %s", exc)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def run(config: SimConfig, on_ready: Callable[[SimHost], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT; write ``sim.json`` once ready and remove it at exit."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        host = await serve(config)
        info_path = host.write_info()
        try:
            if on_ready is not None:
                on_ready(host)
            await stop.wait()
        finally:
            await host.close()
            with contextlib.suppress(FileNotFoundError):
                info_path.unlink()

    asyncio.run(main())
