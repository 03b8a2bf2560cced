"""Relay benchmarks over the seed's real path: TLS + ``CONNECT /console`` to the simulated host.

Contenders, all in front of the same simulated host and measured in the same run:

- ``direct``: the benchmark client does TLS and CONNECT itself (the limit);
- ``socat``: ``socat TCP-LISTEN:…,fork OPENSSL:…,verify=0`` as in the seed; the client
  sends the CONNECT line through it;
- ``xcpconsole proxy``: the client speaks plain TCP; the proxy does XenAPI, TLS, CONNECT;
- ``websockify+socat``: websockify in front of that socat; the client sends CONNECT
  through the WebSocket;
- ``xcpconsole serve``: the gateway's WebSocket bridge (sign-in, one-time token, tunnel).

The console backends are the sim's load generators (``stream``: bytes as fast as the
reader takes them; ``echo``).  Their bytes are not RFB, so the gateway is asked for the
VM's ``vt100`` console, which it relays as raw bytes (for ``rfb`` it also frames RFB
messages, which a synthetic stream would fail).  The client side is asyncio with plain
Protocols in this process; the relays and the sim are separate processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    VENV_BIN,
    Result,
    child,
    cpu_seconds,
    free_port,
    median,
    need,
    percentile,
    process_tree,
    pss_kib,
    wait_port,
)

WARMUP_SECONDS = 0.5
STREAM_SECONDS = 1.5
CONCURRENT = 200
CONCURRENT_SECONDS = 2.5
PINGS = 300
PING_BUDGET = 2.5  # seconds per contender and round at most
ROUNDS = 3  # of single stream and round trips; the table shows the median
TTFB_RUNS = 15
IDLE_SESSIONS = 50
SIM_MAX_CONNECTIONS = 2048

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
consoles = ["rfb", "vt100"]
[[vm]]
name_label = "bench-echo"
power_state = "Running"
hvm = false
backend = "echo"
consoles = ["rfb", "vt100"]
"""


@dataclass
class Sim:
    url: str
    port: int
    fingerprint: str
    user: str
    password: str
    session: str
    paths: dict[str, str]  # vm name -> "/console?ref=..." of its rfb console (no session)


@contextlib.contextmanager
def running_sim(tmp: Path, max_connections: int = SIM_MAX_CONNECTIONS,
                external_backends: bool = False) -> Iterator[tuple[Sim, Any]]:
    """The simulated host with the load backends, and a XenAPI session on it."""
    inventory = tmp / "inventory.toml"
    inventory.write_text(INVENTORY)
    state = tmp / "sim"
    password = os.urandom(9).hex()
    log = open(tmp / "sim.log", "wb")  # noqa: SIM115 - closed below
    try:
        with child([str(VENV_BIN / "python"), "-m", "bench.simhost", "--state-dir", str(state),
                    "--inventory", str(inventory), "--max-connections", str(max_connections),
                    *(["--external-backends"] if external_backends else [])],
                   env={"XCPSIM_PASSWORD": password}, stdout=log) as proc:
            info_path = state / "sim.json"
            deadline = time.monotonic() + 30
            while not info_path.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the simulated host did not start: "
                                       + (tmp / "sim.log").read_text()[-300:])
                time.sleep(0.05)
            time.sleep(0.2)
            info = json.loads(info_path.read_text())
            import XenAPI

            s = XenAPI.Session(info["url"], ignore_ssl=True)
            s.xenapi.login_with_password(info["user"], info["password"], "1.0", "bench")
            paths = {}
            for rec in s.xenapi.console.get_all_records().values():
                if rec["protocol"] != "rfb":
                    continue
                vm = s.xenapi.VM.get_name_label(rec["VM"])
                loc = rec["location"]
                paths[vm] = loc[loc.index("/console"):]
            yield Sim(info["url"], info["port"], info["fingerprint"], info["user"],
                      info["password"], s._session, paths), proc
    finally:
        log.close()


# -- client side ---------------------------------------------------------------------------

class Conn:
    """What every contender's connection offers the measurements."""

    count: int
    first: float | None

    async def send(self, data: bytes) -> None: ...
    async def until(self, total: int, timeout: float = 30.0) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def close(self) -> None: ...


