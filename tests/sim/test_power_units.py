"""The simulator's power rules without sockets: suspend / resume / pause / unpause, the
``Async.VM.*`` tasks, the guest's shutdown time and the errors, through the dispatcher."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from xcpconsole.errors import XapiError
from xcpconsole.sim import power as sim_power
from xcpconsole.sim.inventory import build_model, load_inventory
from xcpconsole.sim.model import ALLOWED_POWER_STATES, NULL_REF, VM, SimModel
from xcpconsole.sim.xapi import XenApiDispatcher

INVENTORY = """
[host]
hostname = "xcp-units"
[[vm]]
name_label = "pv"
power_state = "Running"
hvm = false
backend = "none"
consoles = ["rfb", "vt100"]
[[vm]]
name_label = "slow"
power_state = "Running"
hvm = false
backend = "none"
other_config = { sim_shutdown_seconds = "30" }
[[vm]]
name_label = "off"
power_state = "Halted"
backend = "none"
[[users]]
name = "viewer"
password = "viewer-pw"
role = "read-only"
"""


class Backends:
    """Records what the dispatcher asks of the console backends."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def vm_starting(self, vm: VM) -> None:
        self.calls.append(("start", vm.name_label))

    async def vm_stopped(self, vm: VM) -> None:
        self.calls.append(("stop", vm.name_label))

    async def vm_rebooting(self, vm: VM) -> None:
        self.calls.append(("reboot", vm.name_label))


def setup(tmp_path: Path) -> tuple[SimModel, XenApiDispatcher, Backends, str]:
    inv = tmp_path / "inv.toml"
    inv.write_text(INVENTORY)
    model = build_model(load_inventory(inv), user="root", password="pw",
                        address="127.0.0.1", port=4443)
    backends = Backends()
    return model, XenApiDispatcher(model, backends), backends, model.login("root", "pw")


def ref_of(model: SimModel, name: str) -> str:
    return next(vm.ref for vm in model.vms.values() if vm.name_label == name)


async def failure(call: Any) -> list[str]:
    with pytest.raises(XapiError) as caught:
        await call
    return [caught.value.code, *caught.value.params]


async def wait_task(d: XenApiDispatcher, sid: str, task: str) -> dict[str, Any]:
    for _ in range(400):  # a bound against hangs (20 s), never asserted on
        record: dict[str, Any] = await d.call("task.get_record", [sid, task])
        if record["status"] != "pending":
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task} still pending")


def test_allowed_states_are_xapis() -> None:
    # Xapi_vm_lifecycle.allowed_power_states, in its order
    assert ALLOWED_POWER_STATES == {
        "start": ("Halted",), "clean_shutdown": ("Running",),
        "hard_shutdown": ("Paused", "Suspended", "Running"), "clean_reboot": ("Running",),
        "hard_reboot": ("Paused", "Running"), "suspend": ("Running",),
        "resume": ("Suspended",), "pause": ("Running",), "unpause": ("Paused",),
    }


async def test_pause_keeps_the_domain_suspend_drops_it(tmp_path: Path) -> None:
    m, d, backends, sid = setup(tmp_path)
    vm = m.vm(ref_of(m, "pv"))
    consoles, domid, host = list(vm.consoles), vm.domid, vm.resident_on
    assert "suspend" in vm.allowed_operations() and "pause" in vm.allowed_operations()

    await d.call("VM.pause", [sid, vm.ref])
    assert (vm.power_state, vm.consoles, vm.domid, vm.resident_on) == (
        "Paused", consoles, domid, host)
    assert vm.allowed_operations() == ["unpause", "hard_shutdown", "hard_reboot"]
    await d.call("VM.unpause", [sid, vm.ref])
    assert (vm.power_state, vm.consoles, vm.domid) == ("Running", consoles, domid)
    assert backends.calls == []  # the domain never went away

    await d.call("VM.suspend", [sid, vm.ref])
    assert (vm.power_state, vm.consoles, vm.domid, vm.resident_on) == (
        "Suspended", [], -1, NULL_REF)
    assert not set(consoles) & set(m.consoles)
    assert vm.ref not in m.resident_vms(host)
    assert backends.calls == [("stop", "pv")]

    await d.call("VM.resume", [sid, vm.ref, False, False])
    assert vm.power_state == "Running" and vm.resident_on == host
    assert len(vm.consoles) == 2 and not set(vm.consoles) & set(consoles)  # new records
    assert vm.domid not in (-1, domid)
    assert backends.calls == [("stop", "pv"), ("start", "pv")]

    await d.call("VM.suspend", [sid, vm.ref])
    await d.call("VM.resume", [sid, vm.ref, True, False])  # start_paused
    assert vm.power_state == "Paused" and len(vm.consoles) == 2


