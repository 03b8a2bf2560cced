"""What the views share: whole-page responses, the signed-in check, the console protocols."""

from __future__ import annotations

from aiohttp import web

from ...errors import SessionEndedError, XapiError
from ..auth import WebSession
from ..gateway import Gateway
from ..pages import Markup, page, render

PROTOCOLS = ("rfb", "vt100")

#: What a user whose host session ended is told on the sign-in page.
ENDED = ("The host ended your session and no longer accepts the password you signed in "
         "with (it may have changed); please sign in again.")


def html_page(gw: Gateway, title: str, body: Markup, sess: WebSession | None = None, *,
              status: int = 200, head: Markup = Markup(""), body_class: str = ""
              ) -> web.Response:
    text = page(title, body, host=gw.host_label, user=sess.user if sess else None,
                csrf=sess.csrf if sess else "", head=head, body_class=body_class)
    return web.Response(text=text, content_type="text/html", status=status)


def error_page(gw: Gateway, sess: WebSession | None, status: int, heading: str,
               message: str) -> web.Response:
    return html_page(gw, heading, render("error.html", heading=heading, message=message),
                     sess, status=status)


def session_lost(exc: BaseException) -> bool:
    """The host ended the session for good: the middleware signs the user out, so the
    views that turn host errors into pages or JSON re-raise these."""
    return isinstance(exc, SessionEndedError) or (
        isinstance(exc, XapiError) and exc.code == "SESSION_INVALID")


def require_session(gw: Gateway, request: web.Request) -> WebSession:
    """The signed-in session, or a redirect to the sign-in page."""
    sess = gw.session_of(request)
    if sess is None:
        raise web.HTTPSeeOther("/login")
    return sess


async def no_content(_request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)
