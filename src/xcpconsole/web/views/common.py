"""What the views share: whole-page responses, the signed-in check, the console protocols."""

from __future__ import annotations

from aiohttp import web

from ..auth import WebSession
from ..gateway import Gateway
from ..pages import Markup, page, render

PROTOCOLS = ("rfb", "vt100")


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


def require_session(gw: Gateway, request: web.Request) -> WebSession:
    """The signed-in session, or a redirect to the sign-in page."""
    sess = gw.session_of(request)
    if sess is None:
        raise web.HTTPSeeOther("/login")
    return sess


async def no_content(_request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)
