"""The simulator's pure parts, without sockets: inventory, model rules, RPC shapes."""

from __future__ import annotations

import json
import xmlrpc.client
from pathlib import Path

import pytest

from xcpconsole.errors import ConfigError, XapiError
from xcpconsole.sim.http import internal_error, unauthorised
from xcpconsole.sim.inventory import build_model, load_inventory
from xcpconsole.sim.model import VM
from xcpconsole.sim.xapi import XenApiDispatcher


class _NoBackends:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def vm_starting(self, vm: VM) -> None:
        self.calls.append(("start", vm.name_label))

    async def vm_stopped(self, vm: VM) -> None:
        self.calls.append(("stop", vm.name_label))

    async def vm_rebooting(self, vm: VM) -> None:
        self.calls.append(("reboot", vm.name_label))


def _model():  # type: ignore[no-untyped-def]
    return build_model(load_inventory(None), user="root", password="pw",
                       address="127.0.0.1", port=4443)


def test_default_inventory_shape() -> None:
    m = _model()
    vms = {vm.name_label: vm for vm in m.vms.values()}
    dom0 = [vm for vm in m.vms.values() if vm.is_control_domain]
    assert len(dom0) == 1 and m.host.control_domain == dom0[0].ref
    assert vms["win-hvm"].backend == "qemu" and vms["debian-pv"].backend == "vncterm"
    assert sorted(m.consoles[c].protocol for c in vms["alpine-pv-text"].consoles) == [
        "rfb", "vt100",
    ]
    assert vms["centos-halted"].consoles == []
    for ref, console in m.consoles.items():
        assert console.location == f"https://127.0.0.1:4443/console?ref={ref}"


def test_inventory_errors(tmp_path: Path) -> None:
    bad = tmp_path / "inv.toml"
    bad.write_text('[[vm]]\nname_label = "x"\nbackend = "vmware"\n')
    with pytest.raises(ConfigError, match="backend"):
        build_model(load_inventory(bad), user="u", password="p", address="a", port=1)
    bad.write_text('[[vm]]\nname_label = "x"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match="colour"):
        build_model(load_inventory(bad), user="u", password="p", address="a", port=1)
    bad.write_text("not = [toml")
    with pytest.raises(ConfigError):
        load_inventory(bad)


def test_uuid_location_style(tmp_path: Path) -> None:
    inv = tmp_path / "inv.toml"
    inv.write_text('[pool]\nconsole_location = "uuid"\n[[vm]]\nname_label = "a"\n'
                   'power_state = "Running"\n')
    m = build_model(load_inventory(inv), user="u", password="p", address="10.0.0.1", port=443)
    for console in m.consoles.values():
        assert console.location == f"https://10.0.0.1/console?uuid={console.uuid}"


async def test_xmlrpc_wire_shapes() -> None:
    m = _model()
    power = _NoBackends()
    rpc = XenApiDispatcher(m, power)

    async def call(method: str, *params: object) -> dict:
        body = xmlrpc.client.dumps(params, method, allow_none=True).encode()
        (reply,), _ = xmlrpc.client.loads(await rpc.handle_xmlrpc(body))
        return reply

    login = await call("session.login_with_password", "root", "pw")
    assert login["Status"] == "Success"
    sid = login["Value"]
    assert (await call("session.login_with_password", "root", "no"))["ErrorDescription"] == [
        "SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure",
    ]
    vm = (await call("VM.get_by_name_label", sid, "centos-halted"))["Value"][0]
    assert (await call("VM.get_VCPUs_max", sid, vm))["Value"] == "1"
    assert (await call("VM.start", sid, vm, False, False)) == {"Status": "Success", "Value": ""}
    assert power.calls == [("start", "centos-halted")]
    assert (await call("VM.get_power_state", sid, vm))["Value"] == "Running"
    assert len((await call("VM.get_consoles", sid, vm))["Value"]) == 1
    dom0 = m.host.control_domain
    refused = await call("VM.clean_shutdown", sid, dom0)
    assert refused["ErrorDescription"][0] == "OPERATION_NOT_ALLOWED"
    assert (await call("VM.get_snapshot_time", sid, vm))["Value"] == xmlrpc.client.DateTime(
        "19700101T00:00:00Z"
    )
    assert (await call("session.logout", sid))["Status"] == "Success"
    assert (await call("VM.get_all", sid))["ErrorDescription"] == ["SESSION_INVALID", sid]


async def test_jsonrpc_ids_and_errors() -> None:
    rpc = XenApiDispatcher(_model(), _NoBackends())
    reply = json.loads(await rpc.handle_jsonrpc(json.dumps(
        {"jsonrpc": "2.0", "method": "nope.nothing", "params": [], "id": "a"}
    ).encode()))
    assert reply == {"jsonrpc": "2.0", "error": {
        "code": 1, "message": "MESSAGE_METHOD_UNKNOWN", "data": ["nope.nothing"]}, "id": "a"}


def test_model_rejects_bad_transitions() -> None:
    m = _model()
    template = next(vm for vm in m.vms.values() if vm.is_a_template)
    with pytest.raises(XapiError) as info:
        m.check_start(template)
    assert info.value.code == "VM_IS_TEMPLATE"


def test_error_pages_match_xapi() -> None:
    assert unauthorised("connect_console", version="1.0").startswith(
        b"HTTP/1.0 401 Unauthorised\r\nContent-Length: 96\r\nContent-Type: text/html\r\n"
        b"Connection: close\r\nCache-Control: no-cache, no-store\r\n"
        b'WWW-Authenticate: Basic realm="connect_console"\r\n\r\n<html><body>'
    )
    page = internal_error("Console.Failure", version="1.1")
    assert page.endswith(b"<h1> Additional information </h1>Console.Failure</body></html>")


async def test_backend_set_calls_the_virtual_terminal_contract(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """BackendSet builds VirtualTerminal(vm_name=, hostname=, run_dir=, boot_script=)."""
    import sys
    import types

    from xcpconsole.sim.server import BackendSet

    made: list[dict] = []

    class FakeTerminal:
        def __init__(self, **kwargs: object) -> None:
            made.append(kwargs)
            self.started = False

        async def start(self) -> None:
            self.started = True

        async def stop(self) -> None:
            self.started = False

        def socket_for(self, protocol: str) -> Path:
            return tmp_path / f"{protocol}.sock"

    fake = types.ModuleType("xcpconsole.sim.vncterm")
    fake.VirtualTerminal = FakeTerminal  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "xcpconsole.sim.vncterm", fake)
    m = _model()
    backends = BackendSet(m, tmp_path / "run")
    vm = next(vm for vm in m.vms.values() if vm.name_label == "alpine-pv-text")
    await backends.start(vm)
    assert made == [{"vm_name": "alpine-pv-text", "hostname": "xcp-sim",
                     "run_dir": tmp_path / "run" / vm.uuid[:8], "boot_script": "alpine"}]
    assert backends.socket_for(vm.ref, "vt100") == tmp_path / "vt100.sock"
    await backends.vm_stopped(vm)
    assert backends.socket_for(vm.ref, "vt100") is None
