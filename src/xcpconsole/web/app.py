"""The web console gateway (``xcpconsole serve``): aiohttp application and its handlers.

Pages: sign-in, VM list (power state + thumbnails), one console page per VM and
protocol (noVNC for ``rfb``, xterm.js for ``vt100``).  A console page asks for a one-time
token (POST, CSRF header) and opens ``/vms/{uuid}/console/{protocol}/ws?token=…``; the
WebSocket handler checks token, cookie and Origin, then bridges to the host's
``/console`` tunnel opened with the signed-in user's own XAPI session.

The host-facing parts (login, tunnel, thumbnail capture) come in through
:class:`Backend` so tests can swap them; :func:`default_backend` wires the real client
library.  Browser libraries are served from ``node_modules`` (installed by ``npm ci``),
never copied into this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    TunnelError,
    XapiError,
    XcpConsoleError,
)
from ..rfb.framer import RfbRelayFramer
from .auth import (
    COOKIE_NAME,
    LoginThrottle,
    SessionStore,
    Signer,
    TokenStore,
    WebSession,
    origin_allowed,
)
from .bridge import BridgeLimits, ConsoleBridge
from .pages import Markup, escape, page, render
from .thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

PROTOCOLS = ("rfb", "vt100")
XVP_METHODS = {2: "VM.clean_shutdown", 3: "VM.clean_reboot", 4: "VM.hard_reboot"}
VENDOR = {  # URL prefix under /static/vendor/ -> package directory in node_modules
    "novnc": "@novnc/novnc",
    "xterm": "@xterm/xterm",
    "xterm-addon-fit": "@xterm/addon-fit",
}
TUNNEL_READ_LIMIT = 64 * 1024
STATIC_DIR = Path(__file__).parent / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'self'")

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class GatewayConfig:
    """Everything ``xcpconsole serve`` can tune; defaults suit a small team."""

    host_settings: Any  # HostSettings template: url + trust; user/password set per sign-in
    allowed_origins: tuple[str, ...] = ()
    max_consoles_per_user: int = 8
    max_consoles_total: int = 256
    max_logins_per_user: int = 5
    session_idle: float = 1800.0
    session_lifetime: float = 12 * 3600.0
    console_idle_timeout: float = 1800.0
    token_ttl: float = 30.0
    max_frame: int = (1 << 20) + 64  # largest browser->gateway WebSocket message
    login_free_failures: int = 2
    login_backoff: float = 1.0
    thumbnails: bool = True
    thumbnail_max_age: float = 15.0
    assets_dir: Path | None = None  # node_modules; None = search the source tree


@dataclass
class Backend:
    """The host-facing operations (swappable in tests)."""

    login: Callable[[Any], Awaitable[Any]]  # HostSettings -> XapiSession
    open_tunnel: Callable[[Any, Any], Awaitable[Streams]]  # (XapiSession, ConsoleInfo)
    make_settings: Callable[[str, str], Any]  # (user, password) -> HostSettings
    capture: Callable[[Any, str], Awaitable[bytes]] | None = None  # thumbnail PNG


def default_backend(config: GatewayConfig) -> Backend:
    from ..net.tunnel import open_tunnel
    from ..xapi import XapiSession

    def make_settings(user: str, password: str) -> Any:
        return replace(config.host_settings, user=user, password=password, interactive=False)

    async def capture(xapi: Any, vm_uuid: str) -> bytes:
        from ..net.vnc import open_vnc
        from .thumbnails import scale_png

        console = await xapi.find_console(vm_uuid, "rfb")
        streams = await open_tunnel(xapi, console, limit=TUNNEL_READ_LIMIT)
        client = await open_vnc(streams, timeout=8.0)
        try:
            rgb = await client.screenshot()
        finally:
            await client.close()
        return await asyncio.to_thread(scale_png, rgb)

    async def tunnel(xapi: Any, console: Any) -> Streams:
        # A smaller read buffer than the CLI's: memory per browser session matters here.
        return await open_tunnel(xapi, console, limit=TUNNEL_READ_LIMIT)

    return Backend(login=XapiSession.login, open_tunnel=tunnel,
                   make_settings=make_settings, capture=capture)


def find_assets_dir(explicit: Path | None = None) -> Path:
    """The ``node_modules`` holding noVNC and xterm.js (ConfigError if absent)."""
    candidates = [explicit] if explicit else []
    if env := os.environ.get("XCPCONSOLE_ASSETS"):
        candidates.append(Path(env))
    here = Path(__file__).resolve()
    candidates += [p / "node_modules" for p in here.parents] + [Path.cwd() / "node_modules"]
    for cand in candidates:
        if cand is not None and all((cand / pkg / "package.json").is_file()
                                    for pkg in VENDOR.values()):
            return cand
    raise ConfigError("browser libraries not found: run `npm ci` in the xcpconsole source "
                      "tree, or point XCPCONSOLE_ASSETS at a node_modules directory")


@dataclass
class Gateway:
    config: GatewayConfig
    backend: Backend
    clock: Callable[[], float] = time.monotonic
    signer: Signer = field(default_factory=Signer)
    sessions: SessionStore = field(init=False)
    throttle: LoginThrottle = field(init=False)
    tokens: TokenStore = field(init=False)
    thumbnails: ThumbnailCache | None = field(init=False, default=None)
    consoles_total: int = 0
    consoles_by_user: dict[str, int] = field(default_factory=dict)
    #: one-time sign-in links (``xcpconsole demo``): code -> (user, password, expiry)
    sign_in_codes: dict[str, tuple[str, str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = self.config
        self.sessions = SessionStore(idle=c.session_idle, lifetime=c.session_lifetime,
                                     max_per_user=c.max_logins_per_user)
        self.throttle = LoginThrottle(free=c.login_free_failures, base=c.login_backoff)
        self.tokens = TokenStore(ttl=c.token_ttl)
        if c.thumbnails and self.backend.capture is not None:
            self.thumbnails = ThumbnailCache(self.backend.capture, max_age=c.thumbnail_max_age)

    @property
    def host_label(self) -> str:
        return str(getattr(self.config.host_settings, "url", ""))

    # -- helpers --------------------------------------------------------------------------
    def session_of(self, request: web.Request) -> WebSession | None:
        raw = request.cookies.get(COOKIE_NAME)
        sid = self.signer.unsign(raw) if raw else None
        return self.sessions.get(sid, self.clock()) if sid else None

    def own_origin(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def origin_ok(self, request: web.Request) -> bool:
        return origin_allowed(request.headers.get("Origin"), self.own_origin(request),
                              self.config.allowed_origins)

    def html(self, title: str, body: Markup, sess: WebSession | None = None,
             status: int = 200, body_class: str = "") -> web.Response:
        text = page(title, body, host=self.host_label, user=sess.user if sess else None,
                    csrf=sess.csrf if sess else "", body_class=body_class)
        return web.Response(text=text, content_type="text/html", status=status)

    def error_page(self, sess: WebSession | None, status: int, heading: str,
                   message: str) -> web.Response:
        return self.html(heading, render("error.html", heading=heading, message=message),
                         sess, status=status)

    async def end_session(self, sess: WebSession) -> None:
        self.sessions.remove(sess.sid)
        self.tokens.revoke_session(sess.sid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sess.xapi.logout(), 10)
        log.info("signed out %s", sess.user)

    async def reap(self) -> None:
        """Background: log out the XAPI sessions of expired sign-ins; drop stale tokens."""
        while True:
            await asyncio.sleep(min(30.0, self.config.session_idle / 2))
            now = self.clock()
            for sess in self.sessions.expire(now):
                await self.end_session(sess)
            self.tokens.prune(now)
            self.throttle.prune(now)

    # -- sign-in ---------------------------------------------------------------------------
    def login_page(self, *, error: str = "", username: str = "", status: int = 200
                   ) -> web.Response:
        err = Markup(f'<p class="error" id="login-error">{escape(error)}</p>') if error else ""
        body = render("login.html", host=self.host_label, error=err, username=username,
                      csrf=self.signer.login_form_token(time.time()))
        return self.html("Sign in", body, status=status, body_class="login-page")

    async def get_login(self, request: web.Request) -> web.StreamResponse:
        if self.session_of(request):
            raise web.HTTPSeeOther("/vms")
        return self.login_page()

    async def post_login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        user = str(form.get("username", "")).strip()[:256]
        password = str(form.get("password", ""))[:1024]
        if not self.signer.check_login_form_token(str(form.get("csrf", "")), time.time()):
            return self.login_page(error="The form expired; please try again.", username=user,
                                   status=400)
        if not user or not password:
            return self.login_page(error="User name and password are required.",
                                   username=user, status=400)
        addr = request.remote or "?"
        now = self.clock()
        wait = self.throttle.retry_after(user, addr, now)
        if wait > 0:
            resp = self.login_page(
                error=f"Too many failed attempts; try again in {int(wait) + 1} s.",
                username=user, status=429)
            resp.headers["Retry-After"] = str(int(wait) + 1)
            return resp
        try:
            xapi = await self.backend.login(self.backend.make_settings(user, password))
        except AuthError:
            self.throttle.failed(user, addr, self.clock())
            log.info("failed sign-in for %r from %s", user, addr)
            return self.login_page(error="Wrong user name or password.", username=user,
                                   status=401)
        except XcpConsoleError as exc:
            log.warning("sign-in for %r: host unavailable: %s", user, exc)
            return self.login_page(error=f"The host could not be reached: {exc}",
                                   username=user, status=502)
        self.throttle.succeeded(user, addr)
        log.info("signed in %s from %s", user, addr)
        raise await self._signed_in(request, user, xapi)

    async def _signed_in(self, request: web.Request, user: str, xapi: Any) -> web.HTTPSeeOther:
        """A new web session for ``user``: the redirect to /vms carrying its cookie."""
        sess, evicted = self.sessions.create(user, xapi, self.clock())
        for old in evicted:
            await self.end_session(old)
        resp = web.HTTPSeeOther("/vms")
        resp.set_cookie(COOKIE_NAME, self.signer.sign(sess.sid), httponly=True,
                        samesite="Strict", secure=request.secure, path="/")
        return resp

    def add_sign_in_link(self, user: str, password: str, ttl: float = 600.0) -> str:
        """A single-use path that signs its opener in as ``user`` (for ``xcpconsole demo``).

        The code is 256 random bits, valid for ``ttl`` seconds and one use; the password
        is still checked against the host when the link is opened.
        """
        code = secrets.token_urlsafe(32)
        self.sign_in_codes[code] = (user, password, self.clock() + ttl)
        return f"/login/link?code={code}"

    async def get_login_link(self, request: web.Request) -> web.StreamResponse:
        entry = self.sign_in_codes.pop(request.query.get("code", ""), None)
        if entry is None or entry[2] < self.clock():
            return self.login_page(error="That sign-in link was used or has expired.",
                                   status=403)
        user, password, _ = entry
        try:
            xapi = await self.backend.login(self.backend.make_settings(user, password))
        except XcpConsoleError as exc:
            return self.login_page(error=f"Sign-in failed: {exc}", username=user, status=502)
        log.info("signed in %s with a one-time link", user)
        raise await self._signed_in(request, user, xapi)

    async def post_logout(self, request: web.Request) -> web.StreamResponse:
        sess = self.session_of(request)
        form = await request.post()
        if sess is not None:
            if not sess.check_csrf(str(form.get("csrf", ""))):
                raise web.HTTPForbidden(text="bad CSRF token")
            await self.end_session(sess)
        resp = web.HTTPSeeOther("/login")
        resp.del_cookie(COOKIE_NAME, path="/")
        raise resp

    # -- VM list ---------------------------------------------------------------------------
    def require(self, request: web.Request) -> WebSession:
        sess = self.session_of(request)
        if sess is None:
            raise web.HTTPSeeOther("/login")
        return sess

    async def list_vms(self, sess: WebSession) -> list[Any]:
        vms = [vm for vm in await sess.xapi.vms() if not getattr(vm, "is_control_domain", False)]
        sess.visible_vms = {vm.uuid for vm in vms}
        return sorted(vms, key=lambda vm: (vm.name_label.lower(), vm.uuid))

    async def get_vms(self, request: web.Request) -> web.StreamResponse:
        sess = self.require(request)
        vms = await self.list_vms(sess)
        rows = []
        for vm in vms:
            running = vm.power_state == "Running"
            protocols = [p for p in PROTOCOLS if p in vm.console_protocols]
            links = Markup(" ".join(
                f'<a class="console-link" data-protocol="{p}" href="/vms/{quote(vm.uuid)}'
                f'/console/{p}">{"graphical" if p == "rfb" else "text"}</a>'
                for p in protocols) if running else "")
            thumb = Markup("")
            if running and "rfb" in protocols and self.thumbnails is not None:
                self.thumbnails.request(vm.uuid, sess.xapi)
                thumb = Markup(f'<img class="thumbnail" alt="" width="160" '
                               f'src="/vms/{quote(vm.uuid)}/thumbnail.png">')
            rows.append(render("vm_row.html", uuid=vm.uuid, name=vm.name_label,
                               power_state=vm.power_state,
                               power_class=vm.power_state.lower(), links=links, thumb=thumb))
        empty = Markup("" if vms else '<p class="empty">No virtual machines visible.</p>')
        body = render("vms.html", rows=Markup("\n".join(rows)), empty=empty, csrf=sess.csrf)
        return self.html("Virtual machines", body, sess)

    async def api_vms(self, request: web.Request) -> web.StreamResponse:
        sess = self.session_of(request)
        if sess is None:
            return web.json_response({"error": "signed out"}, status=401)
        vms = await self.list_vms(sess)
        return web.json_response([
            {"uuid": vm.uuid, "name": vm.name_label, "power_state": vm.power_state,
             "consoles": [p for p in PROTOCOLS if p in vm.console_protocols]}
            for vm in vms])

    async def get_thumbnail(self, request: web.Request) -> web.StreamResponse:
        sess = self.session_of(request)
        uuid = request.match_info["uuid"]
        if sess is None or self.thumbnails is None or uuid not in sess.visible_vms:
            raise web.HTTPNotFound()
        self.thumbnails.request(uuid, sess.xapi)
        shot = self.thumbnails.get(uuid)
        if shot is None:
            raise web.HTTPNotFound(text="no thumbnail yet")
        return web.Response(body=shot.png, content_type="image/png",
                            headers={"Cache-Control": "no-store"})

    # -- console pages ---------------------------------------------------------------------
    async def get_console(self, request: web.Request) -> web.StreamResponse:
        sess = self.require(request)
        uuid, protocol = request.match_info["uuid"], request.match_info["protocol"]
        if protocol not in PROTOCOLS:
            raise web.HTTPNotFound()
        try:
            vm = await sess.xapi.find_vm(uuid)
        except XcpConsoleError:
            return self.error_page(sess, 404, "No such VM", f"No VM {uuid} is visible to you.")
        token_url = f"/vms/{quote(uuid)}/console/{protocol}/token"
        body = render(f"console_{protocol}.html", uuid=vm.uuid, name=vm.name_label,
                      csrf=sess.csrf, token_url=token_url)
        head = ('<link rel="stylesheet" href="/static/vendor/xterm/css/xterm.css">'
                if protocol == "vt100" else "")
        text = page(f"{vm.name_label} — console", body, host=self.host_label, user=sess.user,
                    csrf=sess.csrf, head=head, body_class="console-page")
        return web.Response(text=text, content_type="text/html")

    async def post_token(self, request: web.Request) -> web.StreamResponse:
        sess = self.session_of(request)
        if sess is None:
            return web.json_response({"error": "signed out"}, status=401)
        if not sess.check_csrf(request.headers.get("X-CSRF-Token")):
            return web.json_response({"error": "bad CSRF token"}, status=403)
        uuid, protocol = request.match_info["uuid"], request.match_info["protocol"]
        if protocol not in PROTOCOLS:
            raise web.HTTPNotFound()
        try:
            console = await sess.xapi.find_console(uuid, protocol)
        except (NotFoundError, TunnelError) as exc:
            status = 409 if isinstance(exc, TunnelError) else 404
            return web.json_response({"error": str(exc)}, status=status)
        if console.vm_uuid != uuid:
            return web.json_response({"error": "no such VM"}, status=404)
        token = self.tokens.issue(sess, uuid, protocol, self.clock(), console)
        return web.json_response({
            "url": f"/vms/{quote(uuid)}/console/{protocol}/ws?token={token}",
            "expires_in": self.config.token_ttl})

    # -- console WebSocket -----------------------------------------------------------------
    async def console_ws(self, request: web.Request) -> web.StreamResponse:
        grant = self.tokens.redeem(request.query.get("token", ""), self.clock())
        if grant is None:
            raise web.HTTPForbidden(text="missing, used or expired console token")
        if not self.origin_ok(request):
            raise web.HTTPForbidden(text="cross-origin WebSocket refused")
        sess = self.session_of(request)
        uuid, protocol = request.match_info["uuid"], request.match_info["protocol"]
        if (sess is None or sess.sid != grant.sid or grant.vm_uuid != uuid
                or grant.protocol != protocol):
            raise web.HTTPForbidden(text="token does not match this session and console")
        if self.consoles_total >= self.config.max_consoles_total:
            raise web.HTTPTooManyRequests(text="the gateway is at its console limit")
        if self.consoles_by_user.get(sess.user, 0) >= self.config.max_consoles_per_user:
            raise web.HTTPTooManyRequests(text="you have too many consoles open")
        ws = web.WebSocketResponse(max_msg_size=self.config.max_frame, heartbeat=30.0,
                                   protocols=("binary",), compress=False)
        self._count(sess, +1)
        try:
            await ws.prepare(request)
            await self._serve_console(ws, sess, uuid, protocol, grant.console)
        finally:
            self._count(sess, -1)
        return ws

    def _count(self, sess: WebSession, delta: int) -> None:
        self.consoles_total += delta
        sess.consoles += delta
        n = self.consoles_by_user.get(sess.user, 0) + delta
        if n > 0:
            self.consoles_by_user[sess.user] = n
        else:
            self.consoles_by_user.pop(sess.user, None)

    async def _serve_console(self, ws: web.WebSocketResponse, sess: WebSession, uuid: str,
                             protocol: str, console: Any) -> None:
        label = f"{sess.user}@{uuid}/{protocol}"
        try:
            if console is None:
                console = await sess.xapi.find_console(uuid, protocol)
            reader, writer = await self.backend.open_tunnel(sess.xapi, console)
        except XcpConsoleError as exc:
            log.info("%s: cannot open console: %s", label, exc)
            await ws.close(code=4404, message=str(exc).encode()[:120])
            return
        framer = RfbRelayFramer() if protocol == "rfb" else None

        async def power(code: int) -> None:
            log.info("%s: XVP %s", label, XVP_METHODS[code])
            await sess.xapi.call(XVP_METHODS[code], console.vm_ref)

        bridge = ConsoleBridge(ws, reader, writer, framer=framer, power=power, label=label,
                               limits=BridgeLimits(idle_timeout=self.config.console_idle_timeout))
        log.info("%s: console open", label)
        await bridge.run()
        log.info("%s: console closed (%s), %d bytes down, %d up", label, bridge.close_reason,
                 bridge.bytes_down, bridge.bytes_up)

    async def index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/vms" if self.session_of(request) else "/login")


async def _no_content(_request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)


GATEWAY = web.AppKey("gateway", Gateway)


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Origin check on state-changing requests, XAPI session loss, security headers."""
    gw = request.app[GATEWAY]
    if request.method not in ("GET", "HEAD", "OPTIONS") and not gw.origin_ok(request):
        return web.Response(status=403, text="cross-origin request refused")
    try:
        resp: web.StreamResponse = await handler(request)
    except XapiError as exc:
        if exc.code != "SESSION_INVALID":
            raise
        sess = gw.session_of(request)
        if sess is not None:
            await gw.end_session(sess)
        resp = web.HTTPSeeOther("/login")
    except XcpConsoleError as exc:
        sess = gw.session_of(request)
        resp = gw.error_page(sess, 502, "The host refused", str(exc))
    h = resp.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "same-origin")  # "no-referrer" makes Origin null
    h.setdefault("X-Frame-Options", "DENY")
    if resp.content_type == "text/html":
        h.setdefault("Cache-Control", "no-store")
    return resp


