"""``xcpconsole attach`` on the PV VM's vt100 console: boot log in, typing echoed, Ctrl-] out."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

from xcpconsole.net.attach import attach
from xcpconsole.settings import HostSettings
from xcpconsole.xapi import XapiSession

XCPCONSOLE = Path(sys.executable).parent / "xcpconsole"


class OutputWatcher:
    """Collects a pipe's bytes in a thread; ``wait_for`` blocks until a marker shows up."""

    def __init__(self, stream: io.BufferedReader) -> None:
        self.data = bytearray()
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: io.BufferedReader) -> None:
        while chunk := stream.read1(65536):
            with self.cond:
                self.data += chunk
                self.cond.notify_all()

    def wait_for(self, marker: bytes, start: int = 0, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        with self.cond:
            while (at := self.data.find(marker, start)) < 0:
                left = deadline - time.monotonic()
                assert left > 0, f"{marker!r} never came; got {bytes(self.data[-400:])!r}"
                self.cond.wait(left)
        return at + len(marker)


def test_attach_sees_boot_log_and_echo(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCP")}
    env.update(XCP_HOST=sim_host.url, XCP_PASSWORD=sim_host.password,
               XCP_FINGERPRINT=sim_host.fingerprint,
               XCPCONSOLE_KNOWN_HOSTS=str(tmp_path / "kh"))
    proc = subprocess.Popen([str(XCPCONSOLE), "attach", "alpine-pv-text"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        out = OutputWatcher(proc.stdout)  # type: ignore[arg-type]
        pos = out.wait_for(b"Welcome to")
        pos = out.wait_for(b"login:", pos)
        proc.stdin.write(b"typed-by-test-42\r")
        proc.stdin.flush()
        out.wait_for(b"typed-by-test-42", pos)
        proc.stdin.write(b"\x1d")
        proc.stdin.flush()
        assert proc.wait(30) == 0
        err = proc.stderr.read() if proc.stderr else b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"detached" in err
    assert b"OpaqueRef" not in bytes(out.data) + err


async def test_terminal_restored_after_raw_mode(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    settings = HostSettings(url=sim_host.url, user=sim_host.user, password=sim_host.password,
                            fingerprint=sim_host.fingerprint, known_hosts=tmp_path / "kh")
    sink = io.BytesIO()
    seen_raw: list[bool] = []
    try:
        async with await XapiSession.login(settings) as xapi:
            console = await xapi.find_console("alpine-pv-text", "vt100")
            with os.fdopen(slave, "rb", buffering=0, closefd=False) as tty_in:
                task = asyncio.ensure_future(attach(xapi, console, stdin=tty_in, stdout=sink))
                for _ in range(200):
                    if sink.getvalue():
                        break
                    await asyncio.sleep(0.05)
                mode = termios.tcgetattr(slave)
                seen_raw.append(not mode[3] & termios.ICANON and not mode[3] & termios.ECHO)
                os.write(master, b"\x03\x1d")  # Ctrl-C goes to the VM; Ctrl-] detaches
                assert await asyncio.wait_for(task, 20) == "detached"
        assert termios.tcgetattr(slave) == before
        assert seen_raw == [True]
        assert b"login:" in sink.getvalue() or b"Welcome" in sink.getvalue()
    finally:
        os.close(master)
        os.close(slave)


def test_attach_follows_the_vm_through_reboot_and_restart(start_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The host closes the console on a reboot and on a shutdown; attach says so, waits,
    and reconnects to the new console (new refs after a start), all in one run."""
    import XenAPI

    sim = start_sim()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCP")}
    env.update(XCP_HOST=sim.url, XCP_PASSWORD=sim.password, XCP_FINGERPRINT=sim.fingerprint,
               XCPCONSOLE_KNOWN_HOSTS=str(tmp_path / "kh"))
    proc = subprocess.Popen([str(XCPCONSOLE), "attach", "alpine-pv-text"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sdk = XenAPI.Session(sim.url, ignore_ssl=True)
    sdk.xenapi.login_with_password(sim.user, sim.password, "1.0", "test")
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        out = OutputWatcher(proc.stdout)  # type: ignore[arg-type]
        err = OutputWatcher(proc.stderr)  # type: ignore[arg-type]
        pos = out.wait_for(b"login:")
        vm = sdk.xenapi.VM.get_by_name_label("alpine-pv-text")[0]
        old_consoles = set(sdk.xenapi.VM.get_consoles(vm))
        sdk.xenapi.VM.clean_reboot(vm)
        epos = err.wait_for(b"waiting for it")
        epos = err.wait_for(b"reconnecting to alpine-pv-text", epos)
        pos = out.wait_for(b"login:", pos)  # the guest's screen after the reconnect
        sdk.xenapi.VM.clean_shutdown(vm)
        epos = err.wait_for(b"waiting for it", epos)
        time.sleep(1.5)  # halted for a while: attach keeps waiting
        assert proc.poll() is None
        sdk.xenapi.VM.start(vm, False, False)
        err.wait_for(b"reconnecting to alpine-pv-text", epos)
        assert not old_consoles & set(sdk.xenapi.VM.get_consoles(vm))  # new records
        pos = out.wait_for(b"login:", pos)
        proc.stdin.write(b"after-restart-7\r")
        proc.stdin.flush()
        out.wait_for(b"after-restart-7", pos)
        proc.stdin.write(b"\x1d")
        proc.stdin.flush()
        assert proc.wait(30) == 0
        assert b"detached" in bytes(err.data)
        assert b"OpaqueRef" not in bytes(out.data) + bytes(err.data)
    finally:
        sdk.xenapi.session.logout()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_attach_says_why_the_idle_timeout_cut_it_and_reconnects(start_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A quiet ``attach`` sends the host no byte, so its idle monitor (which only an RFB
    parse error switches off) cuts it after ``vm_console_idle_timeout``: attach says so,
    reconnects, and what is typed afterwards reaches the guest."""
    from xcpconsole.sim import inventory as sim_inventory

    text = Path(sim_inventory.__file__).with_name("default_inventory.toml").read_text()
    inv = tmp_path / "inventory.toml"
    inv.write_text(text.replace("[pool]\n", "[pool]\nvm_console_idle_timeout = 2\n", 1))
    assert "vm_console_idle_timeout = 2" in inv.read_text()
    sim = start_sim("--inventory", str(inv))
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCP")}
    env.update(XCP_HOST=sim.url, XCP_PASSWORD=sim.password, XCP_FINGERPRINT=sim.fingerprint,
               XCPCONSOLE_KNOWN_HOSTS=str(tmp_path / "kh"))
    proc = subprocess.Popen([str(XCPCONSOLE), "attach", "alpine-pv-text"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        out = OutputWatcher(proc.stdout)  # type: ignore[arg-type]
        err = OutputWatcher(proc.stderr)  # type: ignore[arg-type]
        pos = out.wait_for(b"login:")
        epos = err.wait_for(b"after 2 s without typing (the pool's vm_console_idle_timeout)")
        err.wait_for(b"reconnecting to alpine-pv-text", epos)
        proc.stdin.write(b"still-here\r")
        proc.stdin.flush()
        out.wait_for(b"still-here", pos)
        proc.stdin.write(b"\x1d")
        proc.stdin.flush()
        assert proc.wait(30) == 0
        assert b"a reboot, a shutdown" not in bytes(err.data)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
