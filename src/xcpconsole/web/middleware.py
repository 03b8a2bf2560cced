"""The one middleware: Origin check, XAPI session loss, host errors, our error pages,
security headers on every answer (aiohttp's own 404s and redirects included)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import SessionEndedError, XapiError, XcpConsoleError
from .gateway import GATEWAY
from .limits import read_body
from .views.common import ENDED, error_page

#: Our pages load scripts and styles only from us; nothing may frame them.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'self'")

#: Statuses answered with our error page (or JSON for scripts) instead of aiohttp's text.
_PAGES = {404: ("Page not found", "There is no page at {path}. Start again from the VM list."),
          405: ("Not allowed", "{path} does not answer that kind of request.")}


def _wants_json(request: web.Request) -> bool:
    """Script endpoints: ``/api/…`` and the POSTs the pages make with ``fetch``."""
    return request.path.startswith("/api/") or request.method == "POST"


def _error_answer(request: web.Request, exc: web.HTTPException) -> web.Response:
    heading, text = _PAGES[exc.status]
    message = text.format(path=request.path[:200])
    if _wants_json(request):
        resp = web.json_response({"error": message}, status=exc.status)
    else:
        gw = request.app[GATEWAY]
        resp = error_page(gw, gw.session_of(request), exc.status, heading, message)
    resp.headers.extend((k, v) for k, v in exc.headers.items()
                        if k.lower() not in ("content-type", "content-length"))
    return resp


def _secure(resp: web.StreamResponse) -> None:
    h = resp.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "same-origin")  # "no-referrer" makes Origin null
    h.setdefault("X-Frame-Options", "DENY")
    if resp.content_type in ("text/html", "application/json"):
        h.setdefault("Cache-Control", "no-store")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Origin check on state-changing requests, XAPI session loss, security headers."""
    gw = request.app[GATEWAY]
    if not gw.host_ok(request):  # DNS rebinding: a name we were not told we have
        misdirected = web.Response(
            status=421, text="this gateway does not answer for that host name "
                             "(its operator can add it with --allowed-host)")
        _secure(misdirected)
        return misdirected
    if request.method not in ("GET", "HEAD", "OPTIONS") and not gw.origin_ok(request):
        refused = web.Response(status=403, text="cross-origin request refused")
        _secure(refused)
        return refused
    try:
        await read_body(request, gw.config.body_timeout)  # before a handler waits on it
        resp = await handler(request)
    except web.HTTPException as exc:
        if exc.status not in _PAGES:
            _secure(exc)
            raise
        resp = _error_answer(request, exc)
    except (XapiError, SessionEndedError) as exc:
        if isinstance(exc, XapiError) and exc.code != "SESSION_INVALID":
            raise
        # The host ended the session for good (and, for SessionEndedError, refused the
        # saved password): sign the user out now, not a 502 on every poll.
        sess = gw.session_of(request)
        if sess is not None:
            await gw.end_session(sess)
        if _wants_json(request):
            gone = web.json_response({"error": ENDED, "signin": "/login"}, status=401)
            _secure(gone)
            return gone
        again = web.HTTPSeeOther("/login?ended=1")
        _secure(again)
        raise again from None
    except XcpConsoleError as exc:
        resp = error_page(gw, gw.session_of(request), 502, "The host refused", str(exc))
    _secure(resp)
    return resp