async def test_wrong_states_name_every_allowed_state(tmp_path: Path) -> None:
    m, d, _, sid = setup(tmp_path)
    off = ref_of(m, "off")
    cases = {
        "VM.hard_shutdown": ["paused, suspended, running", "halted"],
        "VM.hard_reboot": ["paused, running", "halted"],
        "VM.suspend": ["running", "halted"], "VM.pause": ["running", "halted"],
        "VM.unpause": ["paused", "halted"], "VM.clean_shutdown": ["running", "halted"],
    }
    for method, tail in cases.items():
        assert await failure(d.call(method, [sid, off])) == ["VM_BAD_POWER_STATE", off, *tail]
    assert await failure(d.call("VM.resume", [sid, off, False, False])) == [
        "VM_BAD_POWER_STATE", off, "suspended", "halted"]
    pv = ref_of(m, "pv")
    assert await failure(d.call("VM.unpause", [sid, pv])) == [
        "VM_BAD_POWER_STATE", pv, "paused", "running"]
    dom0 = m.host.control_domain
    assert await failure(d.call("VM.suspend", [sid, dom0])) == [
        "OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0"]
    assert await failure(d.call("VM.pause", [sid])) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.pause", "2", "1"]
    assert await failure(d.call("Async.VM.resume", [sid, off])) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.resume", "4", "2"]


async def test_hard_shutdown_of_a_suspended_vm(tmp_path: Path) -> None:
    m, d, _, sid = setup(tmp_path)
    vm = m.vm(ref_of(m, "pv"))
    await d.call("VM.suspend", [sid, vm.ref])
    await d.call("VM.hard_shutdown", [sid, vm.ref])
    assert (vm.power_state, vm.consoles, vm.resident_on) == ("Halted", [], NULL_REF)
    await d.call("VM.start", [sid, vm.ref, False, False])
    await d.call("VM.pause", [sid, vm.ref])
    await d.call("VM.hard_reboot", [sid, vm.ref])
    assert vm.power_state == "Running"


async def test_async_calls_run_in_tasks(tmp_path: Path) -> None:
    m, d, _, sid = setup(tmp_path)
    pv = ref_of(m, "pv")
    task = await d.call("Async.VM.pause", [sid, pv])
    assert task.startswith("OpaqueRef:") and task in await d.call("task.get_all", [sid])
    record = await wait_task(d, sid, task)
    assert {k: record[k] for k in ("name_label", "status", "progress", "result",
                                   "error_info", "resident_on")} == {
        "name_label": "Async.VM.pause", "status": "success", "progress": 1.0, "result": "",
        "error_info": [], "resident_on": m.master.ref}
    assert str(record["finished"]) >= str(record["created"]) > "1970"
    assert m.vm(pv).power_state == "Paused"
    assert await d.call("task.get_by_uuid", [sid, record["uuid"]]) == task
    assert await d.call("task.get_status", [sid, task]) == "success"
    assert await d.call("task.get_by_name_label", [sid, "Async.VM.pause"]) == [task]

    again = await d.call("Async.VM.pause", [sid, pv])  # a wrong state fails the task
    failed = await wait_task(d, sid, again)
    assert failed["status"] == "failure"
    assert failed["error_info"] == ["VM_BAD_POWER_STATE", pv, "running", "paused"]

    await d.call("task.destroy", [sid, task])
    assert task not in await d.call("task.get_all", [sid])
    assert await failure(d.call("task.get_record", [sid, task])) == [
        "HANDLE_INVALID", "task", task]
    assert await failure(d.call("task.get_by_uuid", [sid, "nope"])) == [
        "UUID_INVALID", "task", "nope"]
    assert await failure(d.call("Async.VM.frobnicate", [sid, pv])) == [
        "MESSAGE_METHOD_UNKNOWN", "Async.VM.frobnicate"]


