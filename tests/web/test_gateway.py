"""Gateway HTTP + WebSocket behaviour against an in-process fake host (security, limits, XVP)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from xcpconsole.errors import TunnelError
from xcpconsole.rfb import events as ev
from xcpconsole.rfb.client import ClientConnection
from xcpconsole.rfb.constants import Encoding
from xcpconsole.web.app import create_app
from xcpconsole.web.auth import COOKIE_NAME
from xcpconsole.web.config import GatewayConfig
from xcpconsole.web.gateway import GATEWAY
from xcpconsole.web.tuning import TLS_READ_BUFFER, shrink_tls_read_buffers

from .fakes import BANNER, HOST_SETTINGS, PASSWORD, VMS, FakeHost

VM = VMS[0]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Gw:
    """A gateway under test plus helpers to act like a browser."""

    def __init__(self, client: TestClient[Any, Any], host: FakeHost, clock: Clock) -> None:
        self.client, self.host, self.clock = client, host, clock
        self.origin = f"http://{client.host}:{client.port}"

    async def login_form(self) -> str:
        text = await (await self.client.get("/login")).text()
        m = re.search(r'name="csrf" value="([^"]+)"', text)
        assert m
        return m.group(1)

    async def login(self, user: str = "alice", password: str = PASSWORD,
                    origin: str | None = "") -> aiohttp.ClientResponse:
        csrf = await self.login_form()
        headers = {"Origin": self.origin if origin == "" else origin} if origin is not None else {}
        return await self.client.post("/login", data={"username": user, "password": password,
                                                      "csrf": csrf},
                                      headers=headers, allow_redirects=False)

    async def csrf(self) -> str:
        text = await (await self.client.get("/vms")).text()
        m = re.search(r'data-csrf="([^"]+)"', text)
        assert m, text
        return m.group(1)

    async def token_url(self, protocol: str = "vt100", vm: str = VM.uuid) -> str:
        resp = await self.client.post(f"/vms/{vm}/console/{protocol}/token",
                                      headers={"X-CSRF-Token": await self.csrf(),
                                               "Origin": self.origin})
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["url"])

    async def ws(self, url: str, origin: str | None = "") -> aiohttp.ClientWebSocketResponse:
        headers = {"Origin": self.origin if origin == "" else origin} if origin is not None else {}
        return await self.client.ws_connect(url, headers=headers)


@pytest.fixture
async def make_gw() -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient[Any, Any]] = []

    async def make(**overrides: Any) -> Gw:
        host, clock = FakeHost(), Clock()
        config = GatewayConfig(host_settings=HOST_SETTINGS, **overrides)
        app = create_app(config, host.backend(), clock=clock)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return Gw(client, host, clock)

    yield make
    for client in clients:
        await client.close()


async def test_login_page_and_wrong_password(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    resp = await gw.login(password="nope")
    assert resp.status == 401
    text = await resp.text()
    assert 'id="login-error"' in text and "Wrong user name or password" in text
    assert "nope" not in text
    assert COOKIE_NAME not in resp.cookies
    assert (await gw.client.get("/vms", allow_redirects=False)).headers["Location"] == "/login"


async def test_login_sets_strict_httponly_cookie_and_lists_vms(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    resp = await gw.login()
    assert resp.status == 303 and resp.headers["Location"] == "/vms"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = await (await gw.client.get("/vms")).text()
    assert "alpha" in page and "beta &lt;b&gt;" in page and "<b>" not in page.split("<tbody>")[1]
    assert f'href="/vms/{VM.uuid}/console/rfb"' in page
    vms = await (await gw.client.get("/api/vms")).json()
    assert {v["name"]: v["power_state"] for v in vms} == {"alpha": "Running",
                                                          "beta <b>": "Halted"}
    # where each runs: the running one's host (escaped in the page), none for the halted
    assert {v["name"]: v["host"] for v in vms} == {"alpha": "fake-host <1>", "beta <b>": ""}
    assert '<td class="host">fake-host &lt;1&gt;</td>' in page


async def test_login_form_needs_csrf_and_origin(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    assert (await gw.login(origin=None)).status == 403
    assert (await gw.login(origin="http://evil.example")).status == 403
    resp = await gw.client.post("/login", data={"username": "alice", "password": PASSWORD,
                                                "csrf": "forged.x"},
                                headers={"Origin": gw.origin}, allow_redirects=False)
    assert resp.status == 400
    assert gw.host.login_attempts == 0


async def test_repeated_failures_are_slowed_down(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw(login_free_failures=2, login_backoff=60)
    for _ in range(3):
        assert (await gw.login(password="bad")).status == 401
    asked = gw.host.login_attempts
    resp = await gw.login()  # right password, but locked out: the host is not asked
    assert resp.status == 429 and "Too many failed attempts" in await resp.text()
    assert int(resp.headers["Retry-After"]) > 0
    assert gw.host.login_attempts == asked
    # Another user (or another address) is not affected.
    assert (await gw.login(user="bob")).status == 303
    gw.client.session.cookie_jar.clear()
    gw.clock.now += 61
    assert (await gw.login()).status == 303


async def test_sign_out_kills_cookie_and_xapi_session(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    await gw.login()
    cookie = gw.client.session.cookie_jar.filter_cookies(gw.client.make_url("/"))[COOKIE_NAME]
    csrf = await gw.csrf()
    resp = await gw.client.post("/logout", data={"csrf": csrf}, headers={"Origin": gw.origin},
                                allow_redirects=False)
    assert resp.status == 303
    assert gw.host.sessions[0].logged_out
    # Replaying the old cookie value does not work any more.
    resp = await gw.client.get("/vms", cookies={COOKIE_NAME: cookie.value},
                               allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"


async def test_forged_cookie_refused(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    await gw.login()
    sid = gw.client.session.cookie_jar.filter_cookies(gw.client.make_url("/"))[COOKIE_NAME].value
    forged = sid.split(".")[0] + ".AAAA"
    gw.client.session.cookie_jar.clear()
    resp = await gw.client.get("/vms", cookies={COOKIE_NAME: forged}, allow_redirects=False)
    assert resp.status == 303


async def test_token_endpoint_needs_csrf_header(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    await gw.login()
    url = f"/vms/{VM.uuid}/console/rfb/token"
    assert (await gw.client.post(url, headers={"Origin": gw.origin})).status == 403
    assert (await gw.client.post(url, headers={"Origin": gw.origin,
                                               "X-CSRF-Token": "x"})).status == 403
    halted = await gw.client.post(f"/vms/{VMS[1].uuid}/console/rfb/token",
                                  headers={"Origin": gw.origin, "X-CSRF-Token": await gw.csrf()})
    assert halted.status == 409


async def test_websocket_needs_valid_single_use_fresh_token(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    await gw.login()
    base = f"/vms/{VM.uuid}/console/vt100/ws"
    for url in (base, base + "?token=nonsense"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await gw.ws(url)
        assert err.value.status == 403
    url = await gw.token_url()
    ws = await gw.ws(url)
    assert (await ws.receive_bytes(timeout=5)) == BANNER
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError):  # single use
        await gw.ws(url)
    url = await gw.token_url()
    gw.clock.now += 31  # expired
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await gw.ws(url)
    assert gw.host.tunnels == 1


async def test_websocket_refuses_foreign_origin_and_other_console(
        make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    await gw.login()
    for origin in ("http://evil.example", None):
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await gw.ws(await gw.token_url(), origin=origin)
        assert err.value.status == 403
    url = await gw.token_url("vt100")
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await gw.ws(url.replace("/vt100/", "/rfb/"))
    assert gw.host.tunnels == 0


async def test_token_bound_to_session(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    await gw.login()
    url = await gw.token_url()
    gw.client.session.cookie_jar.clear()
    await gw.login(user="mallory")
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await gw.ws(url)


async def test_vt100_bridge_both_ways(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    await gw.login()
    ws = await gw.ws(await gw.token_url())
    assert await ws.receive_bytes(timeout=5) == BANNER
    await ws.send_bytes(b"root\r")
    assert await ws.receive_bytes(timeout=5) == b"ROOT\r"
    await ws.close()


async def test_per_user_console_limit(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw(max_consoles_per_user=2)
    await gw.login()
    socks = [await gw.ws(await gw.token_url()) for _ in range(2)]
    for s in socks:
        await s.receive_bytes(timeout=5)
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await gw.ws(await gw.token_url())
    assert err.value.status == 429
    await socks[0].close()
    await asyncio.sleep(0.1)
    third = await gw.ws(await gw.token_url())
    assert await third.receive_bytes(timeout=5) == BANNER
    await third.close()
    await socks[1].close()


async def test_oversized_frame_closes_console(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw(max_frame=1024)
    await gw.login()
    ws = await gw.ws(await gw.token_url())
    await ws.receive_bytes(timeout=5)
    await ws.send_bytes(b"x" * 4096)
    msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1009


async def test_idle_console_closed(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw(console_idle_timeout=0.3)
    await gw.login()
    ws = await gw.ws(await gw.token_url())
    await ws.receive_bytes(timeout=5)
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 4000


async def test_stalled_browser_stalls_the_backend(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    gw.host.flood = True
    await gw.login()
    ws = await gw.ws(await gw.token_url())
    await ws.receive_bytes(timeout=5)
    await asyncio.sleep(1.0)  # the browser reads nothing meanwhile
    written = gw.host.flood_written
    await asyncio.sleep(0.5)
    # Bounded by socket and WebSocket buffers (a few MiB), not growing without end.
    assert gw.host.flood_written == written
    assert written < 32 << 20
    await ws.close()


async def rfb_session(gw: Gw, encodings: list[int]) -> tuple[Any, ClientConnection]:
    ws = await gw.ws(await gw.token_url("rfb"))
    conn = ClientConnection(encodings=encodings)
    return ws, conn


async def pump(ws: Any, conn: ClientConnection, want: type, timeout: float = 5) -> Any:
    """Feed the client state machine until it emits an event of type ``want``."""
    async with asyncio.timeout(timeout):
        while True:
            while (event := conn.next_event()) is not None:
                if isinstance(event, want):
                    await flush(ws, conn)
                    return event
            await flush(ws, conn)
            conn.receive_data(await ws.receive_bytes())


async def flush(ws: Any, conn: ClientConnection) -> None:
    out = conn.data_to_send()
    if out:
        await ws.send_bytes(out)


async def test_rfb_through_gateway_with_xvp(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    await gw.login()
    ws, conn = await rfb_session(gw, [Encoding.ZRLE, Encoding.RAW, Encoding.XVP])
    await pump(ws, conn, ev.ServerInitReceived)
    xvp = await pump(ws, conn, ev.XvpMessage)
    assert (xvp.version, xvp.code) == (1, 1)  # XVP_INIT from the gateway
    conn.request_update(incremental=False)
    await pump(ws, conn, ev.FramebufferUpdated)
    assert conn.framebuffer is not None
    assert (conn.framebuffer[:, :32] == (255, 0, 0)).all()
    assert (conn.framebuffer[:, 32:] == 0).all()
    conn.xvp(3)
    conn.request_update(incremental=False)
    await pump(ws, conn, ev.FramebufferUpdated)  # the stream is intact after the XVP message
    xapi = gw.host.sessions[0]

    def power_calls() -> list[tuple[str, tuple[Any, ...]]]:  # not the VM list's reads
        return [c for c in xapi.calls if ".get_" not in c[0]]

    for _ in range(50):
        if power_calls():
            break
        await asyncio.sleep(0.05)
    assert power_calls() == [("VM.clean_reboot", (VM.ref,))]
    xapi.fail_calls = True
    conn.xvp(2)
    fail = await pump(ws, conn, ev.XvpMessage)
    assert (fail.version, fail.code) == (1, 0)  # XVP_FAIL
    assert xapi.calls[-1] == ("VM.clean_shutdown", (VM.ref,))
    conn.xvp(9)  # unknown code: refused without a XenAPI call
    fail = await pump(ws, conn, ev.XvpMessage)
    assert fail.code == 0 and len(power_calls()) == 2
    await ws.close()


async def test_thumbnail_served_from_cache(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    await gw.login()
    page = await (await gw.client.get("/vms")).text()
    # Nothing to ask for before the first capture: the page names no image (no 404s) ...
    assert "thumbnail.png" not in page
    for _ in range(100):
        listed = {vm["uuid"]: vm for vm in await (await gw.client.get("/api/vms")).json()}
        if listed[VM.uuid]["thumbnail"]:
            break
        await asyncio.sleep(0.05)
    # ... then /api/vms says where it is (a halted VM has none), and so does the page.
    url = listed[VM.uuid]["thumbnail"]
    assert url.startswith(f"/vms/{VM.uuid}/thumbnail.png?t=")
    assert listed[VMS[1].uuid]["thumbnail"] is None
    page = await (await gw.client.get("/vms")).text()
    assert f'<img class="thumbnail" alt="" width="160" src="{url.replace("&", "&amp;")}">' in page
    resp = await gw.client.get(url)
    assert resp.status == 200 and resp.content_type == "image/png"
    from io import BytesIO

    from PIL import Image

    img = np.asarray(Image.open(BytesIO(await resp.read())).convert("RGB"))
    assert img.shape == (40, 64, 3) and (img == 200).all()
    # VMs the user never listed have no thumbnail.
    assert (await gw.client.get("/vms/x/thumbnail.png")).status == 404


async def test_security_headers(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    resp = await gw.client.get("/login")
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    js = await gw.client.get("/static/vendor/novnc/core/rfb.js")
    assert js.status == 200 and "export default class RFB" in await js.text()
    assert (await gw.client.get("/static/vendor/xterm/lib/xterm.mjs")).status == 200
    assert (await gw.client.get("/static/../app.py")).status in (403, 404)


async def test_vm_list_fragments(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    await gw.login()
    page = await (await gw.client.get("/vms")).text()
    assert (f'<td class="consoles"><a class="console-link" data-protocol="rfb" '
            f'href="/vms/{VM.uuid}/console/rfb">graphical</a> <a class="console-link" '
            f'data-protocol="vt100" href="/vms/{VM.uuid}/console/vt100">text</a></td>') in page
    # The box of the thumbnail is there (and sized by the CSS) before any picture is.
    assert '<td class="thumb"><div class="thumb-box"></div></td>' in page
    halted = page.split(f'data-vm="{VMS[1].uuid}"')[1].split("</tr>")[0]
    # A halted VM's row carries the links a start brings, hidden by the CSS rule on
    # data-power-state (tests/web/test_vm_list.py checks them in a browser).
    assert '<td class="thumb"><div class="thumb-box"></div></td>' in halted
    assert 'data-power-state="Halted"' in halted and "<img" not in halted
    assert 'class="empty"' not in page


async def test_empty_vm_list(make_gw: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
                             ) -> None:
    from . import fakes

    monkeypatch.setattr(fakes, "VMS", [])
    gw = await make_gw()
    await gw.login()
    page = await (await gw.client.get("/vms")).text()
    assert '<p class="empty">No virtual machines visible.</p>' in page


async def test_console_pages_head(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    await gw.login()
    css = '<link rel="stylesheet" href="/static/vendor/xterm/css/xterm.css">'
    vt100 = await gw.client.get(f"/vms/{VM.uuid}/console/vt100")
    assert vt100.status == 200 and css in await vt100.text()
    rfb = await (await gw.client.get(f"/vms/{VM.uuid}/console/rfb")).text()
    assert css not in rfb and 'id="screen"' in rfb
    assert (await gw.client.get(f"/vms/{VM.uuid}/console/x")).status == 404
    missing = await gw.client.get("/vms/nope/console/rfb")
    assert missing.status == 404 and "No VM nope is visible to you." in await missing.text()


async def test_login_errors_are_escaped(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()

    async def unreachable(settings: Any) -> Any:
        raise TunnelError("<b>down</b>")

    gw.client.app[GATEWAY].backend.login = unreachable
    resp = await gw.login()
    text = await resp.text()
    assert resp.status == 502
    # end users get a neutral line (the reason is the operator's, in the log), escaped
    assert ('<p class="error" id="login-error">The gateway cannot reach the host right now; '
            "please try again later or tell the administrator.</p>") in text
    assert "down" not in text and "<b>" not in text.split("<main", 1)[-1]


async def test_login_form_token_expires_on_the_injected_clock(
        make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    csrf = await gw.login_form()
    gw.clock.now += 3601
    resp = await gw.client.post("/login", data={"username": "alice", "password": PASSWORD,
                                                "csrf": csrf},
                                headers={"Origin": gw.origin}, allow_redirects=False)
    assert resp.status == 400 and "The form expired" in await resp.text()
    assert gw.host.login_attempts == 0
    assert (await gw.login()).status == 303  # a fresh form works


async def test_sign_in_link_single_use_and_expiry(make_gw: Callable[..., Any]) -> None:
    gw = await make_gw()
    state = gw.client.app[GATEWAY]
    link = state.add_sign_in_link("alice", PASSWORD, ttl=60)
    resp = await gw.client.get(link, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/vms"
    gw.client.session.cookie_jar.clear()
    again = await gw.client.get(link, allow_redirects=False)
    assert again.status == 403 and 'id="login-error"' in await again.text()
    late = state.add_sign_in_link("alice", PASSWORD, ttl=60)
    gw.clock.now += 61
    assert (await gw.client.get(late, allow_redirects=False)).status == 403


async def test_create_app_leaves_tls_buffers_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncio import sslproto

    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", 256 * 1024)
    create_app(GatewayConfig(host_settings=HOST_SETTINGS), FakeHost().backend())
    assert sslproto.SSLProtocol.max_size == 256 * 1024
    shrink_tls_read_buffers()  # the explicit step `serve` and `demo` take
    assert sslproto.SSLProtocol.max_size == TLS_READ_BUFFER
