"""``xcpconsole.xapi.power``: the one table, the wrong-state messages, and ``change_power``
against the simulated host (and, for what a host rarely does, a scripted session)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from xcpconsole.errors import AuthError, TunnelError, UsageError, XapiError, XcpConsoleError
from xcpconsole.settings import HostSettings
from xcpconsole.xapi import VmInfo, XapiSession
from xcpconsole.xapi.power import (
    POWER_ACTIONS,
    change_power,
    way_to,
    wrong_state_message,
)

STATES = ("Halted", "Running", "Paused", "Suspended")

#: (action, state) -> the message, for every state the action is not allowed in
WRONG = {
    ("start", "Running"): "VM 'v' is already running",
    ("start", "Paused"): "cannot start VM 'v': it is paused: xcpconsole unpause v",
    ("start", "Suspended"): "cannot start VM 'v': it is suspended: xcpconsole resume v",
    ("shutdown", "Halted"): "VM 'v' is already halted",
    ("shutdown", "Paused"): "cannot shutdown VM 'v': it is paused: xcpconsole shutdown --force v",
    ("shutdown", "Suspended"):
        "cannot shutdown VM 'v': it is suspended: xcpconsole shutdown --force v",
    ("reboot", "Halted"): "cannot reboot VM 'v': it is halted: xcpconsole start v",
    ("reboot", "Paused"): "cannot reboot VM 'v': it is paused: xcpconsole reboot --force v",
    ("reboot", "Suspended"): "cannot reboot VM 'v': it is suspended: xcpconsole resume v",
    ("suspend", "Halted"): "cannot suspend VM 'v': it is halted: xcpconsole start v first",
    ("suspend", "Paused"): "cannot suspend VM 'v': it is paused: xcpconsole unpause v first",
    ("suspend", "Suspended"): "VM 'v' is already suspended",
    ("resume", "Halted"): "cannot resume VM 'v': it is halted: xcpconsole start v",
    ("resume", "Running"): "VM 'v' is already running",
    ("resume", "Paused"): "cannot resume VM 'v': it is paused: xcpconsole unpause v",
    ("pause", "Halted"): "cannot pause VM 'v': it is halted: xcpconsole start v first",
    ("pause", "Paused"): "VM 'v' is already paused",
    ("pause", "Suspended"): "cannot pause VM 'v': it is suspended: xcpconsole resume v first",
    ("unpause", "Halted"): "cannot unpause VM 'v': it is halted: xcpconsole start v",
    ("unpause", "Running"): "VM 'v' is already running",
    ("unpause", "Suspended"): "cannot unpause VM 'v': it is suspended: xcpconsole resume v",
}


def test_the_table_is_xapis() -> None:
    table = {name: (a.clean.method, a.clean.allowed, a.clean.args, a.target,
                    (a.hard.method, a.hard.allowed) if a.hard else None)
             for name, a in POWER_ACTIONS.items()}
    assert table == {
        "start": ("VM.start", ("Halted",), (False, False), "Running", None),
        "shutdown": ("VM.clean_shutdown", ("Running",), (), "Halted",
                     ("VM.hard_shutdown", ("Paused", "Suspended", "Running"))),
        "reboot": ("VM.clean_reboot", ("Running",), (), "Running",
                   ("VM.hard_reboot", ("Paused", "Running"))),
        "suspend": ("VM.suspend", ("Running",), (), "Suspended", None),
        "resume": ("VM.resume", ("Suspended",), (False, False), "Running", None),
        "pause": ("VM.pause", ("Running",), (), "Paused", None),
        "unpause": ("VM.unpause", ("Paused",), (), "Running", None),
    }


def test_every_wrong_state_names_what_works() -> None:
    wrong = {(name, state) for name, a in POWER_ACTIONS.items() for state in STATES
             if state not in a.clean.allowed}
    assert wrong == set(WRONG)
    for (action, state), text in WRONG.items():
        assert wrong_state_message(action, state, "v") == text
    assert wrong_state_message("start", "Paused", "my vm") == (
        "cannot start VM 'my vm': it is paused: xcpconsole unpause 'my vm'")


def test_way_to_running() -> None:
    assert way_to("Running", "Halted", "x") == "xcpconsole start x"
    assert way_to("Running", "Paused", "x") == "xcpconsole unpause x"
    assert way_to("Running", "Suspended", "x") == "xcpconsole resume x"
    assert way_to("Halted", "Paused", "x") == "xcpconsole shutdown --force x"
    assert way_to("Paused", "Halted", "x") is None


def settings_of(sim: Any, tmp_path: Path) -> HostSettings:
    return HostSettings(url=sim.url, user=sim.user, password=sim.password,
                        fingerprint=sim.fingerprint, known_hosts=tmp_path / "known_hosts")


async def test_change_power_on_the_simulator(sim_host: Any, tmp_path: Path) -> None:
    said: list[str] = []
    async with await XapiSession.login(settings_of(sim_host, tmp_path)) as xapi:
        result = await change_power(xapi, "debian-pv", "suspend", progress=said.append)
        assert (result.action, result.power_state) == ("suspend", "Suspended")
        assert result.vm.name_label == "debian-pv" and result.seconds >= 0
        assert said[0] == "suspending debian-pv (running -> suspended)"
        assert said[-1].startswith("debian-pv is suspended (")
        with pytest.raises(TunnelError) as caught:
            await xapi.find_console("debian-pv")
        assert str(caught.value) == ("VM 'debian-pv' is suspended: its console works only "
                                     "while it runs (xcpconsole resume debian-pv)")
        with pytest.raises(XapiError) as wrong:
            await change_power(xapi, "debian-pv", "start")
        assert wrong.value.code == "VM_BAD_POWER_STATE"
        assert str(wrong.value) == ("cannot start VM 'debian-pv': it is suspended: "
                                    "xcpconsole resume debian-pv")
        vm = await xapi.find_vm("debian-pv")
        back = await change_power(xapi, vm, "resume", wait=False)
        assert back.power_state is None
        for _ in range(200):  # the host finishes it on its own (bounded)
            if (await xapi.find_vm("debian-pv")).power_state == "Running":
                break
            await asyncio.sleep(0.05)
        assert (await xapi.find_vm("debian-pv")).power_state == "Running"
        with pytest.raises(TunnelError, match=r"\(xcpconsole start centos-halted\)"):
            await xapi.find_console("centos-halted")
        with pytest.raises(UsageError, match="--force applies to shutdown and reboot"):
            await change_power(xapi, "debian-pv", "pause", force=True)
        with pytest.raises(UsageError, match="unknown power action"):
            await change_power(xapi, "debian-pv", "destroy")
        with pytest.raises(UsageError, match="positive"):
            await change_power(xapi, "debian-pv", "pause", timeout=0)


class ScriptedSession:
    """A session whose host answers from a script: what real hosts do rarely."""

    session_id = "OpaqueRef:s"

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def call(self, method: str, *args: Any) -> Any:
        self.calls.append(method)
        answer = self.answers[method]
        if callable(answer):
            answer = answer()
        if isinstance(answer, BaseException):
            raise answer
        return answer


VM = VmInfo(ref="OpaqueRef:vm", uuid="u-1", name_label="web", power_state="Running")


def task_script(*records: dict[str, Any]) -> Any:
    queue = list(records)
    return lambda: queue.pop(0) if len(queue) > 1 else queue[0]


async def test_task_progress_and_failures() -> None:
    said: list[str] = []
    host = ScriptedSession({
        "Async.VM.clean_shutdown": "OpaqueRef:t",
        "task.get_record": task_script(
            {"status": "pending", "progress": 0.05}, {"status": "pending", "progress": 0.35},
            {"status": "pending", "progress": 0.37}, {"status": "success", "progress": 1.0}),
        "task.destroy": "", "VM.get_power_state": "Halted"})
    result = await change_power(host, VM, "shutdown", progress=said.append,  # type: ignore[arg-type]
                                poll_interval=0.01)
    assert result.power_state == "Halted"
    assert said[1:-1] == ["web: 30%"]
    assert host.calls.count("task.destroy") == 1

    rbac = ["RBAC_PERMISSION_DENIED", "vm.clean_shutdown", "No permission in user session."]
    host = ScriptedSession({"Async.VM.clean_shutdown": "OpaqueRef:t", "task.destroy": "",
                            "task.get_record": {"status": "failure", "error_info": rbac}})
    with pytest.raises(AuthError, match=r"permission denied for VM\.clean_shutdown"):
        await change_power(host, VM, "shutdown", poll_interval=0.01)  # type: ignore[arg-type]

    raced = ["VM_BAD_POWER_STATE", VM.ref, "running", "paused"]  # it changed meanwhile
    host = ScriptedSession({"Async.VM.clean_shutdown": "OpaqueRef:t", "task.destroy": "",
                            "task.get_record": {"status": "failure", "error_info": raced}})
    with pytest.raises(XapiError) as caught:
        await change_power(host, VM, "shutdown", poll_interval=0.01)  # type: ignore[arg-type]
    assert str(caught.value) == "cannot shutdown VM 'web': it is paused: " \
                                "xcpconsole shutdown --force web"

    host = ScriptedSession({"Async.VM.clean_shutdown": "OpaqueRef:t", "task.destroy": "",
                            "task.get_record": {"status": "cancelled"}})
    with pytest.raises(XcpConsoleError, match="cancelled on the host"):
        await change_power(host, VM, "shutdown", poll_interval=0.01)  # type: ignore[arg-type]

    refused = XapiError("OPERATION_NOT_ALLOWED", ["This operation is not allowed on dom0"])
    host = ScriptedSession({"Async.VM.pause": refused})
    with pytest.raises(XapiError, match="the host refused to pause VM 'web': "
                                        "OPERATION_NOT_ALLOWED This operation is not allowed"):
        await change_power(host, VM, "pause")  # type: ignore[arg-type]


async def test_a_host_without_async_gets_the_plain_call() -> None:
    host = ScriptedSession({
        "Async.VM.pause": XapiError("MESSAGE_METHOD_UNKNOWN", ["Async.VM.pause"]),
        "VM.pause": "", "VM.get_power_state": "Paused"})
    result = await change_power(host, VM, "pause")  # type: ignore[arg-type]
    assert result.power_state == "Paused"
    assert host.calls == ["Async.VM.pause", "VM.pause", "VM.get_power_state"]


async def test_the_timeout_bounds_the_whole_wait() -> None:
    host = ScriptedSession({"Async.VM.clean_shutdown": "OpaqueRef:t",
                            "task.get_record": {"status": "pending", "progress": 0.1},
                            "VM.get_power_state": "Running"})
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(XcpConsoleError) as caught:
        await change_power(host, VM, "shutdown", timeout=0.3,  # type: ignore[arg-type]
                           poll_interval=0.01)
    assert loop.time() - started < 5  # a bound, not a measurement
    assert str(caught.value) == ("VM 'web' did not become halted within 0.3 s (it is running);"
                                 " the host carries on with the shutdown")
    assert "task.destroy" not in host.calls  # still the host's to finish


async def test_no_wait_checks_the_role_first() -> None:
    host = ScriptedSession({"session.get_record": {
        "is_local_superuser": False, "auth_user_name": "ro", "rbac_permissions": []}})
    with pytest.raises(AuthError, match=r"the role of user ro lacks vm\.clean_reboot"):
        await change_power(host, VM, "reboot", wait=False)  # type: ignore[arg-type]
    assert host.calls == ["session.get_record"]
    host = ScriptedSession({"session.get_record": {
        "is_local_superuser": False, "rbac_permissions": ["vm.clean_reboot"]},
        "Async.VM.clean_reboot": "OpaqueRef:t"})
    assert (await change_power(host, VM, "reboot", wait=False)  # type: ignore[arg-type]
            ).power_state is None
