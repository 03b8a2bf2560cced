"""RFB commands on VMs of the simulated host, through XenAPI and the /console tunnel.

``debian-pv`` is served by the simulator's virtual terminal (like vncterm) and
``win-hvm`` by a real QEMU, both behind the host's ``CONNECT /console`` relay.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from peerutil import load_png

from xcpconsole.cli.common import HostOptions
from xcpconsole.cli.rfb_cmd import connect

pytestmark = pytest.mark.peers

VT_VM = "debian-pv"
QEMU_VM = "win-hvm"


@pytest.fixture
def host_env(sim_host: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """XCP_* variables naming the simulated host (set for this process and for children)."""
    env = {"XCP_HOST": sim_host.url, "XCP_USER": sim_host.user,
           "XCP_PASSWORD": sim_host.password, "XCP_FINGERPRINT": sim_host.fingerprint}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("XCPCONSOLE_CONFIG", "/nonexistent/xcpconsole.toml")
    return {**os.environ, **env}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "xcpconsole"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60,
                          env=env, stdin=subprocess.DEVNULL)


def _changed_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.flatnonzero((a != b).any(axis=(1, 2)))


async def _wait_change(vnc: Any, before: np.ndarray, tries: int = 50) -> np.ndarray:
    """Screenshots until one differs from ``before`` (the terminal redraws asynchronously)."""
    after = before
    for _ in range(tries):
        after = await vnc.screenshot()
        if not (after == before).all():
            break
        await asyncio.sleep(0.1)
    return after


async def _settled(vnc: Any, tries: int = 100) -> np.ndarray:
    """A screenshot once the screen stopped changing (the scripted boot may still be printing)."""
    shot = await vnc.screenshot()
    for _ in range(tries):
        await asyncio.sleep(0.3)
        again = await vnc.screenshot()
        if (again == shot).all():
            return again
        shot = again
    raise AssertionError("the console never settled")


async def test_type_shows_on_the_prompt_row(host_env: dict[str, str]) -> None:
    async with connect(VT_VM, encodings=None, host=HostOptions()) as vnc:
        before = await _settled(vnc)
        await vnc.type_text("echo xcpconsole-typed")
        after = await _wait_change(vnc, before)
        rows = _changed_rows(before, after)
        assert rows.size > 0, "typing did not change the screen"
        # one text row (plus the cursor) changed, and that row held the prompt before
        assert rows.max() - rows.min() < 40, rows
        band = before[rows.min():rows.max() + 1]
        assert len(np.unique(band.reshape(-1, 3), axis=0)) > 1, "prompt row was blank before"
        await vnc.press("Return")
        after_enter = await _wait_change(vnc, after)
        below = _changed_rows(after, after_enter)
        assert below.size > 0 and below.max() > rows.max(), "Return did not add output lines"


def test_screenshot_cli_through_tunnel(host_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "vt.png"
    r = cli("screenshot", VT_VM, str(out), env=host_env)
    assert r.returncode == 0, r.stderr
    img = load_png(out)
    assert img.shape[0] >= 100 and img.shape[1] >= 100
    assert len(np.unique(img.reshape(-1, 3), axis=0)) >= 2  # text on a background
    assert host_env["XCP_PASSWORD"] not in r.stdout + r.stderr


def test_type_cli_changes_next_screenshot(host_env: dict[str, str], tmp_path: Path) -> None:
    first, second = tmp_path / "1.png", tmp_path / "2.png"
    assert cli("screenshot", VT_VM, str(first), env=host_env).returncode == 0
    r = cli("type", VT_VM, "ls /tmp", "--enter", env=host_env)
    assert r.returncode == 0, r.stderr
    for _ in range(30):
        assert cli("screenshot", VT_VM, str(second), env=host_env).returncode == 0
        if not (load_png(first) == load_png(second)).all():
            break
    assert _changed_rows(load_png(first), load_png(second)).size > 0


def test_info_cli_on_vm(host_env: dict[str, str]) -> None:
    r = cli("info", VT_VM, "--seconds", "0.3", env=host_env)
    assert r.returncode == 0, r.stderr
    assert "Desktop name:" in r.stdout and "Statistics over 0.3 s" in r.stdout


async def test_qemu_vm_through_tunnel(host_env: dict[str, str]) -> None:
    """SeaBIOS text through the tunnel, identical in two encodings."""
    shots = []
    for enc in ("zrle", "hextile"):
        for _ in range(50):  # QEMU may still be booting SeaBIOS when the sim starts
            async with connect(QEMU_VM, encodings=enc, host=HostOptions()) as vnc:
                img = await vnc.screenshot()
            if int((img[:64].max(axis=2) > 64).sum()) > 200:
                break
            await asyncio.sleep(0.2)
        shots.append(img)
    assert int((shots[0][:64].max(axis=2) > 64).sum()) > 200, "no SeaBIOS text"
    diff = np.argwhere((shots[0] != shots[1]).any(axis=2))
    # the blinking VGA cursor may differ: at most one character cell
    assert diff.size == 0 or np.ptp(diff, axis=0).max() < 16, diff[:5]


def test_unknown_vm_is_a_clean_error(host_env: dict[str, str], tmp_path: Path) -> None:
    r = cli("screenshot", "no-such-vm", str(tmp_path / "x.png"), env=host_env)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "no-such-vm" in r.stderr
