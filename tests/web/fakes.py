"""In-process stand-ins for the host, for the gateway's HTTP/security tests.

The consoles behind them are real protocol peers: the RFB one is the project's own
sans-I/O ``ServerConnection`` on a socket pair, the vt100 one a tiny echoing terminal.
The browser-level tests (test_browser.py) use the simulated host instead.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from xcpconsole.errors import AuthError, NotFoundError, TunnelError, XapiError
from xcpconsole.rfb import events as ev
from xcpconsole.rfb.server import ServerConnection
from xcpconsole.settings import HostSettings
from xcpconsole.web.backend import Backend
from xcpconsole.web.host import HostConsole, HostSession

PASSWORD = "correct horse"
BANNER = b"Booting fake kernel\r\nlogin: "
HOST_SETTINGS = HostSettings(url="https://fake-host.test", user="")


@dataclass
class FakeVm:
    ref: str
    uuid: str
    name_label: str
    power_state: str = "Running"
    is_control_domain: bool = False
    console_protocols: tuple[str, ...] = ("rfb", "vt100")
    resident_on: str = "OpaqueRef:host-1"


@dataclass
class FakeConsole:
    ref: str
    vm_ref: str
    vm_uuid: str
    protocol: str


VMS = [
    FakeVm("OpaqueRef:vm-1", "11111111-1111-1111-1111-111111111111", "alpha"),
    FakeVm("OpaqueRef:vm-2", "22222222-2222-2222-2222-222222222222", "beta <b>", "Halted"),
]


@dataclass
class FakeXapi:
    user: str
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    logged_out: bool = False
    fail_calls: bool = False

    async def vms(self) -> list[FakeVm]:
        return list(VMS)

    async def host_names(self) -> dict[str, str]:
        return {"OpaqueRef:host-1": "fake-host <1>"}

    async def find_vm(self, name_or_uuid: str) -> FakeVm:
        for vm in VMS:
            if name_or_uuid in (vm.uuid, vm.name_label):
                return vm
        raise NotFoundError(f"no VM {name_or_uuid}")

    async def find_console(self, vm: str, protocol: str = "rfb") -> FakeConsole:
        found = await self.find_vm(vm)
        if found.power_state != "Running":
            raise TunnelError("VM not running")
        return FakeConsole(f"OpaqueRef:con-{protocol}", found.ref, found.uuid, protocol)

    async def call(self, method: str, *args: Any) -> Any:
        self.calls.append((method, args))
        if self.fail_calls:
            raise XapiError("VM_BAD_POWER_STATE", [args[0], "running", "halted"])
        return ""

    async def logout(self) -> None:
        self.logged_out = True


class FakeHost:
    """Records logins and tunnels; serves RFB / vt100 consoles on socket pairs."""

    def __init__(self) -> None:
        self.sessions: list[FakeXapi] = []
        self.login_attempts = 0
        self.tunnels = 0
        self.flood = False  # vt100 console streams without end (back-pressure test)
        self.flood_written = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def backend(self) -> Backend:
        return Backend(login=self.login, open_tunnel=self.open_tunnel,
                       make_settings=lambda user, pw: replace(HOST_SETTINGS, user=user,
                                                              password=pw),
                       capture=self.capture)

    async def login(self, settings: HostSettings) -> FakeXapi:
        self.login_attempts += 1
        if settings.password != PASSWORD:
            raise AuthError("SESSION_AUTHENTICATION_FAILED")
        sess = FakeXapi(settings.user)
        self.sessions.append(sess)
        return sess

    async def capture(self, xapi: HostSession, vm_uuid: str) -> bytes:
        from xcpconsole.web.thumbnails import scale_png

        return scale_png(np.full((40, 64, 3), 200, np.uint8))

    async def open_tunnel(self, xapi: HostSession, console: HostConsole
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.tunnels += 1
        ours, theirs = socket.socketpair()
        peer = self._vt100 if console.protocol == "vt100" else self._rfb
        task = asyncio.create_task(peer(theirs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.open_connection(sock=ours)

    async def _vt100(self, sock: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            if self.flood:
                chunk = b"x" * 65536
                while True:
                    writer.write(chunk)
                    await writer.drain()
                    self.flood_written += len(chunk)
            writer.write(BANNER)
            while data := await reader.read(4096):
                writer.write(data.upper())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _rfb(self, sock: socket.socket) -> None:
        reader, writer = await asyncio.open_connection(sock=sock)
        conn = ServerConnection(width=64, height=40, name="fake")
        fb = np.zeros((40, 64, 3), np.uint8)
        fb[:, :32] = (255, 0, 0)
        try:
            writer.write(conn.data_to_send())
            while data := await reader.read(65536):
                conn.receive_data(data)
                while (event := conn.next_event()) is not None:
                    if isinstance(event, ev.FramebufferUpdateRequest):
                        conn.send_update(fb, [(0, 0, 64, 40)])
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
