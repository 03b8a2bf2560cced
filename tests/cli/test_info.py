"""``xcpconsole info --seconds N [--json]`` against a tiny VNC server of our own that sends a
known set of updates and counts every byte it sent: the figures must be those counts.

The server is :class:`~xcpconsole.rfb.server.ServerConnection` for the handshake; its
updates are built here rectangle by rectangle so that every kind the statistics tell
apart is there: Raw, Hextile, ZRLE, CopyRect, Tight fill, Tight basic (zlib) and Tight
JPEG, the LastRect pseudo-rectangle, and messages that are not updates (Bell,
ServerCutText), which count on the socket but not as update bytes.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xcpconsole.rfb import events as ev
from xcpconsole.rfb import messages as msg
from xcpconsole.rfb.constants import Encoding
from xcpconsole.rfb.encoders import copyrect, hextile, raw
from xcpconsole.rfb.encoders.zrle import ZrleEncoder
from xcpconsole.rfb.server import ServerConnection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peers"))
from peerutil import Xvnc, busy_picture, start_xvnc, stop_xvnc

XCPCONSOLE = Path(sys.executable).parent / "xcpconsole"
W, H = 64, 48
INCREMENTAL_ANSWERS = 3  # then incremental requests stay unanswered until the period ends
CUT_TEXT = "counted on the socket, not as an update"


def compact(n: int) -> bytes:
    """Tight's compact length (1 to 3 bytes)."""
    out = [n & 0x7F]
    if n > 0x7F:
        out[0] |= 0x80
        out.append((n >> 7) & 0x7F)
        if n > 0x3FFF:
            out[1] |= 0x80
            out.append(n >> 14)
    return bytes(out)


@dataclass
class Sent:
    """What the server sent after ServerInit, as the test counts it."""

    updates: int = 0
    rects: Counter[int] = field(default_factory=Counter)  # encoding -> count
    jpeg: int = 0
    pixel_bytes: int = 0  # w * h * 4 (the client asks for 32-bit pixels)
    update_bytes: int = 0  # bytes of FramebufferUpdate messages
    other_bytes: int = 0  # Bell, ServerCutText
    shared: bool | None = None  # the client's ClientInit flag


