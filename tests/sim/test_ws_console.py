"""The WebSocket form of ``/console`` (sim/wsconsole.py), as xapi's wsproxy serves it.

Byte level with raw TLS and aiohttp's WebSocket client; then noVNC in Chromium
connecting to the sim directly, as XO Lite does.  The host has a 3-second
``vm_console_idle_timeout``, which must not apply to WebSockets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import http.server
import io
import ssl
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from PIL import Image

from simproc import REPO, SimProcess, launch_sim  # tests/conftest.py

from .conftest import IO_TIMEOUT, exchange, read_exactly, tls_connect
from .textshot import expected_row, rows_matching

HOSTNAME = "xcp-ws"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example: its accept value is known
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
UPGRADE_REPLY = (
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
).encode()
IDLE_TIMEOUT = 3

INVENTORY = f"""
[pool]
vm_console_idle_timeout = {IDLE_TIMEOUT}

[host]
hostname = "{HOSTNAME}"

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
name_label = "alpine-pv-text"
power_state = "Running"
hvm = false
backend = "vncterm"
consoles = ["rfb", "vt100"]

[[vm]]
name_label = "spare-pv"
power_state = "Running"
hvm = false
backend = "vncterm"
consoles = ["rfb", "vt100"]
"""


def _start(tmp_path_factory: pytest.TempPathFactory, name: str, inventory: str) -> SimProcess:
    state = tmp_path_factory.mktemp(name)
    path = state / "inventory.toml"
    path.write_text(inventory)
    return launch_sim(state / "sim", "--inventory", str(path))


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    host = _start(tmp_path_factory, "ws", INVENTORY)
    try:
        yield host
    finally:
        host.stop()


def console(sim: SimProcess, vm: str, protocol: str = "rfb") -> tuple[str, str]:
    """A session id (left logged in) and the VM's console ref of that protocol."""
    s = sim.session()
    (vm_ref,) = s.xenapi.VM.get_by_name_label(vm)
    for ref in s.xenapi.VM.get_consoles(vm_ref):
        if s.xenapi.console.get_protocol(ref) == protocol:
            return s._session, ref
    raise AssertionError(f"{vm} has no {protocol} console")