#: Bytes asyncio's TLS layer reads from a socket at once.  Its default (256 KiB) is
#: allocated up front for every TLS connection, which made it most of the gateway's
#: memory per open console (measured: 352 KiB per session, 256 of them this buffer).
#: TLS records are at most 16 KiB, so 64 KiB still reads several per call.
TLS_READ_BUFFER = 64 * 1024


def _shrink_tls_read_buffers() -> None:
    from asyncio import sslproto

    if getattr(sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def create_app(config: GatewayConfig, backend: Backend | None = None, *,
               clock: Callable[[], float] = time.monotonic) -> web.Application:
    """The gateway application; ``backend`` defaults to the real client library."""
    _shrink_tls_read_buffers()
    assets = find_assets_dir(config.assets_dir)
    gw = Gateway(config, backend or default_backend(config), clock=clock)
    app = web.Application(middlewares=[_guard], client_max_size=64 * 1024)
    app[GATEWAY] = gw
    app.router.add_get("/", gw.index)
    app.router.add_get("/favicon.ico", _no_content)
    app.router.add_get("/login", gw.get_login)
    app.router.add_post("/login", gw.post_login)
    app.router.add_get("/login/link", gw.get_login_link)
    app.router.add_post("/logout", gw.post_logout)
    app.router.add_get("/vms", gw.get_vms)
    app.router.add_get("/api/vms", gw.api_vms)
    app.router.add_get("/vms/{uuid}/thumbnail.png", gw.get_thumbnail)
    app.router.add_get("/vms/{uuid}/console/{protocol}", gw.get_console)
    app.router.add_post("/vms/{uuid}/console/{protocol}/token", gw.post_token)
    app.router.add_get("/vms/{uuid}/console/{protocol}/ws", gw.console_ws)
    for prefix, pkg in VENDOR.items():
        app.router.add_static(f"/static/vendor/{prefix}", assets / pkg)
    app.router.add_static("/static", STATIC_DIR)

    async def background(app: web.Application) -> Any:
        reaper = asyncio.create_task(gw.reap(), name="session-reaper")
        if gw.thumbnails is not None:
            gw.thumbnails.start()
        yield
        reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reaper
        if gw.thumbnails is not None:
            await gw.thumbnails.stop()
        for sess in list(gw.sessions):
            await gw.end_session(sess)

    app.cleanup_ctx.append(background)
    return app