class _Counter(asyncio.Protocol, Conn):
    """Counts received bytes (after the CONNECT reply head when asked to strip it)."""

    def __init__(self, strip_head: bool) -> None:
        loop = asyncio.get_running_loop()
        self.strip = strip_head
        self.head = bytearray()
        self.count = 0
        self.first: float | None = None
        self.ready: asyncio.Future[None] = loop.create_future()
        self.waiter: asyncio.Future[None] | None = None
        self.want = 0
        self.transport: asyncio.Transport | None = None

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
                if len(self.head) > 4096:
                    self.ready.set_exception(RuntimeError("no CONNECT reply head"))
                return
            if not self.head.startswith(b"HTTP/1.1 200"):
                self.ready.set_exception(RuntimeError(bytes(self.head[:60]).decode()))
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

    async def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def until(self, total: int, timeout: float = 30.0) -> None:
        if self.count >= total:
            return
        self.want = total
        self.waiter = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(self.waiter, timeout)

    def pause(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _WsCounter(Conn):
    """The same over an aiohttp client WebSocket, read by a background task."""

    def __init__(self, ws: Any, strip_head: bool) -> None:
        self.ws = ws
        self.count = 0
        self.first: float | None = None
        self.strip = strip_head
        self.head = bytearray()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not strip_head:
            self.ready.set_result(None)
        self.changed = asyncio.Event()
        self.error: Exception | None = None
        self.running = asyncio.Event()
        self.running.set()
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        import aiohttp

        try:
            while True:
                if not self.strip:
                    await self.running.wait()
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise RuntimeError(f"websocket ended: {msg.type.name} {msg.extra or ''}")
                data: bytes = msg.data
                if self.strip:
                    self.head += data
                    end = self.head.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    if not self.head.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(bytes(self.head[:60]).decode())
                    data = bytes(self.head[end + 4:])
                    self.strip = False
                    self.ready.set_result(None)
                if data:
                    if self.first is None:
                        self.first = time.perf_counter()
                    self.count += len(data)
                    self.changed.set()
        except Exception as exc:
            self.error = exc
            if not self.ready.done():
                self.ready.set_exception(exc)
            self.changed.set()

    async def send(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def until(self, total: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count < total:
            if self.task.done():
                raise RuntimeError(f"the websocket closed: {self.error}")
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.001, deadline - time.monotonic()))

    def pause(self) -> None:
        self.running.clear()

    def resume(self) -> None:
        self.running.set()

    def close(self) -> None:
        self.task.cancel()
        asyncio.get_running_loop().create_task(self.ws.close())


Opener = Callable[[str], Awaitable[Conn]]
Pids = Callable[[], list[int]]


def _connect_line(sim: Sim, vm: str) -> bytes:
    return f"CONNECT {sim.paths[vm]}&session_id={sim.session} HTTP/1.0\r\n\r\n".encode()


def tcp_opener(sim: Sim, port: int, send_connect: bool, use_tls: bool = False) -> Opener:
    ctx = None
    if use_tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    async def open_(vm: str) -> Conn:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(lambda: _Counter(send_connect), "127.0.0.1",
                                                port, ssl=ctx)
        if send_connect:
            await proto.send(_connect_line(sim, vm))
        await asyncio.wait_for(proto.ready, 30)
        return proto
    return open_


# -- measurements -------------------------------------------------------------------------

async def settle(pids: list[int], budget: float = 6.0) -> None:
    """Wait until the sim is nearly idle: closed sessions of the previous measurement
    may still be draining through a relay that is slow to notice."""
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        c0 = cpu_seconds(pids)
        await asyncio.sleep(0.3)
        if cpu_seconds(pids) - c0 < 0.03:
            return


async def single_stream(open_: Opener, relay_pids: Pids) -> tuple[float, float]:
    """MB/s of one stream and the relay's CPU seconds per GB moved."""
    c = await open_("bench-stream")
    try:
        await asyncio.sleep(WARMUP_SECONDS)
        cpu0 = cpu_seconds(relay_pids())
        start, t0 = c.count, time.perf_counter()
        await asyncio.sleep(STREAM_SECONDS)
        moved, secs = c.count - start, time.perf_counter() - t0
        cpu = cpu_seconds(relay_pids()) - cpu0
    finally:
        c.close()
    return moved / secs / 1e6, cpu / (moved / 1e9) if moved else float("nan")


async def round_trips(open_: Opener) -> tuple[float, float]:
    """p50 and p99 of a 64-byte echo round trip, in µs."""
    c = await open_("bench-echo")
    samples = []
    payload = os.urandom(64)
    deadline = time.monotonic() + PING_BUDGET
    try:
        for i in range(PINGS):
            t0 = time.perf_counter()
            await c.send(payload)
            await c.until((i + 1) * 64, timeout=5)
            samples.append((time.perf_counter() - t0) * 1e6)
            if time.monotonic() > deadline:
                break
    finally:
        c.close()
    return percentile(samples, 50), percentile(samples, 99)


async def concurrent(open_: Opener, name: str, notes: list[str]) -> float:
    """Aggregate MB/s of CONCURRENT streams open at once."""
    streams: list[Conn] = []
    try:
        # Opened in batches (a listen backlog is not the subject), each paused at once so
        # that the streams already open do not starve the set-up of the next ones.
        for i in range(0, CONCURRENT, 25):
            batch = await asyncio.gather(*(open_("bench-stream")
                                           for _ in range(min(25, CONCURRENT - i))))
            for c in batch:
                c.pause()
            streams += batch
        for c in streams:
            c.resume()
        # The tunnels of late streams may open seconds late on a loaded host; measure
        # once every stream flows (or report how many never did).
        deadline = time.monotonic() + 10
        while any(s.count == 0 for s in streams) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(WARMUP_SECONDS)
        start = sum(s.count for s in streams)
        t0 = time.perf_counter()
        await asyncio.sleep(CONCURRENT_SECONDS)
        total = sum(s.count for s in streams) - start
        secs = time.perf_counter() - t0
        starved = sum(s.count == 0 for s in streams)
        if starved:
            notes.append(f"{name}: {starved} of {CONCURRENT} streams got no byte in 10 s")
    finally:
        for s in streams:
            s.close()
        await asyncio.sleep(0.5)
    return total / secs / 1e6


async def ttfb(open_: Opener) -> float:
    """Median ms from opening a connection to the first byte back from the console (the
    echo of a byte sent at once: a streaming console would load the host between runs)."""
    samples = []
    for _ in range(TTFB_RUNS):
        t0 = time.perf_counter()
        c = await open_("bench-echo")
        try:
            await c.send(b"?")
            await c.until(1, timeout=10)
            assert c.first is not None
            samples.append((c.first - t0) * 1e3)
        finally:
            c.close()
    return median(samples)


async def idle_memory(open_: Opener, relay_pids: Pids) -> float:
    """Relay PSS per open idle session (KiB), over IDLE_SESSIONS sessions."""
    await asyncio.sleep(0.5)
    before = pss_kib(relay_pids())
    conns = []
    try:
        for _ in range(IDLE_SESSIONS):
            c = await open_("bench-echo")
            await c.send(b"x")  # a byte each way: every relay has its buffers in play
            await c.until(1, timeout=10)
            conns.append(c)
        await asyncio.sleep(1.0)
        after = pss_kib(relay_pids())
    finally:
        for c in conns:
            c.close()
        await asyncio.sleep(0.5)
    return (after - before) / IDLE_SESSIONS


def _proxy_available() -> bool:
    import subprocess

    out = subprocess.run([str(VENV_BIN / "xcpconsole"), "proxy", "--help"],
                         capture_output=True, text=True, timeout=30)
    return out.returncode == 0


@contextlib.asynccontextmanager
async def contenders(sim: Sim, tmp: Path, notes: list[str]
                     ) -> AsyncIterator[dict[str, tuple[Opener, Pids]]]:
    from .gateway import running_gateway, signed_in

    socat_port, wsk_port = free_port(), free_port()
    stack = contextlib.ExitStack()
    astack = contextlib.AsyncExitStack()
    try:
        socat = stack.enter_context(child(
            [need("socat"), f"TCP4-LISTEN:{socat_port},fork,reuseaddr,bind=127.0.0.1",
             f"OPENSSL:127.0.0.1:{sim.port},verify=0"]))
        wsk = stack.enter_context(child(
            [str(VENV_BIN / "websockify"), f"127.0.0.1:{wsk_port}", f"127.0.0.1:{socat_port}"]))
        wait_port(socat_port, proc=socat)
        wait_port(wsk_port, proc=wsk)
        found: dict[str, tuple[Opener, Pids]] = {
            "direct": (tcp_opener(sim, sim.port, True, use_tls=True), lambda: []),
            "socat": (tcp_opener(sim, socat_port, True), lambda: process_tree(socat.pid)),
        }

        if _proxy_available():
            env = {"XCP_HOST": sim.url, "XCP_USER": sim.user, "XCP_PASSWORD": sim.password,
                   "XCP_FINGERPRINT": sim.fingerprint}
            proxies: dict[str, tuple[int, Any]] = {}
            for vm in ("bench-stream", "bench-echo"):
                port = free_port()
                log = stack.enter_context(open(tmp / f"proxy-{vm}.log", "wb"))  # noqa: SIM115
                proc = stack.enter_context(child(
                    [str(VENV_BIN / "xcpconsole"), "proxy", vm, "--listen",
                     f"127.0.0.1:{port}"], env=env, stdout=log))
                wait_port(port, proc=proc)
                proxies[vm] = (port, proc)

            async def via_proxy(vm: str) -> Conn:
                return await tcp_opener(sim, proxies[vm][0], send_connect=False)(vm)

            found["xcpconsole proxy"] = (
                via_proxy, lambda: [p for _, pr in proxies.values()
                                    for p in process_tree(pr.pid)])
        else:
            notes.append("xcpconsole proxy: command not available")

        import aiohttp

        wsk_http = await astack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))

        async def via_websockify(vm: str) -> Conn:
            ws = await wsk_http.ws_connect(f"ws://127.0.0.1:{wsk_port}/", protocols=("binary",),
                                           max_msg_size=0, compress=0)
            c = _WsCounter(ws, strip_head=True)
            await ws.send_bytes(_connect_line(sim, vm))
            await asyncio.wait_for(c.ready, 30)
            return c

        found["websockify+socat"] = (
            via_websockify, lambda: process_tree(wsk.pid) + process_tree(socat.pid))

        try:
            gw_port, gw = stack.enter_context(running_gateway(
                sim.url, sim.fingerprint, 4 * CONCURRENT, log=tmp / "serve.log"))
            signed: list[Any] = []

            async def via_serve(vm: str) -> Conn:
                # Signed in at first use: a host closes idle XenAPI connections (the sim
                # after 120 s) and the gateway does not yet retry a call on one it closed.
                if not signed:
                    signed.append(await astack.enter_async_context(
                        signed_in(gw_port, sim.user, sim.password)))
                ws = await signed[0].open_ws(vm, "vt100")
                return _WsCounter(ws, strip_head=False)

            found["xcpconsole serve"] = (via_serve, lambda: process_tree(gw.pid))
        except Exception as exc:
            notes.append(f"xcpconsole serve: {type(exc).__name__}: {str(exc)[:120]}")
        yield found
    finally:
        await astack.aclose()
        stack.close()


