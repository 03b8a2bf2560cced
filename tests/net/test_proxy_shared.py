"""TigerVNC's vncviewer (exclusive by default) through ``xcpconsole proxy`` to the sim's QEMU,
alongside our own clients on their own tunnels.

QEMU runs with xenopsd's options (``share=allow-exclusive``): a viewer whose ClientInit
says exclusive disconnects every other client, and a shared client arriving while an
exclusive one is connected is dropped right after its ClientInit.  The proxy's default
makes the viewer's session shared, so the others keep working; with ``--exclusive`` the
same steps drop them, which proves the rewrite is what keeps them, and their error says
why it probably happened.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xcpconsole.errors import NetworkError
from xcpconsole.net.tunnel import open_tunnel
from xcpconsole.net.vnc import VncClient, open_vnc
from xcpconsole.settings import HostSettings
from xcpconsole.xapi import XapiSession

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peers"))
from peerutil import free_tcp_port, load_png, need, stop, wait_for_socket
from test_real_clients import xvfb  # noqa: F401 - a fixture

pytestmark = pytest.mark.peers

BIN = Path(sys.executable).parent
HVM = "win-hvm"
EXCLUSIVE_HINT = "another viewer may have taken the console exclusively"
REWRITTEN = "the viewer asked for an exclusive session; made it shared"


def cli_env(sim: Any, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCP")}
    env.update(XCP_HOST=sim.url, XCP_USER=sim.user, XCP_PASSWORD=sim.password,
               XCP_FINGERPRINT=sim.fingerprint, XCPCONSOLE_KNOWN_HOSTS=str(tmp_path / "kh"),
               XCPCONSOLE_CONFIG="/nonexistent/xcpconsole.toml")
    return env


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts (the proxy, the viewer), stopped after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in reversed(started):
        stop(proc)


def start_proxy(started: list[subprocess.Popen[bytes]], env: dict[str, str], log: Path,
                *extra: str) -> int:
    """``xcpconsole proxy win-hvm [extra]`` on a free port."""
    port = free_tcp_port()
    with log.open("wb") as fh:
        proc = subprocess.Popen([str(BIN / "xcpconsole"), "proxy", HVM, "--listen",
                                 f"127.0.0.1:{port}", *extra], env=env, stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    started.append(proc)
    wait_for_socket(("127.0.0.1", port), proc=proc, log=log)
    return port


def start_viewer(started: list[subprocess.Popen[bytes]], log: Path, port: int,
                 display: dict[str, str]) -> subprocess.Popen[bytes]:
    """TigerVNC's viewer with its defaults: no -Shared, so its ClientInit says exclusive."""
    with log.open("wb") as fh:
        proc = subprocess.Popen([need("vncviewer"), "-geometry", "+0+0", "-RemoteResize=0",
                                 "-FullScreen=0", f"127.0.0.1::{port}"], env=display,
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    started.append(proc)
    return proc


async def wait_for_text(path: Path, text: str, proc: subprocess.Popen[bytes] | None = None,
                        timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode}: {path.read_text(errors='replace')}")
        if loop.time() > deadline:
            pytest.fail(f"{text!r} not in {path.name}: {path.read_text(errors='replace')}")
        await asyncio.sleep(0.1)


async def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "xcpconsole"), *args, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


async def open_early(xapi: XapiSession) -> VncClient:
    """Our client on its own tunnel (no proxy), watching before the viewer comes."""
    console = await xapi.find_console(HVM)
    return await open_vnc(await open_tunnel(xapi, console, timeout=10), timeout=10)


async def viewer_beside(early: VncClient, started: list[subprocess.Popen[bytes]],
                        env: dict[str, str], tmp_path: Path, display: dict[str, str],
                        *proxy_args: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Start the proxy and the viewer while ``early`` watches; return once QEMU has the
    viewer's ClientInit: (viewer, viewer's log, proxy's log)."""
    await early.screenshot()
    proxy_log, log = tmp_path / "proxy.log", tmp_path / "viewer.log"
    port = start_proxy(started, env, proxy_log, *proxy_args)
    proc = start_viewer(started, log, port, display)
    # TigerVNC logs its pixel format once ServerInit arrived, i.e. after QEMU took its
    # ClientInit (and, for an exclusive one, disconnected the others)
    await wait_for_text(log, "pixel format", proc)
    await asyncio.sleep(1.0)  # a dropped client's EOF crosses the sim and the tunnel
    return proc, log, proxy_log


def settings_of(sim: Any, tmp_path: Path) -> HostSettings:
    return HostSettings(url=sim.url, user=sim.user, password=sim.password,
                        fingerprint=sim.fingerprint, known_hosts=tmp_path / "kh")


async def test_shared_by_default_other_clients_keep_working(
        sim_host: Any, tmp_path: Path, processes: list[subprocess.Popen[bytes]],
        xvfb: dict[str, str]) -> None:  # noqa: F811
    env = cli_env(sim_host, tmp_path)
    async with (await XapiSession.login(settings_of(sim_host, tmp_path)) as xapi,
                await open_early(xapi) as early):
        viewer, viewer_log, proxy_log = await viewer_beside(early, processes, env, tmp_path,
                                                            xvfb)
        await wait_for_text(proxy_log, REWRITTEN)  # the viewer did ask for exclusive
        frame = await early.screenshot()  # the client watching before still works
        assert frame.shape[:2] == (early.height, early.width)
        code, err = await cli(env, "screenshot", HVM, str(tmp_path / "late.png"))
        assert code == 0, err  # so does one arriving while the viewer is connected
        assert load_png(tmp_path / "late.png").shape == frame.shape
        await early.screenshot()
        assert viewer.poll() is None, viewer_log.read_text()  # and the viewer itself


async def test_with_exclusive_the_viewer_drops_the_others(
        sim_host: Any, tmp_path: Path, processes: list[subprocess.Popen[bytes]],
        xvfb: dict[str, str]) -> None:  # noqa: F811
    env = cli_env(sim_host, tmp_path)
    async with await XapiSession.login(settings_of(sim_host, tmp_path)) as xapi:
        async with await open_early(xapi) as early:
            viewer, viewer_log, proxy_log = await viewer_beside(
                early, processes, env, tmp_path, xvfb, "--exclusive")
            with pytest.raises(NetworkError) as dropped:
                await early.screenshot()
            assert EXCLUSIVE_HINT in str(dropped.value), dropped.value
            assert "-Shared" in str(dropped.value)
        code, err = await cli(env, "screenshot", HVM, str(tmp_path / "late.png"))
        assert code != 0
        assert f"the VNC server closed the connection ({EXCLUSIVE_HINT}" in err, err
        assert not (tmp_path / "late.png").exists()
        assert viewer.poll() is None, viewer_log.read_text()
    assert REWRITTEN not in proxy_log.read_text()
