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
