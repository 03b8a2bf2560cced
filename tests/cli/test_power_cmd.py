"""The power commands as a user runs them (subprocess) against the simulated host, the
states checked with the official XenAPI SDK: every action from every state it is allowed
in, wrong states, ``--no-wait``, ``--timeout``, a read-only user, the console's hint."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simproc import SimProcess, sim_with_inventory
from xcpconsole.cli import power_cmd
from xcpconsole.xapi.power import DEFAULT_TIMEOUT, POWER_ACTIONS

XCPCONSOLE = Path(sys.executable).parent / "xcpconsole"
VIEWER = ("auditor", "look-only-1")
INVENTORY = f"""
[host]
hostname = "xcp-power-cli"
[[vm]]
name_label = "box"
power_state = "Running"
hvm = false
backend = "vncterm"
consoles = ["rfb"]
[[vm]]
name_label = "slow"
power_state = "Running"
hvm = false
backend = "none"
other_config = {{ sim_shutdown_seconds = "120" }}
[[users]]
name = "{VIEWER[0]}"
password = "{VIEWER[1]}"
role = "read-only"
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    with sim_with_inventory(tmp_path_factory.mktemp("power-cli"), INVENTORY) as started:
        yield started


def cli(sim: SimProcess, tmp_path: Path, *args: str, user: tuple[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    name, password = user or (sim.user, sim.password)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCP")}
    env.update(XCP_HOST=sim.url, XCP_USER=name, XCP_PASSWORD=password,
               XCP_FINGERPRINT=sim.fingerprint, HOME=str(tmp_path),
               XCPCONSOLE_KNOWN_HOSTS=str(tmp_path / "known_hosts"),
               XCPCONSOLE_CONFIG=str(tmp_path / "config.toml"))
    return subprocess.run([str(XCPCONSOLE), *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


class Host:
    """The official SDK's view of one VM, and a way to put it in any state."""

    def __init__(self, sim: SimProcess, name: str) -> None:
        self.s: Any = sim.session()
        self.vm: str = self.s.xenapi.VM.get_by_name_label(name)[0]

    @property
    def state(self) -> str:
        return str(self.s.xenapi.VM.get_power_state(self.vm))

    def record(self) -> dict[str, Any]:
        return dict(self.s.xenapi.VM.get_record(self.vm))

    def bring(self, state: str) -> None:
        api = self.s.xenapi.VM
        if self.state != "Halted":
            api.hard_shutdown(self.vm)
        if state in ("Running", "Suspended"):
            api.start(self.vm, False, False)
        if state == "Paused":
            api.start(self.vm, True, False)
        if state == "Suspended":
            api.suspend(self.vm)
        assert self.state == state

    def close(self) -> None:
        self.s.xenapi.session.logout()


@pytest.fixture
def box(sim: SimProcess) -> Iterator[Host]:
    host = Host(sim, "box")
    try:
        yield host
    finally:
        host.bring("Running")
        host.close()


@pytest.fixture
def slow(sim: SimProcess) -> Iterator[Host]:
    host = Host(sim, "slow")
    try:
        yield host
    finally:
        host.bring("Running")  # a hard shutdown ends the guest's slow one
        host.close()


#: (command line, the state before): every action from every state it is allowed in
TRANSITIONS = [
    (("start",), "Halted"),
    (("shutdown",), "Running"),
    (("shutdown", "--force"), "Running"),
    (("shutdown", "--force"), "Paused"),
    (("shutdown", "--force"), "Suspended"),
    (("reboot",), "Running"),
    (("reboot", "--force"), "Running"),
    (("reboot", "--force"), "Paused"),
    (("suspend",), "Running"),
    (("resume",), "Suspended"),
    (("pause",), "Running"),
    (("unpause",), "Paused"),
]


def test_the_commands_are_the_librarys() -> None:
    assert list(power_cmd.ACTIONS) == list(POWER_ACTIONS)
    assert set(power_cmd.FORCEABLE) == {n for n, a in POWER_ACTIONS.items() if a.hard}
    assert power_cmd.DEFAULT_TIMEOUT == DEFAULT_TIMEOUT
    allowed = {(args, state) for args, state in TRANSITIONS}
    for name, action in POWER_ACTIONS.items():
        for forced, call in ((False, action.clean), (True, action.hard)):
            for state in call.allowed if call else ():
                assert ((name, "--force") if forced else (name,), state) in allowed


@pytest.mark.parametrize(("args", "before"), TRANSITIONS,
                         ids=[" ".join(a) + f" from {s}" for a, s in TRANSITIONS])
def test_each_action_reaches_its_state(sim: SimProcess, box: Host, tmp_path: Path,
                                       args: tuple[str, ...], before: str) -> None:
    box.bring(before)
    domid = box.record()["domid"]
    action = POWER_ACTIONS[args[0]]
    out = cli(sim, tmp_path, *args, "box")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert lines[0] == f"xcpconsole: {action.doing} box ({before.lower()} -> " \
                       f"{action.target.lower()})"
    assert lines[-1].startswith(f"xcpconsole: box is {action.target.lower()} (")
    assert box.state == action.target
    if args[0] == "reboot":
        assert box.record()["domid"] != domid  # a new domain
    if action.target == "Running":
        assert len(box.record()["consoles"]) == 1


@pytest.mark.parametrize(("args", "state", "message"), [
    (("start",), "Paused", "cannot start VM 'box': it is paused: xcpconsole unpause box"),
    (("start",), "Suspended",
     "cannot start VM 'box': it is suspended: xcpconsole resume box"),
    (("start",), "Running", "VM 'box' is already running"),
    (("shutdown",), "Paused",
     "cannot shutdown VM 'box': it is paused: xcpconsole shutdown --force box"),
    (("shutdown", "--force"), "Halted", "VM 'box' is already halted"),
    (("reboot",), "Halted", "cannot reboot VM 'box': it is halted: xcpconsole start box"),
    (("suspend",), "Paused",
     "cannot suspend VM 'box': it is paused: xcpconsole unpause box first"),
    (("resume",), "Halted", "cannot resume VM 'box': it is halted: xcpconsole start box"),
    (("pause",), "Suspended",
     "cannot pause VM 'box': it is suspended: xcpconsole resume box first"),
    (("unpause",), "Running", "VM 'box' is already running"),
])
def test_wrong_state_is_one_line(sim: SimProcess, box: Host, tmp_path: Path,
                                 args: tuple[str, ...], state: str, message: str) -> None:
    box.bring(state)
    out = cli(sim, tmp_path, *args, "box")
    assert out.returncode == 1
    assert out.stderr == f"xcpconsole: error: {message}\n"
    assert box.state == state


def test_no_wait_returns_while_the_guest_shuts_down(sim: SimProcess, slow: Host,
                                                    tmp_path: Path) -> None:
    out = cli(sim, tmp_path, "shutdown", "--no-wait", "slow")
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines()[-1] == \
        "xcpconsole: shutting down slow: asked the host; not waiting"
    assert slow.state == "Running"  # the guest takes 120 s: nobody waited for it
    pending = [r for r in slow.s.xenapi.task.get_all_records().values()
               if r["name_label"] == "Async.VM.clean_shutdown" and r["status"] == "pending"]
    assert len(pending) == 1


def test_timeout_is_one_line_and_exit_1(sim: SimProcess, slow: Host, tmp_path: Path) -> None:
    started = time.monotonic()
    out = cli(sim, tmp_path, "shutdown", "--timeout", "1.5", "slow")
    assert time.monotonic() - started < 60  # a bound against hangs, not a measurement
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == (
        "xcpconsole: error: VM 'slow' did not become halted within 1.5 s (it is running); "
        "the host carries on with the shutdown")
    assert "Traceback" not in out.stderr
    assert slow.state == "Running"


@pytest.mark.parametrize("args", [("shutdown", "box"), ("pause", "box"),
                                  ("reboot", "--no-wait", "box")])
def test_read_only_user_gets_exit_3(sim: SimProcess, box: Host, tmp_path: Path,
                                    args: tuple[str, ...]) -> None:
    out = cli(sim, tmp_path, *args, user=VIEWER)
    assert out.returncode == 3, out.stderr
    last = out.stderr.splitlines()[-1]
    assert last.startswith("xcpconsole: error: permission denied for VM.")
    assert "Traceback" not in out.stderr
    assert box.state == "Running"


@pytest.mark.parametrize(("state", "hint"), [("Halted", "xcpconsole start box"),
                                             ("Paused", "xcpconsole unpause box"),
                                             ("Suspended", "xcpconsole resume box")])
def test_console_of_a_vm_not_running_names_our_command(sim: SimProcess, box: Host,
                                                       tmp_path: Path, state: str,
                                                       hint: str) -> None:
    box.bring(state)
    out = cli(sim, tmp_path, "proxy", "box", "--listen", "127.0.0.1:0", "--once")
    assert out.returncode == 1
    assert out.stderr == (f"xcpconsole: error: VM 'box' is {state.lower()}: its console works "
                          f"only while it runs ({hint})\n")


def test_usage_errors(sim: SimProcess, tmp_path: Path) -> None:
    out = cli(sim, tmp_path, "start", "--force", "box")
    assert out.returncode == 2 and "--force" in out.stderr
    out = cli(sim, tmp_path, "pause", "--timeout", "0", "box")
    assert out.returncode == 2
    assert out.stderr == ("xcpconsole: error: --timeout must be a positive number of "
                          "seconds, not 0\n")
    out = cli(sim, tmp_path, "start", "no-such-vm")
    assert out.returncode == 1 and "no VM named 'no-such-vm'" in out.stderr