class StatsServer:
    """One session: a full frame of four encodings, then a few incremental updates."""

    def __init__(self, sent: Sent) -> None:
        rng = np.random.default_rng(5)
        self.fb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        self.fb[32:, :32] = (10, 200, 30)  # the Tight fill area
        self.sent = sent
        self.conn = ServerConnection(width=W, height=H, name="stats", version=(3, 8))
        self.zrle = ZrleEncoder()
        self.tight_zlib = zlib.compressobj()  # Tight stream 0, alive for the session
        self.answered = 0

    def update(self, rects: list[tuple[tuple[int, int, int, int], int, bytes, bool]],
               until_last_rect: bool = False) -> bytes:
        head = msg.pack_framebuffer_update_header(
            msg.UNTIL_LAST_RECT if until_last_rect else len(rects))
        body = b""
        for (x, y, w, h), enc, payload, jpeg in rects:
            body += msg.pack_rect_header(x, y, w, h, enc) + payload
            self.sent.rects[enc] += 1
            self.sent.jpeg += jpeg
            self.sent.pixel_bytes += w * h * 4
        if until_last_rect:
            body += msg.pack_rect_header(0, 0, 0, 0, Encoding.LAST_RECT)
            self.sent.rects[Encoding.LAST_RECT] += 1
        data = head + body
        self.sent.updates += 1
        self.sent.update_bytes += len(data)
        return data

    def full_frame(self) -> bytes:
        pf = self.conn.client_pixel_format
        fb = self.fb
        jpeg = io.BytesIO()
        Image.fromarray(fb[32:48, 32:64]).save(jpeg, format="JPEG", quality=80)
        fill = bytes(fb[32, 0])  # TPIXEL: R, G, B for a 24-bit depth format
        return self.update([
            ((0, 0, W, 16), Encoding.RAW, raw.encode(fb[0:16], pf), False),
            ((0, 16, W, 16), Encoding.HEXTILE, hextile.encode(fb[16:32], pf), False),
            ((0, 32, 32, 16), Encoding.TIGHT, bytes([0x80]) + fill, False),
            ((32, 32, 32, 16), Encoding.TIGHT,
             bytes([0x90]) + compact(len(jpeg.getvalue())) + jpeg.getvalue(), True),
        ], until_last_rect=True)

    def incremental(self) -> bytes:
        pf = self.conn.client_pixel_format
        fb = self.fb
        pixels = fb[0:16, 16:32].tobytes()  # Tight basic, copy filter: TPIXELs, zlib'd
        z = self.tight_zlib.compress(pixels) + self.tight_zlib.flush(zlib.Z_SYNC_FLUSH)
        return self.update([
            ((0, 0, 16, 16), Encoding.COPYRECT, copyrect.encode(16, 16), False),
            ((16, 0, 16, 16), Encoding.TIGHT, bytes([0x00]) + compact(len(z)) + z, False),
            ((32, 0, 32, 16), Encoding.ZRLE, self.zrle.encode(fb[0:16, 32:64], pf), False),
        ])

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self.conn
        try:
            writer.write(conn.data_to_send())
            while data := await reader.read(65536):
                conn.receive_data(data)
                while (event := conn.next_event()) is not None:
                    writer.write(conn.data_to_send())  # ServerInit before any update
                    if isinstance(event, ev.ClientHandshakeDone):
                        self.sent.shared = event.shared
                    if isinstance(event, ev.FramebufferUpdateRequest):
                        writer.write(self.answer(event))
                writer.write(conn.data_to_send())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def answer(self, request: ev.FramebufferUpdateRequest) -> bytes:
        if not request.incremental:
            return self.full_frame()
        if self.answered >= INCREMENTAL_ANSWERS:
            return b""
        self.answered += 1
        out = self.incremental()
        if self.answered == 1:
            out += msg.pack_bell() + msg.pack_server_cut_text(CUT_TEXT)
            self.sent.other_bytes += 1 + len(msg.pack_server_cut_text(CUT_TEXT))
        return out


