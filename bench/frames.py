"""Frames: screenshot wall time and decoder throughput against a real Xvnc (TigerVNC).

The Xvnc shows real content: a photo-like picture (ImageMagick's fractal plasma),
a page of anti-aliased text (a licence file rendered with DejaVu Sans Mono) as the
root window's background, and an xterm listing a directory on top.

Decoder throughput is measured offline: the server's bytes of a session (handshake
plus N consecutive full-frame updates in one encoding) are recorded once, then the
same bytes are fed to xcpconsole's sans-I/O client and to vncdotool's client (in a
subprocess, through a Twisted string transport).  The server's encoding time is out
of the figure and both clients decode exactly the same bytes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .common import ROOT, VENV_BIN, Result, child, free_port, median, need, wait_port

FRAMES = 12
SCREENSHOT_RUNS = 5
LICENCE = Path("/usr/share/common-licenses/GPL-3")
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")


def content_picture(width: int, height: int, path: Path) -> None:
    """Write the benchmark's screen content as a PNG: photo-like left, text right."""
    from PIL import Image, ImageDraw, ImageFont

    need("convert")
    photo_w = width * 55 // 100
    plasma = path.with_suffix(".plasma.png")
    subprocess.run(["convert", "-seed", "7", "-size", f"{photo_w}x{height}", "plasma:fractal",
                    "-blur", "0x1", str(plasma)], check=True, timeout=60)
    img = Image.new("RGB", (width, height), (250, 250, 246))
    img.paste(Image.open(plasma).convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(str(FONT), 13) if FONT.exists() else ImageFont.load_default()
    lines = (LICENCE.read_text().splitlines() if LICENCE.exists()
             else [f"line {i}: the quick brown fox jumps over the lazy dog" for i in range(200)])
    colours = [(20, 20, 20), (30, 60, 160), (150, 30, 30), (20, 110, 40)]
    y = 6
    for i, line in enumerate(lines):
        if y > height - 16:
            break
        draw.text((photo_w + 10, y), line[:120], font=font, fill=colours[(i // 7) % 4])
        y += 16
    img.save(path)
    plasma.unlink()


@contextlib.contextmanager
def xvnc_with_content(width: int, height: int) -> Iterator[tuple[int, np.ndarray]]:
    """An Xvnc showing real content; yields its RFB port and the background picture."""
    from PIL import Image

    need("Xvnc")
    need("display")
    need("xterm")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        picture = Path(tmp) / "content.png"
        content_picture(width, height, picture)
        display = _free_display()
        argv = ["Xvnc", f":{display}", "-geometry", f"{width}x{height}", "-depth", "24",
                "-SecurityTypes", "None", "-rfbport", str(port), "-AlwaysShared",
                "-nolisten", "tcp", "-localhost"]
        env = {**os.environ, "DISPLAY": f":{display}"}
        with child(argv):
            wait_port(port)
            # display's exit status is unreliable here; the pixels are checked instead
            subprocess.run(["display", "-window", "root", str(picture)], env=env, check=False,
                           timeout=30, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            term = subprocess.Popen(
                ["xterm", "-geometry", f"90x30+{width // 3}+{height // 3}", "-fa",
                 "DejaVu Sans Mono", "-fs", "10", "-bg", "#1e1e2e", "-fg", "#cdd6f4", "-e",
                 "sh", "-c", "ls -l --color=always /usr/bin | head -200; sleep 3600"],
                env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            try:
                time.sleep(2.0)
                yield port, np.asarray(Image.open(picture).convert("RGB"))
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(term.pid, 15)
                term.wait(5)


def _free_display() -> int:
    for n in range(40, 99):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display number between :40 and :98")


def record(port: int, encodings: list[int], frames: int, timeout: float = 60.0) -> bytes:
    """The server's bytes of a session: handshake plus ``frames`` full-frame updates."""
    from xcpconsole.rfb import events as ev
    from xcpconsole.rfb.client import ClientConnection

    conn = ClientConnection(encodings=encodings)
    recorded = bytearray()
    got = 0
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        while got < frames:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {got} of {frames} frames in {timeout:.0f} s")
            data = s.recv(1 << 20)
            if not data:
                raise RuntimeError("Xvnc closed the connection while recording")
            recorded += data
            conn.receive_data(data)
            while (event := conn.next_event()) is not None:
                if isinstance(event, ev.ServerInitReceived):
                    conn.request_update(incremental=False)
                elif isinstance(event, ev.FramebufferUpdated):
                    got += 1
                    if got < frames:
                        conn.request_update(incremental=False)
            out = conn.data_to_send()
            if out:
                s.sendall(out)
    return bytes(recorded)


def decode_ours(recorded: bytes, encodings: list[int]) -> tuple[float, int, np.ndarray]:
    """Seconds to decode the recording with xcpconsole, frames seen, last frame."""
    from xcpconsole.rfb import events as ev
    from xcpconsole.rfb.client import ClientConnection

    conn = ClientConnection(encodings=encodings)
    frames = 0
    view = memoryview(recorded)
    t0 = time.perf_counter()
    for i in range(0, len(view), 1 << 18):
        conn.receive_data(bytes(view[i:i + (1 << 18)]))
        while (event := conn.next_event()) is not None:
            if isinstance(event, ev.FramebufferUpdated):
                frames += 1
        conn.data_to_send()
    secs = time.perf_counter() - t0
    assert conn.framebuffer is not None
    return secs, frames, conn.framebuffer.copy()


_VNCDOTOOL_DECODE = r"""
import sys, time
from twisted.internet.testing import StringTransport
from vncdotool.client import VNCDoToolFactory
data = open(sys.argv[1], 'rb').read()
factory = VNCDoToolFactory()
proto = factory.buildProtocol(None)
frames = [0]
def commit(rects):
    frames[0] += 1
proto.commitUpdate = commit
t = StringTransport()
proto.makeConnection(t)
t0 = time.perf_counter()
try:
    for i in range(0, len(data), 1 << 18):
        proto.dataReceived(data[i:i + (1 << 18)])
except Exception as exc:
    print('ERROR', type(exc).__name__, str(exc)[:60])
    sys.exit(0)
print(time.perf_counter() - t0, frames[0])
"""


def decode_vncdotool(recorded: bytes, timeout: float = 90.0) -> tuple[float, int] | str:
    """vncdotool's seconds and frames for the same bytes, or why it could not."""
    with tempfile.NamedTemporaryFile(suffix=".rfb") as f:
        f.write(recorded)
        f.flush()
        try:
            out = subprocess.run([str(VENV_BIN / "python"), "-c", _VNCDOTOOL_DECODE, f.name],
                                 capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"over {timeout:.0f} s"
    line = (out.stdout.strip().splitlines() or ["ERROR no output " + out.stderr[-120:]])[-1]
    if line.startswith("ERROR"):
        return "fails: " + line[6:]
    secs, frames = line.split()
    return float(secs), int(frames)


def screenshot_times(port: int, picture: np.ndarray, runs: int = SCREENSHOT_RUNS
                     ) -> tuple[list[float], list[float], str]:
    """Wall time of `xcpconsole screenshot` and `vncdotool capture` (whole commands), and
    how much of each PNG equals the background picture (the xterm covers the rest)."""
    from PIL import Image

    ours: list[float] = []
    theirs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            for argv, sink in (
                ([str(VENV_BIN / "xcpconsole"), "screenshot", f"vnc://127.0.0.1:{port}",
                  f"{tmp}/a{i}.png"], ours),
                ([str(VENV_BIN / "vncdotool"), "-s", f"127.0.0.1::{port}", "capture",
                  f"{tmp}/b{i}.png"], theirs),
            ):
                t0 = time.perf_counter()
                subprocess.run(argv, check=True, capture_output=True, timeout=60, cwd=ROOT)
                sink.append(time.perf_counter() - t0)
        shown = []
        for name in ("a", "b"):
            png = np.asarray(Image.open(f"{tmp}/{name}{runs - 1}.png").convert("RGB"))
            same = png.shape == picture.shape and (png == picture).all(axis=2).mean()
            shown.append(f"{float(same):.1%}")
    return ours, theirs, f"pixels = background: xcpconsole {shown[0]}, vncdotool {shown[1]}"


def run() -> list[Result]:
    from xcpconsole.rfb.constants import Encoding as E
    from xcpconsole.rfb.constants import jpeg_quality

    results: list[Result] = []
    with xvnc_with_content(1024, 768) as (port, picture):
        ours, theirs, same = screenshot_times(port, picture)
        results.append(Result(
            "frames", f"screenshot 1024x768 wall time (median of {SCREENSHOT_RUNS})", "s",
            {"xcpconsole": median(ours), "vncdotool": median(theirs)}, better="lower",
            note=same))
    cases: dict[str, list[int]] = {
        "Raw": [E.RAW],
        "Hextile": [E.HEXTILE],
        "ZRLE": [E.ZRLE],
        "Tight": [E.TIGHT],
        "Tight+JPEG q8": [E.TIGHT, jpeg_quality(8)],
    }
    reference: np.ndarray | None = None
    w, h = 1920, 1080
    with xvnc_with_content(w, h) as (port, picture):
        for name, encs in cases.items():
            recorded = record(port, [int(e) for e in encs], FRAMES)
            secs, frames, last = decode_ours(recorded, [int(e) for e in encs])
            if reference is None:
                reference = last  # Raw: the pixels every lossless decoder must reproduce
                shown = float((last == picture).all(axis=2).mean())
                if shown < 0.5:
                    raise RuntimeError(f"the content is not on screen ({shown:.0%} matches)")
            exact = "JPEG" in name or bool((last == reference).all())
            mp = frames * w * h / 1e6
            values: dict[str, float] = {"xcpconsole": mp / secs}
            note = f"{len(recorded) / frames / 1e6:.2f} MB/frame"
            if not exact:
                note += "; PIXELS DIFFER FROM RAW"
            theirs_out = decode_vncdotool(recorded)
            if isinstance(theirs_out, tuple) and theirs_out[1] > 0:
                values["vncdotool"] = theirs_out[1] * w * h / 1e6 / theirs_out[0]
            else:
                note += f"; vncdotool {theirs_out if isinstance(theirs_out, str) else 'no frame'}"
            results.append(Result("frames", f"decode {name} 1920x1080", "MP/s", values,
                                  note=note))
            results.append(Result("frames", f"decode {name} 1920x1080 full frames", "fps",
                                  {"xcpconsole": frames / secs}))
    return results
