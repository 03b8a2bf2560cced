"""Power actions of the web pages (``POST /vms/{uuid}/power/{action}``), the console token's
permanent and temporary errors, ``/api/vms`` details and our HTML 404 page: over HTTP,
against the in-process fake host, and a read-only user refused by the simulated host."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from simproc import launch_sim
from xcpconsole.errors import NotFoundError, XapiError
from xcpconsole.sim import inventory as sim_inventory
from xcpconsole.web.app import create_app
from xcpconsole.web.config import GatewayConfig
from xcpconsole.web.gateway import GATEWAY
from xcpconsole.web.views.power import ACTIONS, actions_for

from .conftest import GatewayProcess, launch_gateway
from .fakes import HOST_SETTINGS, VMS, FakeHost, FakeVm, FakeXapi
from .test_gateway import Clock, Gw

VM, HALTED_VM = VMS
VM_REF = "OpaqueRef:vm-1"


#: what each call leads to (the test's own account of xapi, not the code's table)
LEADS_TO = {"VM.start": "Running", "VM.clean_shutdown": "Halted", "VM.hard_shutdown": "Halted",
            "VM.clean_reboot": "Running", "VM.hard_reboot": "Running",
            "VM.suspend": "Suspended", "VM.resume": "Running", "VM.pause": "Paused",
            "VM.unpause": "Running"}


class FakePowerHost:
    """A host answering the power calls of one FakeXapi: ``Async.`` calls, their task,
    the VMs' power states (``fail``: the task fails with that error_info)."""

    def __init__(self, xapi: FakeXapi) -> None:
        self.states = {vm.uuid: vm.power_state for vm in VMS}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: list[str] | None = None
        self.raise_now: Exception | None = None
        self.records: dict[str, Any] = {}
        xapi.call = self.call  # type: ignore[method-assign]
        xapi.find_vm = self.find_vm  # type: ignore[method-assign, assignment]

    def uuid_of(self, ref: str) -> str:
        return next(vm.uuid for vm in VMS if vm.ref == ref)

    async def find_vm(self, name_or_uuid: str) -> FakeVm:
        self.calls.append(("find_vm", (name_or_uuid,)))
        for vm in VMS:
            if name_or_uuid in (vm.uuid, vm.name_label):
                return replace(vm, power_state=self.states[vm.uuid])
        raise NotFoundError(f"no VM {name_or_uuid}")

    async def call(self, method: str, *args: Any) -> Any:
        self.calls.append((method, args))
        if method.startswith("Async."):
            if self.raise_now is not None:
                raise self.raise_now
            if self.fail is None:
                self.states[self.uuid_of(args[0])] = LEADS_TO[method.removeprefix("Async.")]
            return "OpaqueRef:task-1"
        if method == "task.get_record":
            if self.fail is not None:
                return {"status": "failure", "error_info": self.fail, "progress": 1.0}
            return {"status": "success", "progress": 1.0}
        if method == "VM.get_power_state":
            return self.states[self.uuid_of(args[0])]
        if method.endswith(".get_all_records"):
            return self.records.get(method, {})
        return ""


@pytest.fixture
async def gw() -> AsyncIterator[Gw]:
    host, clock = FakeHost(), Clock()
    app = create_app(GatewayConfig(host_settings=HOST_SETTINGS), host.backend(), clock=clock)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Gw(client, host, clock)
    finally:
        await client.close()


async def signed_in(gw: Gw) -> tuple[FakePowerHost, str]:
    await gw.login()
    host = FakePowerHost(gw.host.sessions[-1])
    csrf = await gw.csrf()
    host.calls.clear()  # the VM list's reads
    return host, csrf


async def test_power_needs_csrf_and_origin(gw: Gw) -> None:
    host, csrf = await signed_in(gw)
    url = f"/vms/{VM.uuid}/power/shutdown"
    no_origin = await gw.client.post(url, headers={"X-CSRF-Token": csrf})
    assert no_origin.status == 403 and "cross-origin" in await no_origin.text()
    foreign = await gw.client.post(url, headers={"X-CSRF-Token": csrf,
                                                 "Origin": "http://evil.test"})
    assert foreign.status == 403
    for token in (None, "", "x", csrf + "x"):
        headers = {"Origin": gw.origin} | ({"X-CSRF-Token": token} if token is not None else {})
        resp = await gw.client.post(url, headers=headers)
        assert resp.status == 403 and (await resp.json())["error"] == "bad CSRF token"
    assert host.calls == []  # nothing reached the host
    ok = await gw.client.post(url, headers={"X-CSRF-Token": csrf, "Origin": gw.origin})
    assert ok.status == 200
    assert await ok.json() == {"ok": True, "action": "shutdown", "power_state": "Halted",
                               "actions": ["start"]}
    assert host.calls[:2] == [("find_vm", (VM.uuid,)), ("Async.VM.clean_shutdown", (VM_REF,))]
    assert host.states[VM.uuid] == "Halted"


