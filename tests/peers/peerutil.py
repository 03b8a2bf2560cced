"""Helpers for tests that run real peers: socket waiting, free ports, a known test picture."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw


def need(program: str) -> str:
    """Absolute path of ``program``; fail (never skip) when the peer is not installed."""
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed (scripts/setup.sh installs it)")
    return path


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_socket(address: str | tuple[str, int], *, proc: subprocess.Popen[bytes] | None = None,
                    log: Path | None = None, timeout: float = 15.0) -> None:
    """Poll until something accepts connections at a unix path or (host, port).

    Fails the test with the peer's output (``log``) if ``proc`` dies first.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            out = log.read_text(errors="replace") if log and log.exists() else ""
            pytest.fail(f"peer exited with {proc.returncode} before listening:\n{out[-3000:]}")
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        with socket.socket(family) as s:
            s.settimeout(1.0)
            try:
                s.connect(address)
                return
            except OSError:
                pass
        if time.monotonic() > deadline:
            pytest.fail(f"nothing listens at {address} after {timeout} s")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate a peer we started, then kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def busy_picture(width: int = 1024, height: int = 768, seed: int = 7) -> np.ndarray:
    """A busy, colourful, deterministic picture that makes every encoder use its sub-modes.

    Solid areas (Hextile/RRE background, ZRLE/Tight fill), small solid rectangles
    (RRE/Hextile subrects), a 1-pixel checkerboard (two colours: mono subrects, packed
    palette), thin stripes of a dozen colours (palettes), runs of up to ~100 colours
    (ZRLE palette RLE) and of thousands (plain RLE), a smooth gradient (Tight gradient
    filter), random noise (raw tiles) and text.  Edges avoid tile boundaries on purpose.
    """
    rng = np.random.default_rng(seed)
    a = np.empty((height, width, 3), np.uint8)
    a[:] = (40, 44, 52)
    a[3:253, 5:250] = rng.integers(0, 256, (250, 245, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:250, 0:250]
    a[3:253, 260:510, 0] = (xx * 255 // 249).astype(np.uint8)
    a[3:253, 260:510, 1] = (yy * 255 // 249).astype(np.uint8)
    a[3:253, 260:510, 2] = ((xx + yy) * 255 // 498).astype(np.uint8)
    checker = ((yy + xx) % 2).astype(bool)
    a[3:253, 517:767][checker] = (250, 250, 250)
    a[3:253, 517:767][~checker] = (10, 20, 200)
    palette12 = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    a[3:253, 771:1021] = palette12[(xx // 3) % 12]
    for _ in range(400):
        x, y = int(rng.integers(0, 500)), int(rng.integers(260, 500))
        w, h = int(rng.integers(1, 40)), int(rng.integers(1, 30))
        a[y:y + h, x:x + w] = rng.integers(0, 256, 3, dtype=np.uint8)
    palette100 = rng.integers(0, 256, (100, 3), dtype=np.uint8)
    palette3k = rng.integers(0, 256, (3000, 3), dtype=np.uint8)
    for y in range(261, 509):
        pal = palette100 if y < 385 else palette3k
        x = 515
        while x < 1019:
            run = int(rng.integers(1, 30))
            a[y, x:min(x + run, 1019)] = pal[int(rng.integers(0, len(pal)))]
            x += run
    a[515:760, 7:300] = (200, 30, 30)
    a[515:760, 300:620] = (240, 240, 240)
    a[515:760, 620:1017] = (0, 0, 0)
    img = Image.fromarray(a)
    draw = ImageDraw.Draw(img)
    for i in range(14):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.text((12 + (i % 3) * 330, 520 + (i // 3) * 45),
                  f"xcpconsole line {i}: The quick brown fox 0123456789", fill=colour)
    draw.ellipse((700, 560, 900, 740), outline=(255, 200, 0), width=3)
    draw.line((640, 750, 1000, 530), fill=(0, 255, 120), width=2)
    return np.asarray(img, dtype=np.uint8).copy()


def save_png(rgb: np.ndarray, path: Path) -> Path:
    Image.fromarray(rgb, "RGB").save(path)
    return path


def load_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()



XVNC_PASSWORD = "s3cret!"  # VNC passwords are at most 8 characters


@dataclass
class Xvnc:
    display: int
    port: int
    proc: subprocess.Popen[bytes]
    picture: np.ndarray | None
    password: str | None = None
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)
    displayfd: int = -1

    @property
    def target(self) -> str:
        return f"vnc://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DISPLAY": f":{self.display}"}

    def run_x(self, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
        """Run an X client on this display to completion."""
        return subprocess.run(argv, env=self.env, capture_output=True, timeout=timeout,
                              check=False)

    def spawn_x(self, *argv: str) -> subprocess.Popen[bytes]:
        """Start a long-running X client on this display (stopped with the server)."""
        proc = subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.extra.append(proc)
        return proc


def start_xvnc(tmp: Path, *, password: str | None, picture: np.ndarray | None,
                geometry: str = "1024x768", extra: tuple[str, ...] = ()) -> Xvnc:
    xvnc = need("Xvnc")
    port = free_tcp_port()
    argv = [xvnc, "-geometry", geometry, "-depth", "24", "-rfbport", str(port), "-localhost",
            "-nolisten", "tcp", "-noreset", "-AlwaysShared", "-BlacklistThreshold", "10000", *extra]
    if password is None:
        argv += ["-SecurityTypes", "None"]
    else:
        passwd = subprocess.run([need("vncpasswd"), "-f"], input=password.encode() + b"\n",
                                capture_output=True, check=True, timeout=10).stdout
        pwfile = tmp / "passwd"
        pwfile.write_bytes(passwd)
        pwfile.chmod(0o600)
        argv += ["-SecurityTypes", "VncAuth", "-PasswordFile", str(pwfile)]
    rfd, wfd = os.pipe()
    argv[1:1] = ["-displayfd", str(wfd)]
    log = tmp / "xvnc.log"
    with log.open("wb") as fh:  # a file, not a pipe: nobody drains a pipe, the peer would block
        proc = subprocess.Popen(argv, pass_fds=(wfd,), stdout=fh, stderr=subprocess.STDOUT)
    os.close(wfd)
    # The read end stays open while Xvnc runs: it may write its display number again
    # (it did, fatally, once the pipe was closed).
    ready, _, _ = select.select([rfd], [], [], 20)
    text = os.read(rfd, 64).decode() if ready else ""
    if not text.strip().isdigit():
        os.close(rfd)
        stop(proc)
        pytest.fail(f"Xvnc did not report a display number: {text!r}")
    server = Xvnc(int(text), port, proc, picture, password, displayfd=rfd)
    try:
        wait_for_socket(("127.0.0.1", port), proc=proc, log=log)
        if picture is not None:
            png = save_png(picture, tmp / "picture.png")
            # `display -window root` sets the root background and exits (status 1 is normal).
            server.run_x(need("display"), "-window", "root", str(png))
    except BaseException:
        stop_xvnc(server)
        raise
    return server


def stop_xvnc(server: Xvnc) -> None:
    for p in server.extra:
        stop(p)
    stop(server.proc)
    if server.displayfd >= 0:
        os.close(server.displayfd)
        server.displayfd = -1


@dataclass
class QemuVnc:
    socket_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def target(self) -> str:
        return f"unix:{self.socket_path}"


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