@pytest.fixture
async def stats_server() -> AsyncIterator[tuple[int, Sent]]:
    sent = Sent()
    server = await asyncio.start_server(lambda r, w: StatsServer(sent).serve(r, w),
                                        "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], sent
    finally:
        server.close()
        await server.wait_closed()


async def info(port: int, *args: str, seconds: str = "1") -> str:
    proc = await asyncio.create_subprocess_exec(
        str(XCPCONSOLE), "info", f"vnc://127.0.0.1:{port}", "--seconds", seconds, *args,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_info_json_figures_are_the_bytes_we_sent(stats_server: tuple[int, Sent]
                                                       ) -> None:
    port, sent = stats_server
    report = json.loads(await info(port, "--json"))
    s = report["statistics"]
    assert sent.shared is True  # our client never asks for an exclusive session
    assert sent.updates == 1 + INCREMENTAL_ANSWERS
    assert s["updates"] == sent.updates
    assert s["rectangles"] == sum(n for e, n in sent.rects.items() if e >= 0) == 4 + 3 * 3
    assert s["pseudo_rectangles"] == sent.rects[Encoding.LAST_RECT] == 1
    assert s["pseudo_by_encoding"] == {"LastRect": 1}
    by_name = {"Tight": Encoding.TIGHT, "ZRLE": Encoding.ZRLE, "Hextile": Encoding.HEXTILE,
               "Raw": Encoding.RAW, "CopyRect": Encoding.COPYRECT, "Zlib": Encoding.ZLIB,
               "RRE": Encoding.RRE}
    assert s["rectangles_by_encoding"] == {n: sent.rects[e] for n, e in by_name.items()}
    assert s["tight_jpeg"] == sent.jpeg == 1
    assert s["tight_lossless"] == sent.rects[Encoding.TIGHT] - sent.jpeg == 1 + 3
    assert s["pixel_bytes"] == sent.pixel_bytes
    assert s["wire_bytes"] == sent.update_bytes
    assert s["bytes_received"] == sent.update_bytes + sent.other_bytes
    assert s["ratio"] == round(sent.pixel_bytes / sent.update_bytes, 2)
    assert s["seconds"] == 1 and s["elapsed"] >= 1
    assert s["updates_per_second"] == pytest.approx(sent.updates / s["elapsed"], rel=0.01)
    assert s["wire_bytes_per_second"] == pytest.approx(sent.update_bytes / s["elapsed"],
                                                       rel=0.01)
    assert s["bytes_per_second"] == pytest.approx(
        (sent.update_bytes + sent.other_bytes) / s["elapsed"], rel=0.01)
    assert report["version"] == "3.8" and report["security"] == "NONE"
    assert (report["name"], report["width"], report["height"]) == ("stats", W, H)
    assert report["pixel_format"]["bits_per_pixel"] == 32
    assert report["requested_encodings"][:3] == ["CopyRect", "Tight", "ZRLE"]


async def test_info_text_has_the_seed_viewers_lines(stats_server: tuple[int, Sent]) -> None:
    port, sent = stats_server
    text = await info(port)
    rects = sum(n for e, n in sent.rects.items() if e >= 0)
    assert f"updates:        {sent.updates} ({rects} rectangles + 1 pseudo), " in text
    assert " updates/s" in text
    assert ("rectangles:     Tight=5 (JPEG=1, lossless=4) ZRLE=3 Hextile=1 Raw=1 CopyRect=3 "
            "Zlib=0 RRE=0") in text
    assert "pseudo:         LastRect 1" in text
    ratio = sent.pixel_bytes / sent.update_bytes
    assert (f"pixel data:     {sent.pixel_bytes} bytes, {sent.update_bytes} on the wire, "
            f"ratio {ratio:.2f}") in text
    assert f"(socket {sent.update_bytes + sent.other_bytes})" in text


async def test_info_json_without_seconds_has_no_statistics(stats_server: tuple[int, Sent]
                                                           ) -> None:
    port, sent = stats_server
    proc = await asyncio.create_subprocess_exec(
        str(XCPCONSOLE), "info", f"vnc://127.0.0.1:{port}", "--json",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["statistics"] is None and report["width"] == W
    assert sent.updates == 0


@pytest.fixture(scope="module")
def xvnc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Xvnc]:
    server = start_xvnc(tmp_path_factory.mktemp("xvnc"), password=None, picture=busy_picture())
    yield server
    stop_xvnc(server)


@pytest.mark.peers
@pytest.mark.parametrize(("encodings", "lossy"), [("tight,jpeg=6", True), ("tight", False)])
async def test_tight_jpeg_split_against_xvnc(xvnc: Xvnc, encodings: str, lossy: bool) -> None:
    """TigerVNC's Xvnc sends the busy picture's noise as JPEG once a quality is asked for,
    and never without one."""
    s = json.loads(await info(xvnc.port, "--json", "-e", encodings, seconds="0.3"))["statistics"]
    tight = s["rectangles_by_encoding"]["Tight"]
    assert tight > 0 and tight == s["rectangles"] - s["rectangles_by_encoding"]["CopyRect"]
    assert s["tight_jpeg"] + s["tight_lossless"] == tight
    assert (s["tight_jpeg"] > 0) == lossy
    assert s["pixel_bytes"] >= 1024 * 768 * 4  # the full frame at least
    assert s["ratio"] == round(s["pixel_bytes"] / s["wire_bytes"], 2) > 1
