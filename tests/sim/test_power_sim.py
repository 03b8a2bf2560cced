"""Pause, suspend and their async forms on the real simulator, through the official SDK and
``/console``: a paused VM keeps its console records (refused while paused), a suspended
one loses them and its backend, and resume brings new ones that answer."""

from __future__ import annotations

import time
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from simproc import SimProcess, sim_with_inventory

from .conftest import read_exactly, tls_connect

OK_REPLY = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"
INVENTORY = """
[host]
hostname = "xcp-power"
[[vm]]
name_label = "pv-a"
power_state = "Running"
hvm = false
backend = "vncterm"
consoles = ["rfb"]
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    with sim_with_inventory(tmp_path_factory.mktemp("power-sim"), INVENTORY) as started:
        yield started


def console_head(sim: SimProcess, ref: str, sid: str) -> bytes:
    """The first bytes of a ``/console`` tunnel: reply head and the RFB greeting, if any."""
    with tls_connect(sim.port) as sock:
        sock.sendall(f"CONNECT /console?ref={ref}&session_id={sid} HTTP/1.0\r\n\r\n".encode())
        return read_exactly(sock, len(OK_REPLY) + 12)


def wait_task(s: Any, task: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30  # a bound against hangs, never asserted on
    while time.monotonic() < deadline:
        record: dict[str, Any] = s.xenapi.task.get_record(task)
        if record["status"] != "pending":
            return record
        time.sleep(0.05)
    raise AssertionError("the task stayed pending")


def test_pause_keeps_consoles_that_answer_only_while_running(sim: SimProcess) -> None:
    s = sim.session()
    sid = s._session
    vm = s.xenapi.VM.get_by_name_label("pv-a")[0]
    try:
        [console] = s.xenapi.VM.get_consoles(vm)
        s.xenapi.VM.pause(vm)
        assert s.xenapi.VM.get_power_state(vm) == "Paused"
        assert s.xenapi.VM.get_consoles(vm) == [console]
        assert console_head(sim, console, sid).startswith(b"HTTP/1.0 500 Internal Error")
        with pytest.raises(XenAPI.Failure) as caught:
            s.xenapi.VM.suspend(vm)
        assert caught.value.details == ["VM_BAD_POWER_STATE", vm, "running", "paused"]
        s.xenapi.VM.unpause(vm)
        assert console_head(sim, console, sid) == OK_REPLY + b"RFB 003.003\n"
    finally:
        if s.xenapi.VM.get_power_state(vm) == "Paused":
            s.xenapi.VM.unpause(vm)
        s.xenapi.session.logout()


def test_suspend_and_resume_in_tasks(sim: SimProcess) -> None:
    s = sim.session()
    sid = s._session
    vm = s.xenapi.VM.get_by_name_label("pv-a")[0]
    try:
        [before] = s.xenapi.VM.get_consoles(vm)
        task = s.xenapi.Async.VM.suspend(vm)
        record = wait_task(s, task)
        assert record["status"] == "success" and record["name_label"] == "Async.VM.suspend"
        assert record["progress"] == 1.0 and isinstance(record["progress"], float)
        assert isinstance(record["created"], xmlrpc.client.DateTime)
        s.xenapi.task.destroy(task)
        assert s.xenapi.VM.get_power_state(vm) == "Suspended"
        assert s.xenapi.VM.get_consoles(vm) == []
        assert s.xenapi.VM.get_resident_on(vm) == "OpaqueRef:NULL"
        assert console_head(sim, before, sid).startswith(b"HTTP/1.0 500 Internal Error")
        assert console_head(sim, vm, sid).startswith(b"HTTP/1.0 500 Internal Error")

        task = s.xenapi.Async.VM.resume(vm, False, False)
        assert wait_task(s, task)["status"] == "success"
        assert s.xenapi.VM.get_power_state(vm) == "Running"
        [after] = s.xenapi.VM.get_consoles(vm)
        assert after != before  # a new domain, new console records
        assert console_head(sim, after, sid) == OK_REPLY + b"RFB 003.003\n"

        failed = wait_task(s, s.xenapi.Async.VM.resume(vm, False, False))
        assert failed["status"] == "failure"
        assert failed["error_info"] == ["VM_BAD_POWER_STATE", vm, "suspended", "running"]
    finally:
        state = s.xenapi.VM.get_power_state(vm)
        if state == "Suspended":
            s.xenapi.VM.resume(vm, False, False)
        s.xenapi.session.logout()


def test_tasks_over_json_rpc(sim: SimProcess) -> None:
    import json
    import ssl
    import urllib.request

    def rpc(method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params),
                           "id": 1}).encode()
        req = urllib.request.Request(sim.url + "/jsonrpc", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ssl._create_unverified_context(),
                                    timeout=30) as resp:
            return json.loads(resp.read())

    sid = rpc("session.login_with_password", sim.user, sim.password, "2.21", "t")["result"]
    vm = rpc("VM.get_by_name_label", sid, "pv-a")["result"][0]
    task = rpc("Async.VM.pause", sid, vm)["result"]
    deadline = time.monotonic() + 30
    while (status := rpc("task.get_status", sid, task)["result"]) == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status == "success"
    assert rpc("task.get_progress", sid, task)["result"] == 1.0
    assert rpc("VM.get_power_state", sid, vm)["result"] == "Paused"
    rpc("VM.unpause", sid, vm)
    rpc("session.logout", sid)
