"""The one middleware: Origin check, XAPI session loss, host errors, security headers."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import XapiError, XcpConsoleError
from .gateway import GATEWAY
from .views.common import error_page

#: Our pages load scripts and styles only from us; nothing may frame them.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'self'")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Origin check on state-changing requests, XAPI session loss, security headers."""
    gw = request.app[GATEWAY]
    if request.method not in ("GET", "HEAD", "OPTIONS") and not gw.origin_ok(request):
        return web.Response(status=403, text="cross-origin request refused")
    try:
        resp = await handler(request)
    except XapiError as exc:
        if exc.code != "SESSION_INVALID":
            raise
        sess = gw.session_of(request)
        if sess is not None:
            await gw.end_session(sess)
        resp = web.HTTPSeeOther("/login")
    except XcpConsoleError as exc:
        resp = error_page(gw, gw.session_of(request), 502, "The host refused", str(exc))
    h = resp.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "same-origin")  # "no-referrer" makes Origin null
    h.setdefault("X-Frame-Options", "DENY")
    if resp.content_type == "text/html":
        h.setdefault("Cache-Control", "no-store")
    return resp
