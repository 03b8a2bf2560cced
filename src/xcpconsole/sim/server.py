"""Assemble the simulated host: model, console backends, TLS listener, lifecycle.

:func:`serve` starts everything and returns a :class:`SimHost` once the
listener is up and every running VM's console answers; :func:`run` is the
CLI's entry: it writes ``sim.json`` (mode 0600) and keeps serving until
SIGTERM/SIGINT, then stops every backend so no QEMU outlives it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import json
import logging
import os
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..address import connectable_host, format_host, format_hostport, parse_hostport
from ..errors import ConfigError, XapiError
from .backends import BackendError, ConsoleBackend
from .console import ConsoleEndpoint
from .http import HttpFrontEnd, HttpLimits
from .inventory import build_model, load_inventory, member_listen_of
from .model import VM, SimModel, new_ref
from .qemu import QemuBackend
from .tls import certificate_fingerprint, ensure_certificate, server_context
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
    #: ``(host, port)`` of a pool member that answers HOST_IS_SLAVE (None: inventory's).
    member_listen: tuple[str, int] | None = None


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
            backend: ConsoleBackend = module.VirtualTerminal(
                vm_name=vm.name_label, hostname=self.model.host.hostname,
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
class MemberHost:
    """The optional pool member: its own HTTPS listener, same certificate and database."""

    server: asyncio.base_events.Server
    front: HttpFrontEnd
    port: int
    url: str
    master_address: str  # what its HOST_IS_SLAVE names


class SimHost:
    """A running simulated host (the pool master), and its member if configured."""

    def __init__(
        self, config: SimConfig, model: SimModel, backends: BackendSet,
        server: asyncio.base_events.Server, front: HttpFrontEnd, port: int, fingerprint: str,
        member: MemberHost | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.backends = backends
        self._server = server
        self._front = front
        self.port = port
        self.fingerprint = fingerprint
        self.member = member
        self.url = _url(config.listen_host, port)

    def info(self) -> dict[str, Any]:
        """The content of ``sim.json`` (docs/architecture.md; ``member`` only with one)."""
        info: dict[str, Any] = {
            "url": self.url, "port": self.port, "fingerprint": self.fingerprint,
            "user": self.config.user, "password": self.config.password, "pid": os.getpid(),
        }
        if self.member is not None:
            info["member"] = {
                "url": self.member.url, "port": self.member.port,
                "master_address": self.member.master_address,
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
        servers = [(self._server, self._front)]
        if self.member is not None:
            servers.append((self.member.server, self.member.front))
        for server, front in servers:
            server.close()
            for task in list(front.connections):
                task.cancel()
            await asyncio.gather(*front.connections, return_exceptions=True)
        await self.backends.stop_all()
        for server, _ in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5.0)


async def serve(config: SimConfig) -> SimHost:
    """Start a simulated host; returns once it serves and its running VMs' consoles answer."""
    state = config.state_dir
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    inventory = load_inventory(config.inventory)
    hostname = str(inventory.get("host", {}).get("hostname", "xcp-sim"))
    cert, key = ensure_certificate(state, hostname)
    ctx = server_context(cert, key)
    member_at = config.member_listen
    if member_at is None and (text := member_listen_of(inventory)) is not None:
        member_at = parse_hostport(text, "inventory member.listen")
    front_ref: list[HttpFrontEnd] = []
    server = await _listen(config.listen_host, config.listen_port, ctx, config, front_ref)
    port = int(server.sockets[0].getsockname()[1])
    member_front: list[HttpFrontEnd] = []
    member_server = None
    if member_at is not None:
        try:
            member_server = await _listen(*member_at, ctx, config, member_front)
        except ConfigError:
            server.close()
            raise
    model = build_model(
        inventory, user=config.user, password=config.password,
        address=_public_address(config.listen_host), port=port,
    )
    backends = BackendSet(model, state / "run")
    dispatcher = XenApiDispatcher(model, backends)
    front = HttpFrontEnd(config.limits, dispatcher, ConsoleEndpoint(model, backends.socket_for))
    front_ref.append(front)
    member = None
    if member_server is not None and member_at is not None:
        member_port = int(member_server.sockets[0].getsockname()[1])
        master_address = _master_address(model.host.address, port, member_port)
        member_front.append(HttpFrontEnd(
            config.limits,
            XenApiDispatcher(model, backends, master_address=master_address),
            ConsoleEndpoint(model, backends.socket_for, host_ref=new_ref()),
        ))
        member = MemberHost(
            member_server, member_front[0], member_port, _url(member_at[0], member_port),
            master_address,
        )
    running = [vm for vm in model.vms.values() if vm.consoles]
    results = await asyncio.gather(
        *(backends.start(vm) for vm in running), return_exceptions=True
    )
    for vm, result in zip(running, results, strict=True):
        if isinstance(result, BaseException):
            log.error("console backend of %s failed to start: %s", vm.name_label, result)
    _quiet_tls_errors(asyncio.get_running_loop())
    await server.start_serving()
    if member is not None:
        await member.server.start_serving()
    return SimHost(
        config, model, backends, server, front, port, certificate_fingerprint(cert), member
    )


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


def _public_address(listen_host: str) -> str:
    return format_host(connectable_host(listen_host))


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
