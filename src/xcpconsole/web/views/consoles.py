"""Console pages: the page per VM and protocol, its one-time token, its WebSocket.

A console page asks for a one-time token (POST, CSRF header) and opens
``/vms/{uuid}/console/{protocol}/ws?token=…``; the WebSocket handler checks token,
cookie and Origin, then bridges to the host's ``/console`` tunnel opened with the
signed-in user's own XAPI session.  ``rfb`` consoles go through the relay framer
(headers and lengths only; XVP power actions become XenAPI calls).

When there is no token the answer says whether trying again can help: ``permanent``
errors (no such console, a role the host refuses, a VM that does not run, with its
power state and what would make it run) are shown by the page with what to do; the
others (the console is busy, the host is restarting it) are retried.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from aiohttp import web

from ...errors import NotFoundError, TunnelError, XcpConsoleError
from ...rfb.framer import RfbRelayFramer
from ...xapi.power import POWER_ACTIONS
from ..auth import WebSession
from ..bridge import BridgeLimits, ConsoleBridge
from ..gateway import GATEWAY, Gateway
from ..host import HostConsole
from ..pages import Markup, fragment, join, render
from .common import PROTOCOLS, error_page, html_page, require_session, session_lost
from .power import ACTIONS, actions_for, power_buttons, primary_buttons

log = logging.getLogger(__name__)

#: XVP codes (shutdown, reboot, reset) -> XenAPI method, from the one power table
XVP_METHODS = {code: POWER_ACTIONS[action].call(force).method
               for code, (action, force) in {2: ("shutdown", False), 3: ("reboot", False),
                                             4: ("reboot", True)}.items()}


#: The send-key menu of graphical consoles: label and the keys (X keysym names, pressed
#: in order and released in reverse).  Ctrl-Alt-Del has its own button; Alt-SysRq takes
#: a letter from the menu's input.
SEND_KEYS: tuple[tuple[str, str], ...] = (
    *((f"Ctrl-Alt-F{n}", f"Control_L Alt_L F{n}") for n in range(1, 13)),
    ("Ctrl-Alt-Backspace", "Control_L Alt_L BackSpace"),
    ("Alt-Tab", "Alt_L Tab"),
    ("Esc", "Escape"),
    ("Ctrl-Esc", "Control_L Escape"),
    ("Print Screen", "Print"),
    ("Windows key", "Super_L"),
)

_HINTS = {
    "forbidden": "Your role on the host lets you see this VM but not use its console: "
                 "ask an administrator for the VM Operator role (or higher).",
    "no-console": "Open one of the consoles it has from the VM list.",
}


def _console_page(protocol: str, **values: object) -> Markup:
    common = {"power_menu": fragment("power_menu.html", buttons=power_buttons()),
              "notice": fragment("console_notice.html", buttons=primary_buttons()),
              "message": fragment("message.html"),
              "confirm": fragment("confirm_dialog.html")}
    if protocol == "rfb":
        keys = join((fragment("key_button.html", label=label, keys=keys)
                     for label, keys in SEND_KEYS), "\n")
        common["keys_menu"] = fragment("send_keys.html", buttons=keys)
    return render(f"console_{protocol}.html", **common, **values)


async def get_console(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    sess = require_session(gw, request)
    uuid, protocol = request.match_info["uuid"], request.match_info["protocol"]
    if protocol not in PROTOCOLS:
        raise web.HTTPNotFound()
    try:
        vm = await sess.xapi.find_vm(uuid)
    except XcpConsoleError as exc:
        if session_lost(exc):
            raise
        vm = None
    if vm is None or vm.is_control_domain:  # not offered in the list: not by URL either
        return error_page(gw, sess, 404, "No such VM", f"No VM {uuid} is visible to you.")
    base = f"/vms/{quote(vm.uuid)}"
    body = _console_page(protocol, uuid=vm.uuid, name=vm.name_label, csrf=sess.csrf,
                         token_url=f"{base}/console/{protocol}/token",
                         vm_url=f"/api/vms/{quote(vm.uuid)}",
                         power_state=vm.power_state)
    head = fragment("console_vt100_head.html") if protocol == "vt100" else Markup("")
    return html_page(gw, f"{vm.name_label} — console", body, sess, head=head,
                     body_class="console-page")


def _token_error(status: int, message: str, reason: str, *, permanent: bool,
                 **extra: object) -> web.Response:
    """Why no token: ``permanent`` ones (no such console, a role refused, the VM does
    not run) are shown with what to do; the page retries the others."""
    return web.json_response({"error": message, "permanent": permanent, "reason": reason,
                              "hint": _HINTS.get(reason, ""), **extra}, status=status)


async def _not_running(sess: WebSession, uuid: str, exc: TunnelError) -> web.Response:
    """The VM does not run (find_console's one TunnelError): its power state and what
    would make it run, or a retry when it runs again by now."""
    try:
        vm = await sess.xapi.find_vm(uuid)
    except XcpConsoleError as lookup:
        if session_lost(lookup):
            raise
        vm = None
    if vm is None or vm.power_state == "Running":
        return _token_error(409, str(exc), "refused", permanent=False)
    state = vm.power_state
    primary = [a for a in ACTIONS.values() if a.primary and state in a.states]
    hint = (f"{primary[0].label} it to use its console." if primary
            else "Its console comes back when it runs again.")
    return web.json_response({
        "error": f"“{vm.name_label}” is {state.lower()}: its console exists only while it "
                 "runs.", "permanent": True, "reason": "not-running", "hint": hint,
        "power_state": state, "actions": actions_for(state)}, status=409)


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
        if status == 403:
            return _token_error(403, message, "forbidden", permanent=True)
        return _token_error(409, message, "refused", permanent=False)
    try:
        console = await sess.xapi.find_console(uuid, protocol)
    except NotFoundError as exc:
        return _token_error(404, str(exc), "no-console", permanent=True)
    except TunnelError as exc:
        return await _not_running(sess, uuid, exc)
    if console.vm_uuid != uuid or (await sess.xapi.find_vm(uuid)).is_control_domain:
        return _token_error(404, "no such VM", "no-console", permanent=True)
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
        if session_lost(exc):  # signed out; the page reconnects, finds that, signs in
            await gw.end_session(sess)
            await ws.close(code=4401, message=b"signed out: sign in again")
            return
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
    gw.open_consoles.add(bridge)
    try:
        await bridge.run()
    finally:
        gw.open_consoles.discard(bridge)
    log.info("%s: console closed (%s), %d bytes down, %d up", label, bridge.close_reason,
             bridge.bytes_down, bridge.bytes_up)