def ws_request(target: str, *extra: str) -> bytes:
    lines = [f"GET /console?{target} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Version: 13", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- byte level ----------------------------------------------------------------------

def test_upgrade_reply_is_xapis_and_always_says_binary(sim: SimProcess) -> None:
    sid, ref = console(sim, "debian-pv")
    for offered in ("base64", "binary, base64", None):
        extra = [f"Sec-WebSocket-Key: {KEY}"]
        if offered is not None:
            extra.append(f"Sec-WebSocket-Protocol: {offered}")
        with tls_connect(sim.port) as sock:
            sock.sendall(ws_request(f"ref={ref}&session_id={sid}", *extra))
            assert read_exactly(sock, len(UPGRADE_REPLY)) == UPGRADE_REPLY, offered
            # the first frame: unmasked, final, binary, the vncterm's greeting
            assert read_exactly(sock, 14) == b"\x82\x0cRFB 003.003\n"


def test_refusals_before_the_upgrade(sim: SimProcess) -> None:
    sid, ref = console(sim, "debian-pv")
    no_upgrade = (b"HTTP/1.0 501 Method Not Implemented\r\nConnection: close\r\n"
                  b"Cache-Control: no-cache, no-store\r\n\r\n")
    assert exchange(sim.port, ws_request(f"ref={ref}&session_id={sid}")) == no_upgrade
    hixie = ws_request(f"ref={ref}&session_id={sid}", "Sec-WebSocket-Key1: 1 2",
                       "Sec-WebSocket-Key2: 3 4")
    assert exchange(sim.port, hixie) == no_upgrade
    unauthorised = exchange(sim.port, ws_request(f"ref={ref}", f"Sec-WebSocket-Key: {KEY}"))
    assert unauthorised.startswith(b"HTTP/1.1 401 Unauthorised\r\n")
    halted = exchange(sim.port, ws_request(f"ref=OpaqueRef:none&session_id={sid}",
                                           f"Sec-WebSocket-Key: {KEY}"))
    assert halted.startswith(b"HTTP/1.1 500 Internal Error\r\n")


def wss_url(sim: SimProcess, sid: str, ref: str) -> str:
    return f"wss://127.0.0.1:{sim.port}/console?ref={ref}&session_id={sid}"


class WsStream:
    """Console bytes over an aiohttp WebSocket; remembers every message's size."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.buffer = bytearray()
        self.sizes: list[int] = []
        self.pongs: list[bytes] = []

    async def _more(self, timeout: float = IO_TIMEOUT) -> None:
        msg = await self.ws.receive(timeout)
        if msg.type == aiohttp.WSMsgType.BINARY:
            self.sizes.append(len(msg.data))
            self.buffer += msg.data
        elif msg.type == aiohttp.WSMsgType.PONG:
            self.pongs.append(msg.data)
        else:
            raise ConnectionError(f"websocket ended: {msg.type!r} {msg.data!r}")

    async def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self._more()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def wait_for(self, needle: bytes, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{needle!r} never came; got {bytes(self.buffer[-300:])!r}")
            with contextlib.suppress(TimeoutError):
                await self._more(remaining)

    async def collect(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await self._more(remaining)


@contextlib.asynccontextmanager
async def websocket(url: str, protocols: tuple[str, ...] = ("binary",)) -> Any:
    async with aiohttp.ClientSession() as client, client.ws_connect(
            url, protocols=protocols, ssl=False, autoping=False, max_msg_size=0,
            timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
        yield ws


async def rfb33_handshake(stream: WsStream) -> tuple[int, int, int]:
    assert await stream.read(12) == b"RFB 003.003\n"
    await stream.ws.send_bytes(b"RFB 003.003\n")
    assert await stream.read(4) == b"\0\0\0\1"
    await stream.ws.send_bytes(b"\x01")
    init = await stream.read(24)
    width, height = struct.unpack(">HH", init[:4])
    await stream.read(struct.unpack(">I", init[20:24])[0])
    return width, height, init[4] // 8


async def test_server_frames_carry_at_most_1024_bytes(sim: SimProcess) -> None:
    sid, ref = console(sim, "debian-pv")
    async with websocket(wss_url(sim, sid, ref)) as ws:
        assert ws.protocol == "binary"
        stream = WsStream(ws)
        width, height, pixel = await rfb33_handshake(stream)
        await ws.send_bytes(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings [Raw]
        await ws.send_bytes(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
        while len(stream.buffer) < width * height * pixel:
            await stream._more()
    assert max(stream.sizes) == 1024, max(stream.sizes)
    full = len([s for s in stream.sizes if s == 1024])
    assert full >= width * height * pixel // 1024 // 2, (full, len(stream.sizes))


async def test_pings_pongs_and_text_go_to_the_console_as_data(sim: SimProcess) -> None:
    sid, ref = console(sim, "alpine-pv-text", "vt100")
    async with websocket(wss_url(sim, sid, ref)) as ws:
        stream = WsStream(ws)
        await stream.wait_for(f"{HOSTNAME} login:".encode())  # the repaint, then typing
        await ws.ping(b"pingword17")
        await stream.wait_for(b"pingword17")  # echoed by the login prompt: it was typed
        await ws.pong(b"pongword23")
        await stream.wait_for(b"pongword23")
        await ws.send_str("textword42")
        await stream.wait_for(b"textword42")
        await stream.collect(1.0)
    assert stream.pongs == [], "xapi's wsproxy never answers pings"


async def test_client_frames_of_64_kib_are_refused_and_not_relayed(sim: SimProcess) -> None:
    sid, ref = console(sim, "spare-pv", "vt100")
    url = wss_url(sim, sid, ref)
    async with websocket(url) as watcher_ws:
        watcher = WsStream(watcher_ws)
        await watcher.wait_for(f"{HOSTNAME} login:".encode())
        async with websocket(url) as big:
            await big.send_bytes(b"x" * 70000)
            msg = await big.receive(IO_TIMEOUT)
            while msg.type == aiohttp.WSMsgType.BINARY:  # its repaint, sent before
                msg = await big.receive(IO_TIMEOUT)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.ERROR), msg
        await watcher.collect(1.5)
        assert b"xxxx" not in watcher.buffer
        async with websocket(url) as small:  # the host keeps serving; small frames do type
            await small.send_bytes(b"y" * 40)
            await watcher.wait_for(b"y" * 40)


async def test_websockets_have_no_idle_monitor(sim: SimProcess) -> None:
    sid, ref = console(sim, "debian-pv")
    async with websocket(wss_url(sim, sid, ref)) as ws:
        stream = WsStream(ws)
        await rfb33_handshake(stream)
        end = time.monotonic() + IDLE_TIMEOUT + 4
        while time.monotonic() < end:  # watch only: requests, never a key or the mouse
            await ws.send_bytes(struct.pack(">BBHHHH", 3, 0, 0, 0, 8, 16))
            await stream.collect(0.5)
        stream.buffer.clear()
        await ws.send_bytes(struct.pack(">BBHHHH", 3, 0, 0, 0, 8, 16))
        assert (await stream.read(1)) == b"\x00"  # a FramebufferUpdate: still connected


def test_limit_console_sessions_refuses_websockets_with_a_bare_503(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    inventory = INVENTORY.replace(f"vm_console_idle_timeout = {IDLE_TIMEOUT}",
                                  "limit_console_sessions = true")
    host = _start(tmp_path_factory, "ws-limit", inventory)
    try:
        sid, ref = console(host, "debian-pv")
        reply = exchange(host.port, ws_request(f"ref={ref}&session_id={sid}",
                                               f"Sec-WebSocket-Key: {KEY}"))
        assert reply == (b"HTTP/1.0 503 Service Unavailable\r\nConnection: close\r\n"
                         b"Cache-Control: no-cache, no-store\r\n\r\n")
    finally:
        host.stop()


# -- noVNC in Chromium, straight to the sim --------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
NOVNC = REPO / "node_modules" / "@novnc" / "novnc"
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>noVNC to the sim</title></head>
<body data-state="loading"><div id="screen"></div>
<script type="module">
import RFB from "./novnc/core/rfb.js";
const params = new URLSearchParams(location.search);
document.body.dataset.state = "connecting";
const rfb = new RFB(document.getElementById("screen"), params.get("url"),
                    {wsProtocols: params.getAll("proto")});
rfb.addEventListener("connect", () => { document.body.dataset.state = "connected"; });
rfb.addEventListener("disconnect",
  (e) => { document.body.dataset.state = "disconnected clean=" + e.detail.clean; });
rfb.addEventListener("securityfailure",
  () => { document.body.dataset.state = "securityfailure"; });
</script></body></html>
"""
CANVAS_PNG = """() => {
  const c = document.querySelector('#screen canvas');
  return c ? c.toDataURL('image/png') : null;
}"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server for the test page and noVNC's ES modules."""
    if not (NOVNC / "core" / "rfb.js").exists():
        pytest.fail(f"{NOVNC} missing: run npm install (make setup)")
    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "novnc").symlink_to(NOVNC)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


