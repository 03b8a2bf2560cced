"""The seed's chain, with real tools, against the running simulator.

    vncdotool -> relay (CONNECT /console, strip the HTTP head) -> socat (unwraps TLS)
              -> simulated host (HTTPS, /console) -> virtual terminal / QEMU

exactly as the seed did it by hand: ``socat TCP4-LISTEN:<port>,fork,reuseaddr
OPENSSL:127.0.0.1:<simport>,verify=0``, a session from the official XenAPI SDK,
refs from ``VM.get_all_records`` / ``console.get_all_records``.  The captures
are checked pixel by pixel: the virtual terminal's prompt row against glyphs
read from the font file, QEMU's SeaBIOS screen against the project's own client
through the same chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xcpconsole.net.vnc import open_vnc

from .textshot import expected_row, load_png, rows_matching

pytestmark = pytest.mark.peers

IO_TIMEOUT = 30.0  # a bound against hangs, never asserted on
MAX_HEAD = 16384
PROMPT_ROW = 18  # where the "linux" boot log leaves the login prompt
VNCDOTOOL = Path(sys.executable).parent / "vncdotool"
OK_HEAD = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + IO_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"socat exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"socat does not listen on {port}")


@pytest.fixture(scope="module")
def socat_port(sim_host: Any) -> Iterator[int]:
    """socat unwrapping the simulator's TLS, exactly as in the seed."""
    exe = shutil.which("socat")
    if exe is None:
        pytest.fail("socat is not installed (Debian package socat)")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, f"TCP4-LISTEN:{port},fork,reuseaddr",
         f"OPENSSL:127.0.0.1:{sim_host.port},verify=0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        _wait_listening(port, proc)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # socat and its forked children
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class ConsoleRelay:
    """Listens on 127.0.0.1; for each client, connects to socat, sends the CONNECT
    request, reads the reply head up to the blank line, then copies bytes both ways."""

    def __init__(self, upstream_port: int, ref: str, session: str) -> None:
        self._upstream = upstream_port
        self._request = f"CONNECT /console?ref={ref}&session_id={session} HTTP/1.0\r\n\r\n"
        self.heads: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = [self._listener]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            self._spawn(self._serve, client)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self, client: socket.socket) -> None:
        up = socket.create_connection(("127.0.0.1", self._upstream), timeout=IO_TIMEOUT)
        self._sockets.append(up)
        up.sendall(self._request.encode())
        buf = b""
        while b"\r\n\r\n" not in buf and len(buf) < MAX_HEAD:
            chunk = up.recv(4096)
            if not chunk:
                break
            buf += chunk
        head, sep, rest = buf.partition(b"\r\n\r\n")
        self.heads.append(head + sep)
        if not sep:
            client.close()
            up.close()
            return
        up.settimeout(None)
        client.sendall(rest)
        self._spawn(self._pipe, up, client)
        self._pipe(client, up)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture(scope="module")
def xapi(sim_host: Any) -> Iterator[dict[str, Any]]:
    """Session and console refs, read with the official SDK as the seed did."""
    import XenAPI

    session = XenAPI.Session(sim_host.url, ignore_ssl=True)
    session.xenapi.login_with_password(sim_host.user, sim_host.password, "2.21", "seed-chain")
    try:
        vms = session.xenapi.VM.get_all_records()
        consoles = session.xenapi.console.get_all_records()
        hosts = session.xenapi.host.get_all_records()
        rfb = {vms[rec["VM"]]["name_label"]: ref for ref, rec in consoles.items()
               if rec["protocol"] == "rfb"}
        yield {"session": session._session, "rfb": rfb,
               "hostname": next(iter(hosts.values()))["hostname"]}
    finally:
        session.xenapi.session.logout()


@contextlib.contextmanager
def relay_to(socat_port: int, xapi: dict[str, Any], vm: str) -> Iterator[ConsoleRelay]:
    relay = ConsoleRelay(socat_port, xapi["rfb"][vm], xapi["session"])
    try:
        yield relay
    finally:
        relay.close()
    assert relay.heads and all(h == OK_HEAD for h in relay.heads), relay.heads


def vncdotool_capture(port: int, out: Path) -> np.ndarray:
    if not VNCDOTOOL.exists():
        pytest.fail("vncdotool is not installed in the venv (pip install vncdotool)")
    r = subprocess.run(
        [str(VNCDOTOOL), "-s", f"127.0.0.1::{port}", "-t", "30", "--nocursor", "capture",
         str(out)],
        capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    return load_png(out)


def project_capture(port: int) -> np.ndarray:
    async def shot() -> np.ndarray:
        async with await open_vnc(f"127.0.0.1::{port}", timeout=IO_TIMEOUT) as vnc:
            return await vnc.screenshot()

    return asyncio.run(shot())


def test_virtual_terminal_login_prompt(socat_port: int, xapi: dict[str, Any],
                                       tmp_path: Path) -> None:
    prompt = f"{xapi['hostname']} login: "
    expected = expected_row(prompt, cursor=len(prompt))
    with relay_to(socat_port, xapi, "debian-pv") as relay:
        for attempt in range(30):  # the guest may still be booting when the host came up
            img = vncdotool_capture(relay.port, tmp_path / f"vt{attempt}.png")
            if rows_matching(img, expected):
                break
            time.sleep(0.2)
        assert img.shape == (384, 640, 3)
        assert rows_matching(img, expected) == [PROMPT_ROW], "no login prompt"
        # the boot log above it is text too: the banner, a blank row, the prompt
        banner = expected_row(f"Debian GNU/Linux 12 {xapi['hostname']} hvc0")
        assert rows_matching(img, banner) == [PROMPT_ROW - 2]
        assert np.array_equal(project_capture(relay.port), img)


def test_qemu_seabios_screen(socat_port: int, xapi: dict[str, Any], tmp_path: Path) -> None:
    with relay_to(socat_port, xapi, "win-hvm") as relay:
        for attempt in range(50):  # SeaBIOS may still be starting
            img = vncdotool_capture(relay.port, tmp_path / f"q{attempt}.png")
            if int((img[:64].max(axis=2) > 64).sum()) > 200:
                break
            time.sleep(0.2)
        assert int((img[:64].max(axis=2) > 64).sum()) > 200, "no SeaBIOS text in the top rows"
        ours = project_capture(relay.port)
    assert ours.shape == img.shape
    diff = np.argwhere((ours != img).any(axis=2))
    # QEMU's blinking text cursor may differ between the two captures: one cell at most
    assert diff.size == 0 or np.ptp(diff, axis=0).max() < 16, diff[:5]
