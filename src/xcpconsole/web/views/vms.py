"""The VM list: the page, its JSON twin ``/api/vms`` and the cached thumbnails."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from ..auth import WebSession
from ..gateway import GATEWAY, Gateway
from ..host import HostVm
from ..pages import Markup, fragment, join, render
from .common import PROTOCOLS, html_page, require_session

_LINK_LABELS = {"rfb": "graphical", "vt100": "text"}


async def list_vms(sess: WebSession) -> tuple[list[HostVm], dict[str, str]]:
    """The VMs ``sess`` may see, by name (remembered as the ones it may get thumbnails of),
    and the names of the hosts they run on."""
    vms = [vm for vm in await sess.xapi.vms() if not vm.is_control_domain]
    names = await sess.xapi.host_names()
    sess.visible_vms = {vm.uuid for vm in vms}
    return sorted(vms, key=lambda vm: (vm.name_label.lower(), vm.uuid)), names


def _host(vm: HostVm, names: dict[str, str]) -> str:
    return names.get(vm.resident_on, "") if vm.power_state == "Running" else ""


def _consoles(vm: HostVm) -> list[str]:
    return [p for p in PROTOCOLS if p in vm.console_protocols]


def _vm_row(gw: Gateway, sess: WebSession, vm: HostVm, names: dict[str, str]) -> Markup:
    running = vm.power_state == "Running"
    protocols = _consoles(vm)
    links = join((fragment("vm_console_link.html", protocol=p, label=_LINK_LABELS[p],
                           href=f"/vms/{quote(vm.uuid)}/console/{p}")
                  for p in protocols), " ") if running else Markup("")
    thumb = Markup("")
    if running and "rfb" in protocols and gw.thumbnails is not None:
        gw.thumbnails.request(vm.uuid, sess.xapi)
        thumb = fragment("vm_thumbnail.html", src=f"/vms/{quote(vm.uuid)}/thumbnail.png")
    return render("vm_row.html", uuid=vm.uuid, name=vm.name_label, power_state=vm.power_state,
                  power_class=vm.power_state.lower(), links=links, thumb=thumb,
                  host=_host(vm, names))


async def get_vms(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    sess = require_session(gw, request)
    vms, names = await list_vms(sess)
    rows = join((_vm_row(gw, sess, vm, names) for vm in vms), "\n")
    empty = Markup("") if vms else fragment("vms_empty.html")
    body = render("vms.html", rows=rows, empty=empty, csrf=sess.csrf)
    return html_page(gw, "Virtual machines", body, sess)


async def api_vms(request: web.Request) -> web.StreamResponse:
    sess = request.app[GATEWAY].session_of(request)
    if sess is None:
        return web.json_response({"error": "signed out"}, status=401)
    vms, names = await list_vms(sess)
    return web.json_response([
        {"uuid": vm.uuid, "name": vm.name_label, "power_state": vm.power_state,
         "host": _host(vm, names), "consoles": _consoles(vm)}
        for vm in vms])


async def get_thumbnail(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    sess = gw.session_of(request)
    uuid = request.match_info["uuid"]
    if sess is None or gw.thumbnails is None or uuid not in sess.visible_vms:
        raise web.HTTPNotFound()
    gw.thumbnails.request(uuid, sess.xapi)
    shot = gw.thumbnails.get(uuid)
    if shot is None:
        raise web.HTTPNotFound(text="no thumbnail yet")
    return web.Response(body=shot.png, content_type="image/png",
                        headers={"Cache-Control": "no-store"})
