"""The simulator never leaves QEMU behind: not on SIGTERM, not when killed."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (the sim's unique state dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline and b"qemu-system" in cmdline:
            found.append(int(entry.name))
    return found


def _wait_gone(text: str, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _processes_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_sim_json_and_sigterm_leaves_no_qemu(start_sim) -> None:  # type: ignore[no-untyped-def]
    sim = start_sim()
    info_path = sim.state_dir / "sim.json"
    assert stat.S_IMODE(info_path.stat().st_mode) == 0o600
    info = json.loads(info_path.read_text())
    assert set(info) >= {"url", "port", "fingerprint", "user", "password", "pid"}
    assert info["url"] == f"https://127.0.0.1:{info['port']}"
    assert len(info["fingerprint"].split(":")) == 32
    qemus = _processes_mentioning(str(sim.state_dir))
    assert qemus, "the HVM guest's QEMU should be running"
    assert sim.stop() == 0
    assert _wait_gone(str(sim.state_dir)) == []
    assert not info_path.exists()


def test_killed_sim_takes_qemu_along(start_sim) -> None:  # type: ignore[no-untyped-def]
    sim = start_sim()
    assert _processes_mentioning(str(sim.state_dir))
    os.kill(sim.pid, signal.SIGKILL)
    sim.proc.wait(30)
    assert _wait_gone(str(sim.state_dir)) == []


def test_fingerprint_survives_restart(start_sim) -> None:  # type: ignore[no-untyped-def]
    first = start_sim()
    first.stop()
    again = start_sim(state_dir=first.state_dir)
    assert again.fingerprint == first.fingerprint