async def test_rbac_of_an_async_call_is_checked_in_its_task(tmp_path: Path) -> None:
    m, d, _, _ = setup(tmp_path)
    viewer = m.login("viewer", "viewer-pw")
    pv = ref_of(m, "pv")
    for call in ("pause", "suspend"):
        assert (await failure(d.call(f"VM.{call}", [viewer, pv])))[:2] == [
            "RBAC_PERMISSION_DENIED", f"vm.{call}"]
    task = await d.call("Async.VM.clean_shutdown", [viewer, pv])  # accepted at once
    record = await wait_task(d, viewer, task)
    assert record["status"] == "failure"
    assert record["error_info"] == [
        "RBAC_PERMISSION_DENIED", "vm.clean_shutdown",
        "No permission in user session. (Roles with this permission: pool-admin, "
        "pool-operator, vm-power-admin, vm-admin, vm-operator)"]
    assert m.vm(pv).power_state == "Running"


async def test_a_slow_guest_and_a_hard_shutdown_meanwhile(tmp_path: Path) -> None:
    m, d, _, sid = setup(tmp_path)
    slow = ref_of(m, "slow")
    task = await d.call("Async.VM.clean_shutdown", [sid, slow])
    for _ in range(400):  # until the guest is visibly on its way down (bounded)
        if (await d.call("task.get_progress", [sid, task])) > 0:
            break
        await asyncio.sleep(0.05)
    record = await d.call("task.get_record", [sid, task])
    assert record["status"] == "pending" and 0 < record["progress"] < 1
    assert m.vm(slow).power_state == "Running"
    await d.call("VM.hard_shutdown", [sid, slow])  # does not wait for the guest
    assert m.vm(slow).power_state == "Halted"
    ended = await wait_task(d, sid, task)
    assert ended["status"] == "cancelled" and ended["error_info"] == ["TASK_CANCELLED", task]
    assert m.vm(slow).power_state == "Halted"

    again = await d.call("Async.VM.clean_shutdown", [sid, slow])  # halted: refused at once
    assert (await wait_task(d, sid, again))["error_info"][0] == "VM_BAD_POWER_STATE"
    await d.call("VM.start", [sid, slow, False, False])
    task = await d.call("Async.VM.clean_reboot", [sid, slow])
    for _ in range(400):  # until the guest is on its way (bounded)
        if (await d.call("task.get_progress", [sid, task])) > 0:
            break
        await asyncio.sleep(0.05)
    await d.call("VM.hard_shutdown", [sid, slow])  # and at once a new domain: the old
    await d.call("VM.start", [sid, slow, False, False])  # clean reboot must not touch it
    assert (await wait_task(d, sid, task))["status"] == "cancelled"
    assert m.vm(slow).power_state == "Running"


def test_finished_tasks_are_forgotten_beyond_the_bound(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    m, d, _, sid = setup(tmp_path)
    monkeypatch.setattr(sim_power, "MAX_TASKS", 3)
    pv = ref_of(m, "pv")

    async def run() -> list[str]:
        refs = []
        for call in ("pause", "unpause", "pause", "unpause"):
            refs.append(await d.call(f"Async.VM.{call}", [sid, pv]))
            await wait_task(d, sid, refs[-1])
        return refs

    refs = asyncio.run(run())
    assert list(m.tasks) == refs[1:]
