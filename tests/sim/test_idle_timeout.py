"""``vm_console_idle_timeout`` on CONNECT tunnels, with raw RFB clients (asyncio + TLS).

A host with a 3-second timeout (inventory ``[pool] vm_console_idle_timeout = 3``).
Every scenario keeps its tunnel busy the same way for well over the timeout and
only the kind of client bytes differs: FramebufferUpdateRequests only (cut), key
or pointer events (not cut), an RFB 3.8 client (the host's parser switches off:
never cut), and the control domain's console (host.console_idle_timeout = 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from simproc import SimProcess, launch_sim  # tests/conftest.py

from .conftest import IO_TIMEOUT

TIMEOUT = 3.0
SLACK = 4.0  # the cut may come this much after the timeout (loaded CI machines)
BUSY_FOR = TIMEOUT + SLACK + 1.0  # how long the clients that must survive keep going
OK_REPLY = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"
DOM0 = "Control domain on host: xcp-idle"

INVENTORY = f"""
[pool]
vm_console_idle_timeout = {int(TIMEOUT)}

[host]
hostname = "xcp-idle"

[control_domain]
backend = "vncterm"
consoles = ["rfb"]
boot_script = "dom0"

[[vm]]
name_label = "debian-pv"
power_state = "Running"
hvm = false
backend = "vncterm"
consoles = ["rfb"]

[[vm]]
name_label = "win-hvm"
power_state = "Running"
hvm = true
backend = "qemu"
consoles = ["rfb"]
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    state = tmp_path_factory.mktemp("idle")
    inventory = state / "inventory.toml"
    inventory.write_text(INVENTORY)
    host = launch_sim(state / "sim", "--inventory", str(inventory))
    try:
        yield host
    finally:
        host.stop()


def fbur(incremental: bool = False) -> bytes:
    return struct.pack(">BBHHHH", 3, int(incremental), 0, 0, 8, 16)


KEY_SHIFT = struct.pack(">BBxxI", 4, 1, 0xFFE1) + struct.pack(">BBxxI", 4, 0, 0xFFE1)
POINTER = struct.pack(">BBHH", 5, 0, 3, 4)


@dataclass
class Tunnel:
    """A raw CONNECT tunnel whose server bytes are counted by a reader task."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    opened: float
    received: int = 0
    closed_at: float | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _buffer: bytearray = field(default_factory=bytearray, repr=False)

    async def read(self, n: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), IO_TIMEOUT)

    def count_from_now(self) -> None:
        self._task = asyncio.create_task(self._count())

    async def _count(self) -> None:
        try:
            while data := await self.reader.read(65536):
                self.received += len(data)
        except (ConnectionError, ssl.SSLError):
            pass
        self.closed_at = time.monotonic()

    async def answered(self) -> bool:
        """Whether one more (non-incremental) request is still answered."""
        before = self.received
        self.writer.write(fbur())
        deadline = time.monotonic() + 10
        while self.received == before and self.closed_at is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return self.received > before

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 5)


async def open_tunnel(port: int, sid: str, ref: str) -> Tunnel:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    opened = time.monotonic()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx), IO_TIMEOUT)
    writer.write(f"CONNECT /console?ref={ref}&session_id={sid} HTTP/1.0\r\n\r\n".encode())
    tunnel = Tunnel(reader, writer, opened)
    assert await tunnel.read(len(OK_REPLY)) == OK_REPLY
    return tunnel


async def handshake(t: Tunnel, version: bytes) -> None:
    """RFB 3.3 (server picks None) or 3.8 (client picks None), ClientInit shared,
    then ServerInit; afterwards only the counter reads."""
    server_version = await t.read(12)
    t.writer.write(version)
    if version == b"RFB 003.003\n":
        assert server_version == b"RFB 003.003\n"
        assert await t.read(4) == b"\0\0\0\1"
    else:
        count = (await t.read(1))[0]
        assert 1 in await t.read(count)
        t.writer.write(b"\x01")
        assert await t.read(4) == b"\0\0\0\0"
    t.writer.write(b"\x01")
    init = await t.read(24)
    await t.read(struct.unpack(">I", init[20:24])[0])
    t.count_from_now()


async def keep_busy(t: Tunnel, extra: bytes, seconds: float) -> None:
    """Every 0.5 s: a request (answered: the screen is being watched) plus ``extra``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and t.closed_at is None:
        t.writer.write(fbur(incremental=False) + extra)
        await asyncio.sleep(0.5)


@dataclass
class Outcome:
    cut_after: float | None  # seconds from opening the tunnel to the host's close
    still_answered: bool


async def scenario(port: int, sid: str, ref: str, version: bytes, extra: bytes) -> Outcome:
    t = await open_tunnel(port, sid, ref)
    try:
        await handshake(t, version)
        await keep_busy(t, extra, BUSY_FOR)
        alive = t.closed_at is None and await t.answered()
        cut = None if t.closed_at is None else t.closed_at - t.opened
        return Outcome(cut, alive)
    finally:
        await t.close()


def consoles(sim: SimProcess) -> tuple[str, Callable[[str], str]]:
    s = sim.session()
    vms = {rec["name_label"]: ref for ref, rec in s.xenapi.VM.get_all_records().items()}

    def console_of(name: str) -> str:
        return str(s.xenapi.VM.get_consoles(vms[name])[0])

    return s._session, console_of


def test_only_idle_rfb33_clients_are_cut(sim: SimProcess) -> None:
    sid, console_of = consoles(sim)
    v33, v38 = b"RFB 003.003\n", b"RFB 003.008\n"
    plans = {
        "requests only": (console_of("debian-pv"), v33, b""),
        "key events": (console_of("debian-pv"), v33, KEY_SHIFT),
        "pointer events": (console_of("debian-pv"), v33, POINTER),
        "RFB 3.8 (parser off)": (console_of("win-hvm"), v38, b""),
        "control domain": (console_of(DOM0), v33, b""),
    }

    async def run_all() -> dict[str, Outcome]:
        results = await asyncio.gather(*(scenario(sim.port, sid, *plan)
                                         for plan in plans.values()))
        return dict(zip(plans, results, strict=True))

    outcome = asyncio.run(run_all())
    cut = outcome["requests only"]
    assert cut.cut_after is not None, "a watch-only RFB 3.3 client was never cut"
    assert TIMEOUT <= cut.cut_after <= TIMEOUT + SLACK, cut
    for name in ("key events", "pointer events", "RFB 3.8 (parser off)", "control domain"):
        assert outcome[name] == Outcome(None, True), (name, outcome[name])

    async def fresh() -> bool:  # the host keeps serving: a new tunnel on the same console
        t = await open_tunnel(sim.port, sid, console_of("debian-pv"))
        try:
            await handshake(t, v33)
            return await t.answered()
        finally:
            await t.close()

    assert asyncio.run(fresh())
