"""Stock VNC clients through ``xcpconsole proxy``: TigerVNC's vncviewer and vncdotool.

The viewer runs under Xvfb; a capture of the Xvfb root window must contain the
console pixel for pixel, as ``xcpconsole screenshot`` sees it.  vncdotool's
PNG must equal ours exactly.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from peerutil import free_tcp_port, load_png, need, stop, wait_for_socket

pytestmark = pytest.mark.peers

VT_VM = "debian-pv"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def host_env(sim_host: Any) -> dict[str, str]:
    return {**os.environ, "XCP_HOST": sim_host.url, "XCP_USER": sim_host.user,
            "XCP_PASSWORD": sim_host.password, "XCP_FINGERPRINT": sim_host.fingerprint,
            "XCPCONSOLE_CONFIG": "/nonexistent/xcpconsole.toml"}


@pytest.fixture(scope="module")
def proxy_port(host_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[int]:
    """``xcpconsole proxy debian-pv`` on a free local port (a fresh tunnel per client)."""
    port = free_tcp_port()
    log = tmp_path_factory.mktemp("proxy") / "proxy.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([str(BIN / "xcpconsole"), "proxy", VT_VM, "--listen",
                                 f"127.0.0.1:{port}"], env=host_env, stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_socket(("127.0.0.1", port), proc=proc, log=log)
        yield port
    finally:
        stop(proc)


def screenshot(target: str, path: Path, env: dict[str, str]) -> np.ndarray:
    r = subprocess.run([str(BIN / "xcpconsole"), "screenshot", target, str(path)], env=env,
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return load_png(path)


@pytest.fixture
def xvfb(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An Xvfb 1024x768x24; yields the environment with its DISPLAY."""
    rfd, wfd = os.pipe()
    log = tmp_path / "xvfb.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([need("Xvfb"), "-displayfd", str(wfd), "-screen", "0",
                                 "1024x768x24", "-nolisten", "tcp", "-noreset"],
                                pass_fds=(wfd,), stdout=fh, stderr=subprocess.STDOUT)
    os.close(wfd)
    try:
        ready, _, _ = select.select([rfd], [], [], 20)
        display = os.read(rfd, 64).decode().strip() if ready else ""
        if not display.isdigit():
            pytest.fail(f"Xvfb gave no display number: {log.read_text(errors='replace')}")
        yield {**os.environ, "DISPLAY": f":{display}"}
    finally:
        stop(proc)
        os.close(rfd)


def _find(screen: np.ndarray, console: np.ndarray) -> np.ndarray:
    """The console-sized part of ``screen`` placed where the console's first lit pixel is
    (the viewer decides where in its window the remote desktop goes)."""
    h, w = console.shape[:2]
    lit_console = np.argwhere(console.max(axis=2) > 64)
    lit_screen = np.argwhere(screen.max(axis=2) > 64)
    if lit_console.size == 0 or lit_screen.size == 0:
        return screen[:h, :w]
    dy, dx = lit_screen[0] - lit_console[0]
    dy, dx = max(int(dy), 0), max(int(dx), 0)
    return screen[dy:dy + h, dx:dx + w]


def test_vncdotool_capture_equals_ours(proxy_port: int, host_env: dict[str, str],
                                       tmp_path: Path) -> None:
    ours = screenshot(f"vnc://127.0.0.1:{proxy_port}", tmp_path / "ours.png", host_env)
    direct = screenshot(VT_VM, tmp_path / "direct.png", host_env)
    assert (ours == direct).all()  # through the proxy == straight through the tunnel
    theirs_png = tmp_path / "vncdo.png"
    r = subprocess.run([str(BIN / "vncdo"), "-s", f"127.0.0.1::{proxy_port}", "--nocursor",
                        "capture", str(theirs_png)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    theirs = load_png(theirs_png)
    assert theirs.shape == ours.shape
    assert (theirs == ours).all(), f"{(theirs != ours).any(axis=2).sum()} pixels differ"


def test_tigervnc_viewer_shows_the_console(proxy_port: int, host_env: dict[str, str],
                                           xvfb: dict[str, str], tmp_path: Path) -> None:
    console = screenshot(f"vnc://127.0.0.1:{proxy_port}", tmp_path / "console.png", host_env)
    log = (tmp_path / "viewer.log").open("wb")
    viewer = subprocess.Popen(
        [need("vncviewer"), "-geometry", "+0+0", "-RemoteResize=0",
         "-FullScreen=0", "-AutoSelect=0", "-PreferredEncoding=ZRLE",
         f"127.0.0.1::{proxy_port}"],
        env=xvfb, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        capture = tmp_path / "xvfb.png"
        region = None
        for _ in range(100):
            assert viewer.poll() is None, (tmp_path / "viewer.log").read_text()
            subprocess.run([need("import"), "-window", "root", f"png:{capture}"], env=xvfb,
                           capture_output=True, timeout=30, check=True)
            region = _find(load_png(capture), console)
            if (region == console).all():
                break
            time.sleep(0.2)
        assert region is not None
        assert (region == console).all(), f"{(region != console).any(axis=2).sum()} differ"
    finally:
        stop(viewer)
        log.close()
