"""200 console WebSockets streaming at once through one ``xcpconsole serve`` process.

The console behind them is the simulator's ``echo`` backend (no VNC server), so the
gateway's own cost per session is what shows: every client sends a known byte pattern
and must get exactly it back, all 200 at the same time.  (The ``stream`` backend would
saturate both cores while the 200 connections are still being opened.)  RSS per session
is measured from /proc and printed; there are no timing assertions.  (Back-pressure
from a stalled browser is tested with a counting backend in test_gateway.py.)
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import launch_gateway

pytestmark = pytest.mark.peers

SESSIONS = 200
PER_SESSION = 64 * 1024

INVENTORY = """
[control_domain]
backend = "none"
consoles = []

[[vm]]
name_label = "load-echo"
power_state = "Running"
hvm = false
backend = "echo"
consoles = ["vt100"]
"""


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert m
    return int(m.group(1))


async def open_all(base: str, user: str, password: str) -> tuple[Any, list[Any]]:
    origin = {"Origin": base}
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                 connector=aiohttp.TCPConnector(limit=0))  # default: 100
    text = await (await http.get(base + "/login")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', text)
    assert csrf
    resp = await http.post(base + "/login", headers=origin, allow_redirects=False,
                           data={"username": user, "password": password,
                                 "csrf": csrf.group(1)})
    assert resp.status == 303, await resp.text()
    vms = await (await http.get(base + "/api/vms")).json()
    (vm,) = [v for v in vms if v["name"] == "load-echo"]
    page = await (await http.get(f"{base}/vms")).text()
    token_csrf = re.search(r'data-csrf="([^"]+)"', page)
    assert token_csrf

    async def one() -> Any:
        r = await http.post(f"{base}/vms/{vm['uuid']}/console/vt100/token",
                            headers={**origin, "X-CSRF-Token": token_csrf.group(1)})
        assert r.status == 200, await r.text()
        url = base.replace("http", "ws", 1) + (await r.json())["url"]
        return await http.ws_connect(url, headers=origin, max_msg_size=1 << 20)

    sockets = []
    for _ in range(SESSIONS // 20):
        sockets += await asyncio.gather(*(one() for _ in range(20)))
    return http, sockets


async def echo_round(ws: Any, n: int) -> None:
    """Send PER_SESSION bytes (distinct per session) and read exactly them back."""
    pattern = bytes((n + i) % 251 for i in range(PER_SESSION))
    for i in range(0, PER_SESSION, 8192):
        await ws.send_bytes(pattern[i : i + 8192])
    got = bytearray()
    while len(got) < PER_SESSION:
        msg = await ws.receive(timeout=60)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        assert len(msg.data) <= 64 * 1024  # bounded frames
        got += msg.data
    assert bytes(got) == pattern


async def test_200_echoing_consoles(start_sim: Any, tmp_path: Path) -> None:
    inventory = tmp_path / "load.toml"
    inventory.write_text(INVENTORY)
    sim = start_sim("--inventory", str(inventory))
    gw = launch_gateway(sim, tmp_path / "gw", "--max-consoles-per-user", "300",
                        "--max-consoles", "300", "--no-thumbnails", "--log-level", "warning")
    try:
        start_rss = rss_kib(gw.pid)
        http, sockets = await open_all(gw.url, sim.user, sim.password)
        try:
            open_rss = rss_kib(gw.pid)
            await asyncio.gather(*(echo_round(ws, n) for n, ws in enumerate(sockets)))
            echo_rss = rss_kib(gw.pid)
            await asyncio.gather(*(echo_round(ws, n + 1) for n, ws in enumerate(sockets)))
            again_rss = rss_kib(gw.pid)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            await http.close()
        per_session = (echo_rss - start_rss) / SESSIONS
        print(f"\ngateway RSS: at start {start_rss} KiB; {SESSIONS} consoles open {open_rss} KiB;"
              f" after all echoed {PER_SESSION // 1024} KiB at once {echo_rss} KiB "
              f"(≈{per_session:.0f} KiB per session); after a second round {again_rss} KiB")
    finally:
        gw.stop()
