"""The URL map of the gateway: every route and the static directories."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from .assets import STATIC_DIR, VENDOR
from .views import consoles, login, power, vms
from .views.common import no_content


def setup_routes(app: web.Application, assets: Path) -> None:
    """Register the handlers; ``assets`` is the ``node_modules`` of the browser libraries."""
    add_get, add_post = app.router.add_get, app.router.add_post
    add_get("/", login.index)
    add_get("/favicon.ico", no_content)
    add_get("/login", login.get_login)
    add_post("/login", login.post_login)
    add_get("/login/link", login.get_login_link)
    add_post("/logout", login.post_logout)
    add_get("/vms", vms.get_vms)
    add_get("/api/vms", vms.api_vms)
    add_get("/api/vms/{uuid}", vms.api_vm)
    add_post("/vms/{uuid}/power/{action}", power.post_power)
    add_get("/vms/{uuid}/thumbnail.png", vms.get_thumbnail)
    add_get("/vms/{uuid}/console/{protocol}", consoles.get_console)
    add_post("/vms/{uuid}/console/{protocol}/token", consoles.post_token)
    add_get("/vms/{uuid}/console/{protocol}/ws", consoles.console_ws)
    for prefix, pkg in VENDOR.items():
        app.router.add_static(f"/static/vendor/{prefix}", assets / pkg)
    app.router.add_static("/static", STATIC_DIR)