async def test_power_signed_out_and_unknown_action(gw: Gw) -> None:
    signed_out = await gw.client.post(f"/vms/{VM.uuid}/power/start",
                                      headers={"Origin": gw.origin, "X-CSRF-Token": "x"})
    assert signed_out.status == 401 and (await signed_out.json())["error"] == "signed out"
    host, csrf = await signed_in(gw)
    headers = {"X-CSRF-Token": csrf, "Origin": gw.origin}
    bogus = await gw.client.post(f"/vms/{VM.uuid}/power/destroy", headers=headers)
    assert bogus.status == 404 and (await bogus.json())["error"] == "no such power action"
    missing = await gw.client.post("/vms/nope/power/start", headers=headers)
    assert missing.status == 404
    assert (await missing.json())["error"] == "No such VM is visible to you."
    assert [m for m, _ in host.calls] == ["find_vm"]


@pytest.mark.parametrize("action", list(ACTIONS))
async def test_each_action_is_one_xenapi_call(gw: Gw, action: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    host, csrf = await signed_in(gw)
    expected = {"start": ("Async.VM.start", (VM_REF, False, False)),
                "resume": ("Async.VM.resume", (VM_REF, False, False)),
                "unpause": ("Async.VM.unpause", (VM_REF,)),
                "shutdown": ("Async.VM.clean_shutdown", (VM_REF,)),
                "reboot": ("Async.VM.clean_reboot", (VM_REF,)),
                "suspend": ("Async.VM.suspend", (VM_REF,)),
                "pause": ("Async.VM.pause", (VM_REF,)),
                "force-shutdown": ("Async.VM.hard_shutdown", (VM_REF,)),
                "force-reboot": ("Async.VM.hard_reboot", (VM_REF,))}
    host.states[VM.uuid] = ACTIONS[action].states[0]
    with caplog.at_level(logging.INFO, logger="xcpconsole.web"):
        resp = await gw.client.post(f"/vms/{VM.uuid}/power/{action}",
                                    headers={"X-CSRF-Token": csrf, "Origin": gw.origin})
    assert resp.status == 200, await resp.text()
    assert host.calls[1] == expected[action]
    state = LEADS_TO[expected[action][0].removeprefix("Async.")]
    body = await resp.json()
    assert body["power_state"] == state and body["actions"] == actions_for(state)
    assert f"alice: power {action} VM {VM.uuid} -> {state}" in caplog.messages


async def test_host_refusals_become_json_messages(gw: Gw,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    host, csrf = await signed_in(gw)
    headers = {"X-CSRF-Token": csrf, "Origin": gw.origin}
    # xapi checks the role inside the task: it fails with RBAC_PERMISSION_DENIED
    host.fail = ["RBAC_PERMISSION_DENIED", "vm.start", "No permission in user session. "
                 "(Roles with this permission: pool-admin, vm-operator)"]
    with caplog.at_level(logging.INFO, logger="xcpconsole.web"):
        denied = await gw.client.post(f"/vms/{HALTED_VM.uuid}/power/start", headers=headers)
    assert denied.status == 403
    body = await denied.json()
    assert body["code"] == "RBAC_PERMISSION_DENIED"
    assert body["error"].startswith("The host refused to start this VM for your account: "
                                    "permission denied for VM.start")
    assert host.states[HALTED_VM.uuid] == "Halted"
    assert any(m.startswith(f"alice: power start VM {HALTED_VM.uuid} -> permission denied")
               for m in caplog.messages)
    # A wrong power state is refused before any call
    host.fail = None
    host.calls.clear()
    bad = await gw.client.post(f"/vms/{VM.uuid}/power/start", headers=headers)
    assert bad.status == 409
    assert await bad.json() == {"error": "Cannot start this VM: it is running (that needs "
                                         "it halted).", "code": "VM_BAD_POWER_STATE"}
    forced = await gw.client.post(f"/vms/{HALTED_VM.uuid}/power/force-reboot", headers=headers)
    assert (await forced.json())["error"] == ("Cannot force reboot this VM: it is halted "
                                              "(that needs it paused or running).")
    assert not [m for m, _ in host.calls if m.startswith("Async.")]
    host.fail = ["OTHER_OPERATION_IN_PROGRESS", "VM", VM_REF]
    busy = await gw.client.post(f"/vms/{VM.uuid}/power/reboot", headers=headers)
    assert busy.status == 409
    body = await busy.json()
    assert body["code"] == "OTHER_OPERATION_IN_PROGRESS"
    assert body["error"] == ("The host refused to reboot VM 'alpha': "
                             "OTHER_OPERATION_IN_PROGRESS VM")
    # The session ran out: the middleware signs the user out; a script's request (the
    # page's fetch) gets 401 and where to sign in again (api.js goes there)
    host.raise_now = XapiError("SESSION_INVALID", ["OpaqueRef:x"])
    gone = await gw.client.post(f"/vms/{VM.uuid}/power/reboot", headers=headers,
                                allow_redirects=False)
    assert gone.status == 401 and (await gone.json())["signin"] == "/login"
    assert (await gw.client.get("/vms", allow_redirects=False)).status == 303  # signed out


async def test_token_errors_say_whether_to_retry(gw: Gw) -> None:
    await gw.login()
    headers = {"X-CSRF-Token": await gw.csrf(), "Origin": gw.origin}
    halted = await gw.client.post(f"/vms/{HALTED_VM.uuid}/console/rfb/token", headers=headers)
    assert halted.status == 409
    body = await halted.json()
    assert body == {"error": "“beta <b>” is halted: its console exists only while it runs.",
                    "permanent": True, "reason": "not-running", "hint": "Start it to use its "
                    "console.", "power_state": "Halted", "actions": ["start"]}
    missing = await gw.client.post("/vms/nope/console/rfb/token", headers=headers)
    assert missing.status == 404
    body = await missing.json()
    assert body["permanent"] is True and body["reason"] == "no-console" and body["hint"]
    # A console the host refused to open: the role (403) is permanent, the rest retried
    sess = next(iter(gw.client.app[GATEWAY].sessions))
    sess.console_errors[(VM.uuid, "rfb")] = (403, "your role may not open its console")
    sess.console_errors[(VM.uuid, "vt100")] = (None, "alice is using this console")
    role = await gw.client.post(f"/vms/{VM.uuid}/console/rfb/token", headers=headers)
    assert role.status == 403 and (await role.json())["permanent"] is True
    assert "VM Operator" in (await role.json())["hint"]
    busy = await gw.client.post(f"/vms/{VM.uuid}/console/vt100/token", headers=headers)
    assert busy.status == 409 and (await busy.json())["permanent"] is False
    again = await gw.client.post(f"/vms/{VM.uuid}/console/vt100/token", headers=headers)
    assert again.status == 200 and "url" in await again.json()


async def test_api_vms_details_actions_and_one_vm(gw: Gw) -> None:
    host, _ = await signed_in(gw)
    started = time.gmtime(time.time() - 3700)
    host.records = {
        "VM.get_all_records": {
            VM_REF: {"uuid": VM.uuid, "power_state": "Running", "memory_static_max": "536870912",
                     "VCPUs_at_startup": "2", "metrics": "OpaqueRef:m1"},
            "OpaqueRef:vm-2": {"uuid": HALTED_VM.uuid, "power_state": "Halted",
                               "memory_static_max": str(3 << 29), "VCPUs_at_startup": "1",
                               "metrics": "OpaqueRef:m2"}},
        "VM_metrics.get_all_records": {
            "OpaqueRef:m1": {"start_time": time.strftime("%Y%m%dT%H:%M:%SZ", started)},
            "OpaqueRef:m2": {"start_time": "19700101T00:00:00Z"}},
    }
    gw.clock.now += 31  # the list read by signed_in() is cached that long
    listed = {vm["uuid"]: vm for vm in await (await gw.client.get("/api/vms")).json()}
    running, halted = listed[VM.uuid], listed[HALTED_VM.uuid]
    assert running["details"] == {"memory": "512 MiB", "vcpus": "2 vCPUs",
                                  "uptime": "up 1 h 1 min"}
    assert running["memory_bytes"] == 512 << 20 and running["vcpu_count"] == 2
    assert halted["details"] == {"memory": "1.5 GiB", "vcpus": "1 vCPU", "uptime": ""}
    assert running["actions"] == ["shutdown", "reboot", "suspend", "pause", "force-shutdown",
                                  "force-reboot"]
    assert halted["actions"] == ["start"] and halted["host"] == ""
    # The records are read again only after a while, or when a power state changed
    reads = [m for m, _ in host.calls].count("VM.get_all_records")
    await gw.client.get("/api/vms")
    assert [m for m, _ in host.calls].count("VM.get_all_records") == reads
    page = await (await gw.client.get("/vms")).text()
    row = page.split(f'data-vm="{VM.uuid}"')[1].split("</tr>")[0]
    assert ('<td class="details"><span class="memory">512 MiB</span> <span class="vcpus">'
            '2 vCPUs</span> <span class="uptime">up 1 h 1 min</span></td>') in row
    assert 'data-action="force-shutdown" data-when="Paused Suspended Running"' in row
    one = await gw.client.get(f"/api/vms/{HALTED_VM.uuid}")
    assert await one.json() == {"uuid": HALTED_VM.uuid, "name": "beta <b>",
                                "power_state": "Halted", "consoles": ["rfb", "vt100"],
                                "actions": ["start"]}
    assert (await gw.client.get("/api/vms/nope")).status == 404


async def test_unknown_urls_get_our_pages(gw: Gw) -> None:
    resp = await gw.client.get("/no/such/<page>")
    assert resp.status == 404 and resp.content_type == "text/html"
    text = await resp.text()
    assert "<h1>Page not found</h1>" in text and '<header class="topbar">' in text
    assert "/no/such/&lt;page&gt;" in text and "<page>" not in text
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    api = await gw.client.get("/api/nothing")
    assert api.status == 404 and (await api.json())["error"].startswith("There is no page")
    wrong = await gw.client.post("/vms", headers={"Origin": gw.origin})
    assert wrong.status == 405 and "Allow" in wrong.headers
    assert (await wrong.json())["error"] == "/vms does not answer that kind of request."
    # signed in, the page has the user box
    await gw.login()
    text = await (await gw.client.get("/nope")).text()
    assert 'id="signout"' in text and "<h1>Page not found</h1>" in text


# -- the host decides: a read-only user against the simulated host ---------------------------

AUDITOR = ("auditor", "look-only-1")


@pytest.fixture(scope="module")
def ro_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("power-roles")
    default = Path(sim_inventory.__file__).with_name("default_inventory.toml").read_text()
    user = f'\n[[users]]\nname = "{AUDITOR[0]}"\npassword = "{AUDITOR[1]}"\nrole = "read-only"\n'
    (tmp / "inventory.toml").write_text(default + user)
    sim = launch_sim(tmp / "state", "--inventory", str(tmp / "inventory.toml"))
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def ro_gateway(ro_sim: Any, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[GatewayProcess]:
    gw = launch_gateway(ro_sim, tmp_path_factory.mktemp("gateway"))
    try:
        yield gw
    finally:
        gw.stop()


def browser_like() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # 127.0.0.1


async def browser_like_sign_in(http: aiohttp.ClientSession, base: str, user: str,
                               password: str) -> str:
    """Sign in like the login form does; the CSRF token of the pages."""
    form = await (await http.get(base + "/login")).text()
    m = re.search(r'name="csrf" value="([^"]+)"', form)
    assert m
    resp = await http.post(base + "/login", data={"username": user, "password": password,
                                                  "csrf": m.group(1)},
                           headers={"Origin": base})
    page = await resp.text()
    assert resp.url.path == "/vms", re.findall(r'id="login-error">[^<]*', page)
    m = re.search(r'data-csrf="([^"]+)"', page)
    assert m
    return m.group(1)


def power_state(sim: Any, name: str) -> str:
    s = sim.session()
    try:
        (ref,) = s.xenapi.VM.get_by_name_label(name)
        return str(s.xenapi.VM.get_power_state(ref))
    finally:
        s.xenapi.session.logout()


@pytest.mark.peers
async def test_read_only_user_refused_by_the_host(ro_sim: Any, ro_gateway: GatewayProcess
                                                  ) -> None:
    base = ro_gateway.url
    s = ro_sim.session()
    try:
        (ref,) = s.xenapi.VM.get_by_name_label("centos-halted")
        uuid = s.xenapi.VM.get_uuid(ref)
    finally:
        s.xenapi.session.logout()
    url = f"{base}/vms/{uuid}/power/start"
    async with browser_like() as http:
        csrf = await browser_like_sign_in(http, base, *AUDITOR)
        resp = await http.post(url, headers={"X-CSRF-Token": csrf, "Origin": base})
        assert resp.status == 403
        body = await resp.json()
        assert body["code"] == "RBAC_PERMISSION_DENIED"
        assert "vm.start" in body["error"] and "vm-operator" in body["error"], body
    assert power_state(ro_sim, "centos-halted") == "Halted"
    async with browser_like() as http:  # the pool-admin may
        csrf = await browser_like_sign_in(http, base, ro_sim.user, ro_sim.password)
        resp = await http.post(url, headers={"X-CSRF-Token": csrf, "Origin": base})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["power_state"] == "Running"
    assert power_state(ro_sim, "centos-halted") == "Running"
    log = ro_gateway.log.read_text()
    assert f"auditor: power start VM {uuid} -> permission denied" in log
    assert f"{ro_sim.user}: power start VM {uuid} -> Running" in log
