"""The VM list: the page, its JSON twins ``/api/vms`` and ``/api/vms/{uuid}``, thumbnails.

The page renders every row once; its script then updates the rows in place from
``/api/vms`` (power state, host, details, which console links and power buttons show,
the thumbnail's URL once one exists).  The row's ``data-*`` attributes drive what the
CSS shows, so the script changes attributes and text, never markup.
"""

from __future__ import annotations

import datetime
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ...errors import NotFoundError, XcpConsoleError
from ..auth import WebSession
from ..gateway import GATEWAY, Gateway
from ..host import HostVm
from ..pages import Markup, fragment, join, render
from .common import PROTOCOLS, html_page, require_session, session_lost
from .power import actions_for, power_buttons

log = logging.getLogger(__name__)

_LINK_LABELS = {"rfb": "graphical", "vt100": "text"}
#: memory and vCPUs barely change: their records are read again after this long, or
#: sooner when a VM's power state changed (its uptime restarts)
DETAILS_MAX_AGE = 30.0


@dataclass(frozen=True)
class VmDetails:
    memory: int | None = None  # bytes (memory_static_max)
    vcpus: int | None = None  # VCPUs_at_startup
    started: float | None = None  # epoch seconds (VM_metrics.start_time), when running


@dataclass
class _DetailsSnapshot:
    taken: float
    states: dict[str, str]  # uuid -> power state when read
    details: dict[str, VmDetails]


_details_cache: weakref.WeakKeyDictionary[WebSession, _DetailsSnapshot] = (
    weakref.WeakKeyDictionary())


async def list_vms(sess: WebSession) -> tuple[list[HostVm], dict[str, str]]:
    """The VMs ``sess`` may see, by name (remembered as the ones it may get thumbnails of),
    and the names of the hosts they run on."""
    vms = [vm for vm in await sess.xapi.vms() if not vm.is_control_domain]
    names = await sess.xapi.host_names()
    sess.visible_vms = {vm.uuid for vm in vms}
    return sorted(vms, key=lambda vm: (vm.name_label.lower(), vm.uuid)), names


async def _all_records(sess: WebSession, cls: str) -> dict[str, Any]:
    """``cls.get_all_records``, or nothing when the host cannot say (details are extras)."""
    try:
        records = await sess.xapi.call(f"{cls}.get_all_records")
    except XcpConsoleError as exc:
        if session_lost(exc):
            raise
        log.debug("%s.get_all_records: %s", cls, exc)
        return {}
    return records if isinstance(records, dict) else {}


def _int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _epoch(value: Any) -> float | None:
    """A XenAPI date (``20240131T12:34:56Z``, an ``xmlrpc.client.DateTime``) in seconds."""
    text = str(value or "").strip().removesuffix("Z")
    try:
        moment = datetime.datetime.strptime(text, "%Y%m%dT%H:%M:%S")
    except ValueError:
        return None
    seconds = moment.replace(tzinfo=datetime.UTC).timestamp()
    return seconds if seconds > 0 else None  # halted VMs say 1970


async def vm_details(gw: Gateway, sess: WebSession, vms: list[HostVm]) -> dict[str, VmDetails]:
    """Memory, vCPUs and start time by VM uuid, from the VM and VM_metrics records."""
    states = {vm.uuid: vm.power_state for vm in vms}
    snap = _details_cache.get(sess)
    if snap is not None and gw.clock() - snap.taken < DETAILS_MAX_AGE and snap.states == states:
        return snap.details
    records = await _all_records(sess, "VM")
    metrics = await _all_records(sess, "VM_metrics") if records else {}
    details: dict[str, VmDetails] = {}
    for rec in records.values():
        if not isinstance(rec, dict) or not isinstance(rec.get("uuid"), str):
            continue
        started = None
        if rec.get("power_state") == "Running":
            found = metrics.get(str(rec.get("metrics")))
            started = _epoch(found.get("start_time")) if isinstance(found, dict) else None
        details[rec["uuid"]] = VmDetails(_int(rec.get("memory_static_max")),
                                         _int(rec.get("VCPUs_at_startup")), started)
    _details_cache[sess] = _DetailsSnapshot(gw.clock(), states, details)
    return details


def format_memory(size: int | None) -> str:
    if size is None:
        return ""
    mib = size / 2**20
    if mib < 1024:
        return f"{mib:.0f} MiB"
    return f"{mib / 1024:.1f}".removesuffix(".0") + " GiB"


def format_vcpus(count: int | None) -> str:
    return "" if count is None else f"{count} vCPU" + ("s" if count != 1 else "")


