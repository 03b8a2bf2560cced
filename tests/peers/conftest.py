"""Fixtures that start real VNC servers: TigerVNC's Xvnc (with a known picture) and QEMU.

Every process started here is stopped in teardown, also when the test failed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from peerutil import (
    XVNC_PASSWORD,
    QemuVnc,
    Xvnc,
    busy_picture,
    need,
    start_xvnc,
    stop,
    stop_xvnc,
    wait_for_socket,
)

__all__ = ["XVNC_PASSWORD", "QemuVnc", "Xvnc"]

@pytest.fixture(scope="module")
def xvnc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Xvnc]:
    """Xvnc 1024x768x24, no security, root window showing :func:`busy_picture`."""
    server = start_xvnc(tmp_path_factory.mktemp("xvnc"), password=None, picture=busy_picture())
    yield server
    stop_xvnc(server)


@pytest.fixture(scope="module")
def xvnc_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Xvnc]:
    """Xvnc with VNC authentication (password :data:`XVNC_PASSWORD`)."""
    server = start_xvnc(tmp_path_factory.mktemp("xvncauth"), password=XVNC_PASSWORD,
                         picture=busy_picture(seed=11))
    yield server
    stop_xvnc(server)


@pytest.fixture
def xvnc_factory(tmp_path: Path) -> Iterator[Callable[..., Xvnc]]:
    """Start private Xvnc servers (for tests that change the screen)."""
    started: list[Xvnc] = []

    def start(*, password: str | None = None, picture: np.ndarray | None = None,
              geometry: str = "1024x768") -> Xvnc:
        d = tmp_path / f"x{len(started)}"
        d.mkdir()
        server = start_xvnc(d, password=password, picture=picture, geometry=geometry)
        started.append(server)
        return server

    yield start
    for server in started:
        stop_xvnc(server)


@pytest.fixture(scope="module")
def qemu_vnc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QemuVnc]:
    """QEMU with no disk and no NIC: SeaBIOS prints its banner and 'No bootable device'."""
    qemu = need("qemu-system-x86_64")
    tmp = tmp_path_factory.mktemp("qemu")
    sock, log = tmp / "vnc.sock", tmp / "qemu.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [qemu, "-display", "none", "-vnc", f"unix:{sock}", "-nodefaults", "-vga", "std",
             "-machine", "pc,accel=tcg", "-m", "32", "-boot", "strict=on"],
            stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_for_socket(str(sock), proc=proc, log=log)
        yield QemuVnc(sock, proc)
    finally:
        stop(proc)
