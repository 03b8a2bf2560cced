"""Frames: screenshot wall time and decoder throughput against a real Xvnc.

Decoder throughput is measured offline: a session with a 1920x1080 Xvnc showing
real content (a photo-like image, terminals full of text) is recorded once per
encoding (the server's bytes of N consecutive full-frame updates), then the same
bytes are fed to xcpconsole's sans-I/O client and to vncdotool's client.  The
server's own encoding time is thus out of the figure, and both clients decode
exactly the same bytes.
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

from .common import ROOT, VENV_BIN, Result, child, free_port, median, need, wait_port

FRAMES = 12


@contextlib.contextmanager
def xvnc_with_content(width: int, height: int) -> Iterator[int]:
    """An Xvnc showing a photo-like image and text; yields its RFB port."""
    need("Xvnc")
    display = 40 + (os.getpid() % 50)
    port = free_port()
    argv = ["Xvnc", f":{display}", "-geometry", f"{width}x{height}", "-depth", "24",
            "-SecurityTypes", "None", "-rfbport", str(port), "-AlwaysShared",
            "-nolisten", "tcp", "-localhost"]
    env = {"DISPLAY": f":{display}"}
    with child(argv):
        wait_port(port)
        procs = []
        try:
            subprocess.run(["xsetroot", "-solid", "#336699"], env={**os.environ, **env},
                           check=False, timeout=10)
            procs.append(subprocess.Popen(
                ["display", "-geometry", "+0+0", "-resize", f"{width // 2}x{height}!",
                 "plasma:fractal"], env={**os.environ, **env}, start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            procs.append(subprocess.Popen(
                ["xterm", "-geometry", "100x60+%d+0" % (width // 2), "-fa", "", "-e",
                 "sh", "-c", "ls -lR /usr/share/doc | head -400; sleep 3600"],
                env={**os.environ, **env}, start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(3.0)
            yield port
        finally:
            for p in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, 15)
                p.wait(5)


def record(port: int, encodings: list[int], frames: int) -> bytes:
    """The server's bytes of a session: handshake plus ``frames`` full-frame updates."""
    from xcpconsole.rfb import events as ev
    from xcpconsole.rfb.client import ClientConnection

    conn = ClientConnection(encodings=encodings)
    recorded = bytearray()
    got = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        while got < frames:
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


def decode_ours(recorded: bytes, encodings: list[int]) -> tuple[float, int]:
    """Seconds to decode the recording with xcpconsole, and frames seen."""
    from xcpconsole.rfb import events as ev
    from xcpconsole.rfb.client import ClientConnection

    conn = ClientConnection(encodings=encodings)
    frames = 0
    t0 = time.perf_counter()
    view = memoryview(recorded)
    for i in range(0, len(view), 1 << 18):
        conn.receive_data(bytes(view[i:i + (1 << 18)]))
        while (event := conn.next_event()) is not None:
            if isinstance(event, ev.FramebufferUpdated):
                frames += 1
        conn.data_to_send()
    return time.perf_counter() - t0, frames


_VNCDOTOOL_DECODE = r"""
import sys, time
from twisted.internet.testing import StringTransport
from vncdotool.client import VNCDoToolFactory
data = open(sys.argv[1], 'rb').read()
factory = VNCDoToolFactory()
proto = factory.buildProtocol(None)
frames = [0]
orig = proto.commitUpdate
def commit(rects):
    frames[0] += 1
    proto.framebufferUpdateRequest(0, 0, proto.width, proto.height, incremental=False)
proto.commitUpdate = commit
t = StringTransport()
proto.makeConnection(t)
t0 = time.perf_counter()
try:
    for i in range(0, len(data), 1 << 18):
        proto.dataReceived(data[i:i + (1 << 18)])
except Exception as exc:
    print('ERROR', type(exc).__name__, exc)
    sys.exit(0)
print(time.perf_counter() - t0, frames[0])
"""


def decode_vncdotool(recorded: bytes, timeout: float = 120.0) -> tuple[float, int] | str:
    with tempfile.NamedTemporaryFile(suffix=".rfb") as f:
        f.write(recorded)
        f.flush()
        try:
            out = subprocess.run([str(VENV_BIN / "python"), "-c", _VNCDOTOOL_DECODE, f.name],
                                 capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"over {timeout:.0f} s"
    line = (out.stdout.strip().splitlines() or ["ERROR no output " + out.stderr[-200:]])[-1]
    if line.startswith("ERROR"):
        return line[6:][:80]
    secs, frames = line.split()
    return float(secs), int(frames)


def screenshot_times(port: int, runs: int = 5) -> tuple[list[float], list[float]]:
    """Wall time of `xcpconsole screenshot` and `vncdotool capture` (whole commands)."""
    ours, theirs = [], []
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
    return ours, theirs


def run() -> list[Result]:
    from xcpconsole.rfb.constants import Encoding as E

    results: list[Result] = []
    with xvnc_with_content(1024, 768) as port:
        ours, theirs = screenshot_times(port)
        results.append(Result("frames", "screenshot 1024x768 wall time (median of 5)", "s",
                              {"xcpconsole": median(ours), "vncdotool": median(theirs)},
                              better="lower"))
    cases = {
        "Raw": [E.RAW],
        "Hextile": [E.HEXTILE],
        "ZRLE": [E.ZRLE],
        "Tight": [E.TIGHT],
        "Tight+JPEG q8": [E.TIGHT, E.JPEG_QUALITY_0 + 8],
    }
    with xvnc_with_content(1920, 1080) as port:
        for name, encs in cases.items():
            recorded = record(port, encs, FRAMES)
            secs, frames = decode_ours(recorded, encs)
            mp = frames * 1920 * 1080 / 1e6
            values: dict[str, float] = {"xcpconsole": mp / secs}
            note = f"{frames} frames, {len(recorded) / frames / 1e6:.2f} MB/frame"
            theirs_out = decode_vncdotool(recorded)
            if isinstance(theirs_out, tuple) and theirs_out[1] > 0:
                values["vncdotool"] = theirs_out[1] * 1920 * 1080 / 1e6 / theirs_out[0]
            else:
                note += f"; vncdotool: {theirs_out if isinstance(theirs_out, str) else 'no frame'}"
            results.append(Result("frames", f"decode {name} 1920x1080", "MP/s", values,
                                  note=note))
            results.append(Result("frames", f"decode {name} 1920x1080 full frames", "fps",
                                  {"xcpconsole": frames / secs}))
    return results