def format_uptime(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"up {minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"up {hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"up {days} d {hours} h"


def _host(vm: HostVm, names: dict[str, str]) -> str:
    return names.get(vm.resident_on, "") if vm.power_state == "Running" else ""


def _consoles(vm: HostVm) -> list[str]:
    return [p for p in PROTOCOLS if p in vm.console_protocols]


def _thumbnail_url(gw: Gateway, sess: WebSession, vm: HostVm) -> str | None:
    """Where the VM's latest screen is, once there is one (the page asks for nothing
    before: no 404s), and a request for a fresh capture if it is old."""
    if gw.thumbnails is None or vm.power_state != "Running" or "rfb" not in _consoles(vm):
        return None
    gw.thumbnails.request(sess.user, vm.uuid, sess.xapi)
    shot = gw.thumbnails.get(sess.user, vm.uuid)
    if shot is None:
        return None
    return f"/vms/{quote(vm.uuid)}/thumbnail.png?t={int(shot.taken * 1000)}"


def _vm_json(gw: Gateway, sess: WebSession, vm: HostVm, names: dict[str, str],
             details: VmDetails | None) -> dict[str, Any]:
    d = details or VmDetails()
    uptime = time.time() - d.started if d.started is not None else None
    return {"uuid": vm.uuid, "name": vm.name_label, "power_state": vm.power_state,
            "host": _host(vm, names), "consoles": _consoles(vm),
            "actions": actions_for(vm.power_state),
            "thumbnail": _thumbnail_url(gw, sess, vm),
            "memory_bytes": d.memory, "vcpu_count": d.vcpus,
            "uptime_seconds": int(uptime) if uptime is not None else None,
            "details": {"memory": format_memory(d.memory), "vcpus": format_vcpus(d.vcpus),
                        "uptime": format_uptime(uptime)}}


def _row(vm: dict[str, Any]) -> Markup:
    uuid = vm["uuid"]
    links = join((fragment("vm_console_link.html", protocol=p, label=_LINK_LABELS[p],
                           href=f"/vms/{quote(uuid)}/console/{p}") for p in PROTOCOLS), " ")
    thumb = (fragment("vm_thumbnail.html", src=vm["thumbnail"]) if vm["thumbnail"]
             else Markup(""))
    state = vm["power_state"]
    return render("vm_row.html", uuid=uuid, name=vm["name"], power_state=state,
                  power_class=state.lower(), links=links, thumb=thumb, host=vm["host"],
                  consoles=" ".join(vm["consoles"]), actions=power_buttons(),
                  **vm["details"])


_BLANK_ROW: dict[str, Any] = {"uuid": "", "name": "", "power_state": "", "host": "", "consoles": [],
              "thumbnail": None, "details": {"memory": "", "vcpus": "", "uptime": ""}}


async def _vms_json(gw: Gateway, sess: WebSession) -> list[dict[str, Any]]:
    vms, names = await list_vms(sess)
    details = await vm_details(gw, sess, vms)
    return [_vm_json(gw, sess, vm, names, details.get(vm.uuid)) for vm in vms]


async def get_vms(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    sess = require_session(gw, request)
    vms = await _vms_json(gw, sess)
    rows = join((_row(vm) for vm in vms), "\n")
    empty = Markup("") if vms else fragment("vms_empty.html")
    body = render("vms.html", rows=rows, empty=empty, csrf=sess.csrf,
                  row_template=_row(_BLANK_ROW), message=fragment("message.html"),
                  confirm=fragment("confirm_dialog.html"))
    return html_page(gw, "Virtual machines", body, sess)


async def api_vms(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    sess = gw.session_of(request)
    if sess is None:
        return web.json_response({"error": "signed out"}, status=401)
    return web.json_response(await _vms_json(gw, sess))


async def api_vm(request: web.Request) -> web.StreamResponse:
    """One VM's power state and what can be done with it (the console page asks)."""
    gw = request.app[GATEWAY]
    sess = gw.session_of(request)
    if sess is None:
        return web.json_response({"error": "signed out"}, status=401)
    try:
        vm = await sess.xapi.find_vm(request.match_info["uuid"])
    except NotFoundError:
        return web.json_response({"error": "No such VM is visible to you."}, status=404)
    return web.json_response({"uuid": vm.uuid, "name": vm.name_label,
                              "power_state": vm.power_state, "consoles": _consoles(vm),
                              "actions": actions_for(vm.power_state)})


async def get_thumbnail(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    sess = gw.session_of(request)
    uuid = request.match_info["uuid"]
    if sess is None or gw.thumbnails is None or uuid not in sess.visible_vms:
        raise web.HTTPNotFound()
    gw.thumbnails.request(sess.user, uuid, sess.xapi)
    shot = gw.thumbnails.get(sess.user, uuid)
    if shot is None:
        raise web.HTTPNotFound(text="no thumbnail yet")
    return web.Response(body=shot.png, content_type="image/png",
                        headers={"Cache-Control": "no-store"})
