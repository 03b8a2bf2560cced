"""Wall time of one screenshot: ``xcpconsole screenshot`` vs ``vncdo capture`` on a 1024x768 Xvnc.

Run: ``.venv/bin/python bench/vnc_screenshot.py [--runs 5]``.  Starts its own Xvnc
showing the busy test picture of ``tests/peers`` and prints the median and best
wall time of each command (whole process: interpreter start, connect, handshake,
one full frame, PNG written), plus the in-process library time per encoding.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "peers"))

from peerutil import busy_picture, load_png, start_xvnc, stop_xvnc  # noqa: E402

from xcpconsole.net.vnc import open_vnc  # noqa: E402


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - t0


async def library(target: str, encodings: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        async with await open_vnc(target, encodings=encodings) as vnc:
            await vnc.screenshot()
        times.append(time.perf_counter() - t0)
    return times


def line(label: str, times: list[float]) -> str:
    return (f"{label:<44} median {statistics.median(times) * 1000:7.0f} ms   "
            f"best {min(times) * 1000:7.0f} ms   (n={len(times)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    picture = busy_picture()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_xvnc(Path(tmp), password=None, picture=picture)
        try:
            out = Path(tmp) / "shot.png"
            ours = [timed([str(bindir / "xcpconsole"), "screenshot", server.target, str(out)])
                    for _ in range(args.runs)]
            ok_ours = bool((load_png(out) == picture).all())
            theirs = [timed([str(bindir / "vncdo"), "-s", f"127.0.0.1::{server.port}",
                             "capture", str(out)]) for _ in range(args.runs)]
            ok_theirs = bool((load_png(out) == picture).all())
            print("1024x768 Xvnc (TigerVNC), busy picture, whole command incl. startup:")
            print(line(f"xcpconsole screenshot (exact: {ok_ours})", ours))
            print(line(f"vncdo capture        (exact: {ok_theirs})", theirs))
            print("library only (open_vnc + screenshot, in process):")
            for enc in ("raw", "hextile", "zrle", "tight", "tight,jpeg=6"):
                print(line(f"  {enc}", asyncio.run(library(server.target, enc, args.runs))))
        finally:
            stop_xvnc(server)


if __name__ == "__main__":
    main()
