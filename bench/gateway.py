"""A scripted browser for ``xcpconsole serve``: sign in, get one-time tokens, open WebSockets.

It goes through the same doors as the browser UI (GET /login for the form's CSRF token,
POST /login, the VM list's CSRF token, POST .../token with ``X-CSRF-Token``, then the
WebSocket with our Origin), so the benchmark measures the gateway as people use it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import VENV_BIN, child, free_port, wait_port

_CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')
_CSRF_DATA = re.compile(r'data-csrf="([^"]+)"')


@contextlib.contextmanager
def running_gateway(sim_url: str, fingerprint: str, max_consoles: int,
                    log: Path | None = None) -> Iterator[tuple[int, Any]]:
    """``xcpconsole serve`` in front of the sim with the console limits raised."""
    port = free_port()
    argv = [str(VENV_BIN / "xcpconsole"), "serve", "--listen", f"127.0.0.1:{port}",
            "--host", sim_url, "--fingerprint", fingerprint,
            "--max-consoles", str(max_consoles), "--max-consoles-per-user", str(max_consoles),
            "--no-thumbnails", "--log-level", "warning"]
    out = open(log, "wb") if log else None  # noqa: SIM115 - closed below
    try:
        with child(argv, stdout=out) as proc:
            wait_port(port, timeout=30, proc=proc)
            yield port, proc
    finally:
        if out:
            out.close()


@dataclass
class GatewaySession:
    """One signed-in browser: an aiohttp session holding the cookie, and the CSRF token."""

    base: str
    http: Any  # aiohttp.ClientSession
    csrf: str
    vms: dict[str, str]  # name -> uuid

    @property
    def origin(self) -> str:
        return self.base

    async def token_url(self, vm: str, protocol: str) -> str:
        async with self.http.post(f"{self.base}/vms/{self.vms[vm]}/console/{protocol}/token",
                                  headers={"X-CSRF-Token": self.csrf, "Origin": self.origin}
                                  ) as resp:
            if resp.status != 200:
                raise RuntimeError(f"token: HTTP {resp.status} {(await resp.text())[:100]}")
            doc = await resp.json()
        return f"{self.base}{doc['url']}"

    async def open_ws(self, vm: str, protocol: str, url: str | None = None) -> Any:
        url = url or await self.token_url(vm, protocol)
        return await self.http.ws_connect(url, origin=self.origin, protocols=("binary",),
                                          max_msg_size=0, autoping=True, compress=0,
                                          timeout=30)


@contextlib.asynccontextmanager
async def signed_in(port: int, user: str, password: str) -> AsyncIterator[GatewaySession]:
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(base_url=None, cookie_jar=jar, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:
        async with http.get(f"{base}/login") as resp:
            m = _CSRF_INPUT.search(await resp.text())
            if not m:
                raise RuntimeError("no CSRF token in the login form")
        async with http.post(f"{base}/login", data={"username": user, "password": password,
                                                    "csrf": m.group(1)},
                             headers={"Origin": base}) as resp:
            page = await resp.text()
            if resp.status != 200 or "/vms" not in str(resp.url):
                raise RuntimeError(f"sign-in failed: HTTP {resp.status} at {resp.url}")
        m = _CSRF_DATA.search(page)
        if not m:
            raise RuntimeError("no CSRF token in the VM list")
        async with http.get(f"{base}/api/vms") as resp:
            vms = {v["name"]: v["uuid"] for v in await resp.json()}
        yield GatewaySession(base, http, m.group(1), vms)
