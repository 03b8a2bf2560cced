"""Console pages: the page per VM and protocol, its one-time token, its WebSocket.

A console page asks for a one-time token (POST, CSRF header) and opens
``/vms/{uuid}/console/{protocol}/ws?token=…``; the WebSocket handler checks token,
cookie and Origin, then bridges to the host's ``/console`` tunnel opened with the
signed-in user's own XAPI session.  ``rfb`` consoles go through the relay framer
(headers and lengths only; XVP power actions become XenAPI calls).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from aiohttp import web

from ...errors import NotFoundError, TunnelError, XcpConsoleError
from ...rfb.framer import RfbRelayFramer
from ..auth import WebSession
from ..bridge import BridgeLimits, ConsoleBridge
from ..gateway import GATEWAY, Gateway
from ..host import HostConsole
from ..pages import Markup, fragment, render
from .common import PROTOCOLS, error_page, html_page, require_session

log = logging.getLogger(__name__)

XVP_METHODS = {2: "VM.clean_shutdown", 3: "VM.clean_reboot", 4: "VM.hard_reboot"}


async def get_console(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    sess = require_session(gw, request)
    uuid, protocol = request.match_info["uuid"], request.match_info["protocol"]
    if protocol not in PROTOCOLS:
        raise web.HTTPNotFound()
    try:
        vm = await sess.xapi.find_vm(uuid)
    except XcpConsoleError:
        return error_page(gw, sess, 404, "No such VM", f"No VM {uuid} is visible to you.")
    token_url = f"/vms/{quote(uuid)}/console/{protocol}/token"
    body = render(f"console_{protocol}.html", uuid=vm.uuid, name=vm.name_label,
                  csrf=sess.csrf, token_url=token_url)
    head = fragment("console_vt100_head.html") if protocol == "vt100" else Markup("")
    return html_page(gw, f"{vm.name_label} — console", body, sess, head=head,
                     body_class="console-page")


async def post_token(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    sess = gw.session_of(request)
    if sess is None:
        return web.json_response({"error": "signed out"}, status=401)
    if not sess.check_csrf(request.headers.get("X-CSRF-Token")):
        return web.json_response({"error": "bad CSRF token"}, status=403)
    uuid, protocol = request.match_info["uuid"], request.match_info["protocol"]
    if protocol not in PROTOCOLS:
        raise web.HTTPNotFound()
    failed = sess.console_errors.pop((uuid, protocol), None)
    if failed is not None:  # the last try was refused by the host: say why, once
        status, message = failed
        return web.json_response({"error": message, "permanent": status == 403},
                                 status=403 if status == 403 else 409)
    try:
        console = await sess.xapi.find_console(uuid, protocol)
    except (NotFoundError, TunnelError) as exc:
        status = 409 if isinstance(exc, TunnelError) else 404
        return web.json_response({"error": str(exc)}, status=status)
    if console.vm_uuid != uuid:
        return web.json_response({"error": "no such VM"}, status=404)
    token = gw.tokens.issue(sess, uuid, protocol, gw.clock(), console)
    return web.json_response({
        "url": f"/vms/{quote(uuid)}/console/{protocol}/ws?token={token}",
        "expires_in": gw.config.token_ttl})


async def console_ws(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    grant = gw.tokens.redeem(request.query.get("token", ""), gw.clock())
    if grant is None:
        raise web.HTTPForbidden(text="missing, used or expired console token")
    if not gw.origin_ok(request):
        raise web.HTTPForbidden(text="cross-origin WebSocket refused")
    sess = gw.session_of(request)
    uuid, protocol = request.match_info["uuid"], request.match_info["protocol"]
    if (sess is None or sess.sid != grant.sid or grant.vm_uuid != uuid
            or grant.protocol != protocol):
        raise web.HTTPForbidden(text="token does not match this session and console")
    if gw.consoles_total >= gw.config.max_consoles_total:
        raise web.HTTPTooManyRequests(text="the gateway is at its console limit")
    if gw.consoles_by_user.get(sess.user, 0) >= gw.config.max_consoles_per_user:
        raise web.HTTPTooManyRequests(text="you have too many consoles open")
    ws = web.WebSocketResponse(max_msg_size=gw.config.max_frame, heartbeat=30.0,
                               protocols=("binary",), compress=False)
    gw.count_console(sess, +1)
    try:
        await ws.prepare(request)
        await _serve_console(gw, ws, sess, uuid, protocol, grant.console)
    finally:
        gw.count_console(sess, -1)
    return ws


async def _serve_console(gw: Gateway, ws: web.WebSocketResponse, sess: WebSession, uuid: str,
                         protocol: str, console: HostConsole | None) -> None:
    label = f"{sess.user}@{uuid}/{protocol}"
    try:
        if console is None:
            console = await sess.xapi.find_console(uuid, protocol)
        reader, writer = await gw.backend.open_tunnel(sess.xapi, console)
    except XcpConsoleError as exc:
        log.info("%s: cannot open console: %s", label, exc)
        if len(sess.console_errors) < 64:
            sess.console_errors[(uuid, protocol)] = (getattr(exc, "status", None), str(exc))
        await ws.close(code=4404, message=str(exc).encode()[:120])
        return
    framer = RfbRelayFramer() if protocol == "rfb" else None
    vm_ref = console.vm_ref

    async def power(code: int) -> None:
        log.info("%s: XVP %s", label, XVP_METHODS[code])
        await sess.xapi.call(XVP_METHODS[code], vm_ref)

    bridge = ConsoleBridge(ws, reader, writer, framer=framer, power=power, label=label,
                           limits=BridgeLimits(idle_timeout=gw.config.console_idle_timeout))
    log.info("%s: console open", label)
    await bridge.run()
    log.info("%s: console closed (%s), %d bytes down, %d up", label, bridge.close_reason,
             bridge.bytes_down, bridge.bytes_up)