def spki_hash(port: int) -> str:
    """base64 SHA-256 of the served certificate's public key, for Chromium's allow list."""
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def connect_screenshot(sim: SimProcess, sid: str, ref: str) -> np.ndarray:
    """The same console read over CONNECT by a raw RFB 3.3 client (Raw encoding)."""
    ok = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"
    with tls_connect(sim.port) as sock:
        sock.sendall(f"CONNECT /console?ref={ref}&session_id={sid} HTTP/1.0\r\n\r\n".encode())
        assert read_exactly(sock, len(ok) + 12) == ok + b"RFB 003.003\n"
        sock.sendall(b"RFB 003.003\n")
        assert read_exactly(sock, 4) == b"\0\0\0\1"
        sock.sendall(b"\x01")
        init = read_exactly(sock, 24)
        width, height = struct.unpack(">HH", init[:4])
        bpp, _, big_endian, true_colour = init[4:8]
        assert (bpp, true_colour) == (32, 1)
        shifts = init[14:17]
        read_exactly(sock, struct.unpack(">I", init[20:24])[0])
        sock.sendall(struct.pack(">BxHi", 2, 1, 0) +
                     struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
        rgb = np.zeros((height, width, 3), np.uint8)
        seen = np.zeros((height, width), bool)
        while not seen.all():
            assert read_exactly(sock, 1) == b"\x00"
            (rects,) = struct.unpack(">xH", read_exactly(sock, 3))
            for _ in range(rects):
                x, y, w, h, enc = struct.unpack(">HHHHi", read_exactly(sock, 12))
                assert enc == 0
                pixels = np.frombuffer(read_exactly(sock, w * h * 4),
                                       ">u4" if big_endian else "<u4").reshape(h, w)
                for channel, shift in enumerate(shifts):
                    rgb[y:y + h, x:x + w, channel] = (pixels >> shift) & 0xFF
                seen[y:y + h, x:x + w] = True
        return rgb


def canvas_rgb(page: Any) -> np.ndarray:
    url = page.evaluate(CANVAS_PNG)
    assert url and url.startswith("data:image/png;base64,")
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.mark.peers
def test_novnc_in_chromium_connects_straight_to_the_sim(sim: SimProcess,
                                                        page_server: str) -> None:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing (Debian package chromium)")
    sid, ref = console(sim, "debian-pv")
    prompt = f"{HOSTNAME} login: "
    login_row = expected_row(prompt, cursor=len(prompt))
    url = wss_url(sim, sid, ref)
    args = [*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki_hash(sim.port)}"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{page_server}?{urllib.parse.urlencode({'url': url, 'proto': 'binary'})}")
            page.wait_for_function(
                "!['loading', 'connecting'].includes(document.body.dataset.state)",
                timeout=30_000)
            assert page.evaluate("document.body.dataset.state") == "connected"
            deadline = time.monotonic() + 30
            while (shown := canvas_rgb(page)).shape != (384, 640, 3) or not rows_matching(
                    shown, login_row):
                assert time.monotonic() < deadline, "the login prompt never showed in noVNC"
                page.wait_for_timeout(200)
            assert np.array_equal(shown, connect_screenshot(sim, sid, ref))
            # a browser that does not offer "binary" fails the handshake, as with xapi
            other = browser.new_page()
            query = urllib.parse.urlencode({"url": url, "proto": "base64"})
            other.goto(f"{page_server}?{query}")
            other.wait_for_function("document.body.dataset.state.startsWith('disconnected')",
                                    timeout=30_000)
            assert errors == []
        finally:
            browser.close()


def test_the_sim_still_serves_after_all_that(sim: SimProcess) -> None:
    sid, ref = console(sim, "debian-pv")
    reply = asyncio.run(_greeting(wss_url(sim, sid, ref)))
    assert reply == b"RFB 003.003\n"


async def _greeting(url: str) -> bytes:
    async with websocket(url) as ws:
        return await WsStream(ws).read(12)
