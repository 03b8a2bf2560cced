"""TigerVNC's vncviewer (exclusive unless -Shared) beside a browser console (issue 10, item 2).

Both go to the sim's QEMU, which runs with the host's ``share=allow-exclusive``.  Through
``xcpconsole proxy`` (shared by default) the browser console must stay connected; with
``proxy --exclusive`` QEMU drops it, the page says why it probably happened, and it
reconnects by itself once the exclusive viewer has gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .test_browser import QEMU_VM, open_console, wait_canvas_not_blank
from .test_idle_browser import STATES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peers"))
from peerutil import free_tcp_port, need, stop, wait_for_socket
from test_real_clients import xvfb  # noqa: F401 - a fixture

from .test_browser import page  # noqa: F401 - a fixture

pytestmark = pytest.mark.peers

XCPCONSOLE = Path(sys.executable).parent / "xcpconsole"



def wait_for_text(path: Path, text: str, proc: subprocess.Popen[bytes],
                  timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode}: {path.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} not in {path.name}: {path.read_text(errors='replace')}")
        time.sleep(0.1)


@pytest.fixture
def viewer(sim_host: Any, tmp_path: Path,
           xvfb: dict[str, str]) -> Iterator[Any]:  # noqa: F811
    """start(*proxy_args) runs ``xcpconsole proxy win-hvm`` and TigerVNC's viewer (its
    defaults: exclusive) through it, returning once QEMU has the viewer's ClientInit."""
    started: list[subprocess.Popen[bytes]] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCP")}
    env.update(XCP_HOST=sim_host.url, XCP_USER=sim_host.user, XCP_PASSWORD=sim_host.password,
               XCP_FINGERPRINT=sim_host.fingerprint,
               XCPCONSOLE_KNOWN_HOSTS=str(tmp_path / "kh"),
               XCPCONSOLE_CONFIG="/nonexistent/xcpconsole.toml")

    def start(*proxy_args: str) -> tuple[Path, Path]:
        port = free_tcp_port()
        proxy_log, viewer_log = tmp_path / "proxy.log", tmp_path / "viewer.log"
        with proxy_log.open("wb") as fh:
            proxy = subprocess.Popen([str(XCPCONSOLE), "proxy", QEMU_VM, "--listen",
                                      f"127.0.0.1:{port}", *proxy_args], env=env, stdout=fh,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        started.append(proxy)
        wait_for_socket(("127.0.0.1", port), proc=proxy, log=proxy_log)
        with viewer_log.open("wb") as fh:
            proc = subprocess.Popen([need("vncviewer"), "-geometry", "+0+0", "-RemoteResize=0",
                                     "-FullScreen=0", f"127.0.0.1::{port}"], env=xvfb,
                                    stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        started.append(proc)
        # TigerVNC logs its pixel format once ServerInit arrived: QEMU took its ClientInit
        wait_for_text(viewer_log, "pixel format", proc)
        return proxy_log, viewer_log

    def stop_all() -> None:
        for proc in reversed(started):
            stop(proc)
        started.clear()

    start.stop_all = stop_all  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        stop_all()


def test_browser_console_stays_connected_beside_the_viewer(
        page: Any, gateway: Any, viewer: Any) -> None:  # noqa: F811
    open_console(page, gateway.url, QEMU_VM, "rfb")
    wait_canvas_not_blank(page)
    page.evaluate(STATES)
    proxy_log, _ = viewer()
    assert "asked for an exclusive session; made it shared" in proxy_log.read_text()
    page.wait_for_timeout(3000)  # QEMU would have dropped the page at once
    assert page.get_attribute("#console", "data-state") == "connected"
    assert page.evaluate("window.xcpStates") == []  # not even a brief reconnect
    wait_canvas_not_blank(page)


def test_exclusive_viewer_drops_the_page_which_says_why_and_comes_back(
        page: Any, gateway: Any, viewer: Any) -> None:  # noqa: F811
    open_console(page, gateway.url, QEMU_VM, "rfb")
    wait_canvas_not_blank(page)
    viewer("--exclusive")
    page.wait_for_selector('#console[data-state="reconnecting"]')
    status = page.inner_text("#status")
    assert "exclusive" in status, status
    viewer.stop_all()  # the exclusive viewer goes: the page reconnects by itself
    page.wait_for_selector('#console[data-state="connected"]', timeout=40_000)
    wait_canvas_not_blank(page)