async def _run_async(tmp: Path) -> list[Result]:
    """Metric by metric, contender after contender (so that a load change on the shared
    machine hits all of them), with ROUNDS rounds of the short measurements."""
    notes: list[str] = []
    fig: dict[str, dict[str, list[float]]] = {
        k: {} for k in ("thr", "cpu", "p50", "p99", "conc", "ttfb", "mem")}
    began = time.monotonic()
    with running_sim(tmp) as (sim, simproc):
        async with contenders(sim, tmp, notes) as cs:
            only = os.environ.get("BENCH_CONTENDERS")  # e.g. "direct,xcpconsole serve"
            chosen = {n: c for n, c in cs.items() if not only or n in only.split(",")}
            broken: set[str] = set()
            quiet = [simproc.pid]

            async def measure(step: str, name: str, open_: Opener, pids: Pids) -> None:
                await settle(quiet)
                if step == "mem":
                    fig["mem"].setdefault(name, []).append(await idle_memory(open_, pids))
                elif step == "thr":
                    mbs, cpu_gb = await single_stream(open_, pids)
                    fig["thr"].setdefault(name, []).append(mbs)
                    fig["cpu"].setdefault(name, []).append(cpu_gb)
                elif step == "rtt":
                    p50, p99 = await round_trips(open_)
                    fig["p50"].setdefault(name, []).append(p50)
                    fig["p99"].setdefault(name, []).append(p99)
                elif step == "conc":
                    fig["conc"].setdefault(name, []).append(
                        await concurrent(open_, name, notes))
                else:
                    fig["ttfb"].setdefault(name, []).append(await ttfb(open_))

            # memory first: fresh processes, no freed buffers of earlier streams around
            plan = ["mem"] + ["thr", "rtt"] * ROUNDS + ["conc", "ttfb"]
            for step in plan:
                print(f"bench: relay: {step} ({time.monotonic() - began:.0f} s)",
                      file=sys.stderr, flush=True)
                for name, (open_, pids) in chosen.items():
                    if name in broken or (step == "mem" and name == "direct"):
                        continue
                    try:
                        await measure(step, name, open_, pids)
                    except Exception as exc:
                        broken.add(name)
                        said = " ".join(str(exc).split())[:120]
                        notes.append(f"{name}: {step}: {type(exc).__name__}: {said}")
    fig["cpu"].pop("direct", None)  # the client's own TLS: no relay

    def med(key: str) -> dict[str, float]:
        return {n: median(v) for n, v in fig[key].items()}

    return [
        Result("relay", "single stream", "MB/s", med("thr"), note="; ".join(notes)),
        Result("relay", "64 B round trip p50", "µs", med("p50"), better="lower"),
        Result("relay", "64 B round trip p99", "µs", med("p99"), better="lower"),
        Result("relay", f"{CONCURRENT} streams aggregate", "MB/s", med("conc")),
        Result("relay", "relay CPU per GB", "s/GB", med("cpu"), better="lower"),
        Result("relay", "relay memory per open session (PSS)", "KiB", med("mem"),
               better="lower"),
        Result("relay", "time to first byte (median)", "ms", med("ttfb"), better="lower"),
    ]


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_run_async(Path(tmp)))
