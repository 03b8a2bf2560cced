"""Relay benchmarks over the seed's real path: TLS + CONNECT /console to the simulated host.

Contenders (all in front of the same simulated host, measured in the same run):
- ``direct``: the benchmark client does TLS and CONNECT itself (the limit);
- ``socat``: ``socat TCP-LISTEN:…,fork OPENSSL:…,verify=0`` as in the seed, the client sends CONNECT;
- ``xcpconsole proxy``: the client speaks plain TCP, the proxy does TLS, XenAPI and CONNECT;
- ``websockify+socat``: websockify in front of socat, the client sends CONNECT through the WebSocket;
- ``xcpconsole serve``: the gateway's WebSocket bridge (login, one-time token, tunnel).

The client side is asyncio with plain Protocols (no StreamReader copies) so that it is not what
is measured; it runs in this process while the relays run in their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    VENV_BIN, Result, child, cpu_seconds, free_port, median, need, percentile, process_tree,
    pss_kib, wait_port,
)

STREAM_BYTES = 512 << 20
CONCURRENT = 200
CONCURRENT_SECONDS = 4.0
PINGS = 1000
IDLE_SESSIONS = 50

INVENTORY = """
[pool]
name_label = "bench pool"
[host]
name_label = "bench-host"
hostname = "bench-host"
[[vm]]
name_label = "bench-stream"
power_state = "Running"
hvm = false
backend = "stream"
consoles = ["rfb"]
[[vm]]
name_label = "bench-echo"
power_state = "Running"
hvm = false
backend = "echo"
consoles = ["rfb"]
"""


@dataclass
class Sim:
    url: str
    port: int
    fingerprint: str
    user: str
    password: str
    session: str
    paths: dict[str, str]  # vm name -> "/console?ref=..." (query without session)


@contextlib.contextmanager
def running_sim(tmp: Path):  # type: ignore[no-untyped-def]
    inventory = tmp / "inventory.toml"
    inventory.write_text(INVENTORY)
    state = tmp / "sim"
    password = os.urandom(9).hex()
    with child([str(VENV_BIN / "xcpconsole"), "sim", "--listen", "127.0.0.1:0", "--state-dir",
                str(state), "--inventory", str(inventory)],
               env={"XCPSIM_PASSWORD": password}) as proc:
        info_path = state / "sim.json"
        deadline = time.monotonic() + 30
        while not info_path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the simulated host did not start")
            time.sleep(0.05)
        time.sleep(0.2)
        info = json.loads(info_path.read_text())
        import XenAPI

        s = XenAPI.Session(info["url"], ignore_ssl=True)
        s.xenapi.login_with_password(info["user"], info["password"], "1.0", "bench")
        paths = {}
        for rec in s.xenapi.console.get_all_records().values():
            vm = s.xenapi.VM.get_name_label(rec["VM"])
            loc = rec["location"]
            paths[vm] = loc[loc.index("/console"):]
        yield Sim(info["url"], info["port"], info["fingerprint"], info["user"],
                  info["password"], s._session, paths), proc


# -- client side ---------------------------------------------------------------------------

class _Counter(asyncio.Protocol):
    """Counts received bytes; strips an HTTP reply head first when asked to."""

    def __init__(self, strip_head: bool) -> None:
        self.strip = strip_head
        self.head = bytearray()
        self.count = 0
        self.first: float | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self.waiter: asyncio.Future[None] | None = None
        self.want = 0
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.strip:
            self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.strip:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 200"):
                self.ready.set_exception(RuntimeError(bytes(self.head[:80]).decode()))
                return
            data = bytes(self.head[end + 4:])
            self.strip = False
            self.ready.set_result(None)
            if not data:
                return
        if self.first is None:
            self.first = time.perf_counter()
        self.count += len(data)
        if self.waiter is not None and self.count >= self.want and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(RuntimeError("closed before the tunnel opened"))
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(RuntimeError("closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    async def until(self, total: int) -> None:
        if self.count >= total:
            return
        self.want = total
        self.waiter = asyncio.get_running_loop().create_future()
        await self.waiter


Opener = Callable[[str], Awaitable[_Counter]]


def _connect_line(sim: Sim, vm: str) -> bytes:
    return f"CONNECT {sim.paths[vm]}&session_id={sim.session} HTTP/1.0\r\n\r\n".encode()


def tcp_opener(sim: Sim, port: int, send_connect: bool, use_tls: bool = False) -> Opener:
    async def open_(vm: str) -> _Counter:
        loop = asyncio.get_running_loop()
        ctx = None
        if use_tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        _, proto = await loop.create_connection(lambda: _Counter(send_connect), "127.0.0.1",
                                                port, ssl=ctx)
        if send_connect:
            assert proto.transport is not None
            proto.transport.write(_connect_line(sim, vm))
        await proto.ready
        return proto
    return open_


class _WsCounter:
    """The same interface as _Counter over an aiohttp WebSocket."""

    def __init__(self, ws: Any, strip_head: bool) -> None:
        self.ws = ws
        self.count = 0
        self.first: float | None = None
        self.strip = strip_head
        self.head = bytearray()
        self.transport = self  # write() below

    def write(self, data: bytes) -> None:
        asyncio.get_running_loop().create_task(self.ws.send_bytes(data))

    def close(self) -> None:
        asyncio.get_running_loop().create_task(self.ws.close())

    async def _next(self) -> bytes:
        import aiohttp

        msg = await self.ws.receive()
        if msg.type != aiohttp.WSMsgType.BINARY:
            raise RuntimeError(f"websocket ended: {msg.type}")
        data: bytes = msg.data
        if self.strip:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return b""
            data = bytes(self.head[end + 4:])
            self.strip = False
        return data

    async def until(self, total: int) -> None:
        while self.count < total:
            data = await self._next()
            if data and self.first is None:
                self.first = time.perf_counter()
            self.count += len(data)


# -- measurements -------------------------------------------------------------------------

async def single_stream(open_: Opener, relay_pids: Callable[[], list[int]]) -> tuple[float, float]:
    """MB/s of one stream and relay CPU seconds per GB."""
    c = await open_("bench-stream")
    await c.until(8 << 20)  # warm up
    cpu0 = cpu_seconds(relay_pids())
    start, t0 = c.count, time.perf_counter()
    await c.until(start + STREAM_BYTES)
    secs = time.perf_counter() - t0
    cpu = cpu_seconds(relay_pids()) - cpu0
    moved = c.count - start
    c.transport.close()  # type: ignore[union-attr]
    return moved / secs / 1e6, cpu / (moved / 1e9)


async def round_trips(open_: Opener) -> tuple[float, float]:
    c = await open_("bench-echo")
    samples = []
    payload = os.urandom(64)
    for i in range(PINGS):
        t0 = time.perf_counter()
        c.transport.write(payload)  # type: ignore[union-attr]
        await c.until((i + 1) * 64)
        samples.append((time.perf_counter() - t0) * 1e6)
    c.transport.close()  # type: ignore[union-attr]
    return percentile(samples, 50), percentile(samples, 99)


async def concurrent(open_: Opener) -> float:
    streams = await asyncio.gather(*(open_("bench-stream") for _ in range(CONCURRENT)))
    start = sum(s.count for s in streams)
    t0 = time.perf_counter()
    await asyncio.sleep(CONCURRENT_SECONDS)
    total = sum(s.count for s in streams) - start
    secs = time.perf_counter() - t0
    for s in streams:
        s.transport.close()  # type: ignore[union-attr]
    return total / secs / 1e6


async def ttfb(open_: Opener, runs: int = 30) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        c = await open_("bench-stream")
        await c.until(1)
        assert c.first is not None
        samples.append((c.first - t0) * 1e3)
        c.transport.close()  # type: ignore[union-attr]
    return median(samples)


async def idle_memory(open_: Opener, relay_pids: Callable[[], list[int]]) -> float:
    """Relay PSS per open idle session (KiB)."""
    await asyncio.sleep(0.3)
    before = pss_kib(relay_pids())
    conns = [await open_("bench-echo") for _ in range(IDLE_SESSIONS)]
    await asyncio.sleep(1.0)
    after = pss_kib(relay_pids())
    for c in conns:
        c.transport.close()  # type: ignore[union-attr]
    return (after - before) / IDLE_SESSIONS


@contextlib.asynccontextmanager
async def contenders(sim: Sim, tmp: Path) -> AsyncIterator[dict[str, tuple[Opener, Callable[[], list[int]]]]]:
    socat_port, proxy_port, wsk_port = free_port(), free_port(), free_port()
    stack = contextlib.ExitStack()
    socat = stack.enter_context(child(
        [need("socat"), f"TCP4-LISTEN:{socat_port},fork,reuseaddr",
         f"OPENSSL:127.0.0.1:{sim.port},verify=0"]))
    env = {"XCP_HOST": sim.url, "XCP_USER": sim.user, "XCP_PASSWORD": sim.password,
           "XCP_FINGERPRINT": sim.fingerprint}
    proxies = {}
    for vm in ("bench-stream", "bench-echo"):
        port = free_port()
        proxies[vm] = (port, stack.enter_context(child(
            [str(VENV_BIN / "xcpconsole"), "proxy", vm, "--listen", f"127.0.0.1:{port}"],
            env=env)))
    wsk = stack.enter_context(child(
        [str(VENV_BIN / "websockify"), str(wsk_port), f"127.0.0.1:{socat_port}"]))
    try:
        for port in (socat_port, wsk_port, *(p for p, _ in proxies.values())):
            wait_port(port)

        async def via_proxy(vm: str) -> _Counter:
            return await tcp_opener(sim, proxies[vm][0], send_connect=False)(vm)

        def proxy_pids() -> list[int]:
            return [p for _, proc in proxies.values() for p in process_tree(proc.pid)]

        async def via_websockify(vm: str) -> _Counter:
            import aiohttp

            session = aiohttp.ClientSession()
            ws = await session.ws_connect(f"ws://127.0.0.1:{wsk_port}/", protocols=("binary",),
                                          max_msg_size=0)
            c = _WsCounter(ws, strip_head=True)
            await ws.send_bytes(_connect_line(sim, vm))
            c._session = session  # type: ignore[attr-defined]
            return c  # type: ignore[return-value]

        yield {
            "direct": (tcp_opener(sim, sim.port, True, use_tls=True), lambda: []),
            "socat": (tcp_opener(sim, socat_port, True), lambda: process_tree(socat.pid)),
            "xcpconsole proxy": (via_proxy, proxy_pids),
            "websockify+socat": (via_websockify,
                                 lambda: process_tree(wsk.pid) + process_tree(socat.pid)),
        }
    finally:
        stack.close()


async def _run_async(tmp: Path) -> list[Result]:
    results: list[Result] = []
    with running_sim(tmp) as (sim, simproc):
        async with contenders(sim, tmp) as cs:
            thr: dict[str, float] = {}
            cpu: dict[str, float] = {}
            lat50: dict[str, float] = {}
            lat99: dict[str, float] = {}
            conc: dict[str, float] = {}
            first: dict[str, float] = {}
            mem: dict[str, float] = {}
            for name, (open_, pids) in cs.items():
                thr[name], cpu_gb = await single_stream(open_, pids)
                if name != "direct":
                    cpu[name] = cpu_gb
                lat50[name], lat99[name] = await round_trips(open_)
                conc[name] = await concurrent(open_)
                first[name] = await ttfb(open_)
                if name != "direct":
                    mem[name] = await idle_memory(open_, pids)
    results += [
        Result("relay", "single stream", "MB/s", thr),
        Result("relay", "64 B round trip p50", "µs", lat50, better="lower"),
        Result("relay", "64 B round trip p99", "µs", lat99, better="lower"),
        Result("relay", f"{CONCURRENT} streams aggregate", "MB/s", conc),
        Result("relay", "relay CPU per GB", "s/GB", cpu, better="lower"),
        Result("relay", "relay memory per idle session (PSS)", "KiB", mem, better="lower"),
        Result("relay", "time to first byte (median)", "ms", first, better="lower"),
    ]
    return results


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_run_async(Path(tmp)))
