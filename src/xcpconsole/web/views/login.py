"""Sign-in and sign-out: the login form, one-time sign-in links, the ``/`` redirect.

A successful XenAPI login against the configured host is the proof of identity; the
resulting XAPI session is kept in the web session (see :mod:`..auth`).
"""

from __future__ import annotations

import logging

from aiohttp import web

from ...errors import AuthError, XcpConsoleError, redact
from ..auth import COOKIE_NAME
from ..gateway import GATEWAY, Gateway
from ..host import HostSession
from ..pages import Markup, fragment, render
from ..signin import Refused
from .common import ENDED, html_page

log = logging.getLogger(__name__)

#: what end users see when the host is unreachable or untrusted (the reason is logged)
HOST_UNAVAILABLE = ("The gateway cannot reach the host right now; please try again later "
                    "or tell the administrator.")


def login_page(gw: Gateway, *, error: str = "", username: str = "", status: int = 200
               ) -> web.Response:
    err = fragment("login_error.html", message=error) if error else Markup("")
    body = render("login.html", host=gw.host_label, error=err, username=username,
                  csrf=gw.signer.login_form_token(gw.clock()))
    return html_page(gw, "Sign in", body, status=status, body_class="login-page")


async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/vms" if request.app[GATEWAY].session_of(request) else "/login")


async def get_login(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    if gw.session_of(request):
        raise web.HTTPSeeOther("/vms")
    if request.query.get("ended") == "1":  # a fixed text: nothing of the query is shown
        return login_page(gw, error=ENDED)
    return login_page(gw)


async def post_login(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    form = await request.post()
    user = str(form.get("username", "")).strip()[:256]
    password = str(form.get("password", ""))[:1024]
    if not gw.signer.check_login_form_token(str(form.get("csrf", "")), gw.clock()):
        return login_page(gw, error="The form expired; please try again.", username=user,
                          status=400)
    if not user or not password:
        return login_page(gw, error="User name and password are required.", username=user,
                          status=400)
    addr = request.remote or "?"
    attempt = gw.signins.take(user, addr, gw.clock())  # before the host call: see signin.py
    if isinstance(attempt, Refused):
        resp = login_page(gw, error=attempt.message, username=user, status=attempt.status)
        resp.headers["Retry-After"] = str(attempt.retry_after)
        return resp
    ok: bool | None = None
    try:
        xapi = await gw.backend.login(gw.backend.make_settings(user, password))
        ok = True
    except AuthError:
        ok = False
        log.info("failed sign-in for %r from %s", user, addr)
        return login_page(gw, error="Wrong user name or password.", username=user, status=401)
    except XcpConsoleError as exc:
        return _host_unavailable(gw, user, exc)
    finally:
        gw.signins.finish(attempt, ok=ok, now=gw.clock())
    log.info("signed in %s from %s", user, addr)
    raise await _signed_in(gw, request, user, xapi)


async def get_login_link(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    if request.method == "HEAD":  # a link previewer or a checker: the link stays unused
        return login_page(gw)
    entry = gw.redeem_sign_in_link(request.query.get("code", ""))
    if entry is None:
        return login_page(gw, error="That sign-in link was used or has expired.", status=403)
    user, password = entry
    try:
        xapi = await gw.backend.login(gw.backend.make_settings(user, password))
    except AuthError as exc:
        log.info("failed sign-in for %r with a one-time link: %s", user, exc)
        return login_page(gw, error="Sign-in failed: the host refused the link's credentials.",
                          username=user, status=401)
    except XcpConsoleError as exc:
        return _host_unavailable(gw, user, exc)
    log.info("signed in %s with a one-time link", user)
    raise await _signed_in(gw, request, user, xapi)


def _host_unavailable(gw: Gateway, user: str, exc: XcpConsoleError) -> web.Response:
    """The reason goes to the operator's log; the end user, who cannot act on it (pin a
    certificate, fix the network), gets a neutral page."""
    log.warning("sign-in for %r: the gateway cannot reach the host: %s", user, redact(str(exc)))
    return login_page(gw, error=HOST_UNAVAILABLE, username=user, status=502)


async def _signed_in(gw: Gateway, request: web.Request, user: str, xapi: HostSession
                     ) -> web.HTTPSeeOther:
    """A new web session for ``user``: the redirect to /vms carrying its cookie."""
    sess, evicted = gw.sessions.create(user, xapi, gw.clock())
    for old in evicted:
        await gw.end_session(old)
    resp = web.HTTPSeeOther("/vms")
    # Behind a TLS-terminating reverse proxy the request itself is plain HTTP, but the
    # browser's Origin (checked by the middleware: ours or an --allowed-origin) says
    # https; the cookie must then be Secure too.
    https = request.secure or request.headers.get("Origin", "").startswith("https://") or (
        bool(gw.config.allowed_origins)
        and all(o.startswith("https://") for o in gw.config.allowed_origins))
    resp.set_cookie(COOKIE_NAME, gw.signer.sign(sess.sid), httponly=True,
                    samesite="Strict", secure=https, path="/")
    return resp


async def post_logout(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    sess = gw.session_of(request)
    form = await request.post()
    if sess is not None:
        if not sess.check_csrf(str(form.get("csrf", ""))):
            raise web.HTTPForbidden(text="bad CSRF token")
        await gw.end_session(sess)
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(COOKIE_NAME, path="/")
    raise resp
