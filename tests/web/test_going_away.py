"""SIGTERM with consoles open: each browser gets a WebSocket close 1001 ("going away",
so the page reconnects), not a dropped connection (finding 14 of the hardening issue)."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import aiohttp

from .conftest import SimProcess, launch_gateway


async def test_sigterm_sends_going_away_to_open_consoles(sim_host: SimProcess,
                                                         tmp_path: Path) -> None:
    gw = launch_gateway(sim_host, tmp_path)
    try:
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
        async with aiohttp.ClientSession(gw.url, cookie_jar=jar) as http:
            form = await (await http.get("/login")).text()
            csrf = re.search(r'name="csrf" value="([^"]+)"', form)
            assert csrf
            await http.post("/login", data={"username": sim_host.user,
                                            "password": sim_host.password,
                                            "csrf": csrf.group(1)},
                            headers={"Origin": gw.url})
            page = await (await http.get("/vms")).text()
            token_csrf = re.search(r'data-csrf="([^"]+)"', page)
            uuid = re.search(r'href="/vms/([0-9a-f-]+)/console/rfb"', page)
            assert token_csrf and uuid
            sockets = []
            for _ in range(3):
                resp = await http.post(f"/vms/{uuid.group(1)}/console/rfb/token",
                                       headers={"X-CSRF-Token": token_csrf.group(1),
                                                "Origin": gw.url})
                url = (await resp.json())["url"]
                ws = await http.ws_connect(url, headers={"Origin": gw.url},
                                           protocols=("binary",))
                first = await asyncio.wait_for(ws.receive(), 10)
                assert first.type == aiohttp.WSMsgType.BINARY and first.data.startswith(b"RFB")
                sockets.append(ws)
            gw.proc.send_signal(signal.SIGTERM)
            for ws in sockets:
                msg = await asyncio.wait_for(ws.receive(), 15)
                assert msg.type == aiohttp.WSMsgType.CLOSE, msg
                assert ws.close_code == 1001, (msg, ws.close_code)
        assert gw.proc.wait(20) == 0
    finally:
        gw.stop()
