"""VncClient against our own sans-I/O server over real sockets: frames, keys, PNG files.

The server side is :class:`xcpconsole.rfb.server.ServerConnection` driven by a
small asyncio loop whose reaction to each client event the test chooses, so we
can split updates, resize mid-screenshot and record the exact key events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xcpconsole.errors import NetworkError
from xcpconsole.net import vnc as vnc_module
from xcpconsole.net.vnc import VncClient, open_vnc, parse_encodings
from xcpconsole.rfb import events as ev
from xcpconsole.rfb.client import ClientConnection
from xcpconsole.rfb.constants import DEFAULT_ENCODINGS, DEFAULT_PSEUDO_ENCODINGS
from xcpconsole.rfb.server import ServerConnection

Handler = Callable[[ServerConnection, object, asyncio.StreamWriter], Awaitable[None]]


def picture(h: int, w: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


class FakeServer:
    def __init__(self, handler: Handler, width: int = 64, height: int = 48) -> None:
        self.handler = handler
        self.width, self.height = width, height
        self.events: list[object] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ServerConnection(width=self.width, height=self.height, name="fake")
        writer.write(conn.data_to_send())
        try:
            while data := await reader.read(65536):
                conn.receive_data(data)
                while (event := conn.next_event()) is not None:
                    self.events.append(event)
                    await self.handler(conn, event, writer)
                    writer.write(conn.data_to_send())
                writer.write(conn.data_to_send())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[FakeServer], Awaitable[VncClient]]]:
    servers: list[asyncio.Server] = []
    clients: list[VncClient] = []

    async def start(fake: FakeServer) -> VncClient:
        server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        client = await open_vnc(f"vnc://127.0.0.1:{port}", timeout=5)
        clients.append(client)
        return client

    yield start
    for c in clients:
        await c.close()
    for s in servers:
        s.close()
        await s.wait_closed()


async def test_screenshot_waits_for_all_parts(serve) -> None:  # type: ignore[no-untyped-def]
    fb = picture(48, 64)

    async def handler(conn: ServerConnection, event: object, w: asyncio.StreamWriter) -> None:
        if isinstance(event, ev.FramebufferUpdateRequest) and not event.incremental:
            conn.send_update(fb, [(0, 0, 64, 20)])
            w.write(conn.data_to_send())
            await w.drain()
            await asyncio.sleep(0.2)  # the rest comes later, in its own FramebufferUpdate
            conn.send_update(fb, [(0, 20, 30, 28)])
            conn.send_update(fb, [(30, 20, 34, 28)])

    vnc = await serve(FakeServer(handler))
    img = await vnc.screenshot()
    assert img.tobytes() == fb.tobytes()
    assert vnc.stats.updates == 3


async def test_screenshot_after_resize(serve) -> None:  # type: ignore[no-untyped-def]
    big = picture(60, 80, seed=2)

    async def handler(conn: ServerConnection, event: object, w: asyncio.StreamWriter) -> None:
        if isinstance(event, ev.FramebufferUpdateRequest) and not event.incremental:
            if event.width == 64:
                conn.send_update(picture(48, 64), [(0, 0, 64, 10)])
                conn.send_desktop_size(80, 60)
            else:
                conn.send_update(big, [(0, 0, 80, 60)])

    vnc = await serve(FakeServer(handler))
    img = await vnc.screenshot()
    assert img.shape == (60, 80, 3) and img.tobytes() == big.tobytes()


async def test_screenshot_times_out_cleanly(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(conn: ServerConnection, event: object, w: asyncio.StreamWriter) -> None:
        return None  # never answers

    vnc = await serve(FakeServer(handler))
    with pytest.raises(NetworkError):
        await vnc.screenshot(timeout=0.3)


async def _keys(serve, action: Callable[[VncClient], Awaitable[None]]  # type: ignore[no-untyped-def]
                ) -> list[tuple[bool, int]]:
    fake = FakeServer(lambda conn, event, w: _answer_full(conn, event))
    vnc = await serve(fake)
    await action(vnc)
    await vnc.screenshot()  # a round trip: the server has read every key event before
    return [(e.down, e.keysym) for e in fake.events if isinstance(e, ev.KeyEvent)]


async def _answer_full(conn: ServerConnection, event: object) -> None:
    if isinstance(event, ev.FramebufferUpdateRequest):
        conn.send_update(np.zeros((48, 64, 3), np.uint8), [(0, 0, 64, 48)])


async def test_type_text_key_events(serve) -> None:  # type: ignore[no-untyped-def]
    got = await _keys(serve, lambda vnc: vnc.type_text("aB!\né", delay=0))
    shift = 0xFFE1
    assert got == [
        (True, 0x61), (False, 0x61),
        (True, shift), (True, 0x42), (False, 0x42), (False, shift),
        (True, shift), (True, 0x21), (False, 0x21), (False, shift),
        (True, 0xFF0D), (False, 0xFF0D),
        (True, 0xE9), (False, 0xE9),
    ]


async def test_press_combos(serve) -> None:  # type: ignore[no-untyped-def]
    got = await _keys(serve, lambda vnc: vnc.press("ctrl-alt-del", "F12", delay=0))
    assert got == [
        (True, 0xFFE3), (True, 0xFFE9), (True, 0xFFFF),
        (False, 0xFFFF), (False, 0xFFE9), (False, 0xFFE3),
        (True, 0xFFC9), (False, 0xFFC9),
    ]


async def test_save_png_is_atomic_and_exact(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fb = picture(48, 64, seed=5)

    async def handler(conn: ServerConnection, event: object, w: asyncio.StreamWriter) -> None:
        if isinstance(event, ev.FramebufferUpdateRequest):
            conn.send_update(fb, [(0, 0, 64, 48)])

    vnc = await serve(FakeServer(handler))
    target = tmp_path / "shot.png"
    target.write_bytes(b"old")
    await vnc.save_png(target)
    assert [p.name for p in tmp_path.iterdir()] == ["shot.png"]
    with Image.open(target) as img:
        assert np.asarray(img.convert("RGB")).tobytes() == fb.tobytes()


async def test_server_closing_is_a_network_error(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(conn: ServerConnection, event: object, w: asyncio.StreamWriter) -> None:
        if isinstance(event, ev.FramebufferUpdateRequest):
            w.close()

    vnc = await serve(FakeServer(handler))
    with pytest.raises(NetworkError):
        await vnc.screenshot(timeout=5)
    with pytest.raises(NetworkError):
        await vnc.press("Return")


async def test_default_encodings_are_the_one_list(serve) -> None:  # type: ignore[no-untyped-def]
    fake = FakeServer(lambda conn, event, w: _answer_full(conn, event))
    vnc = await serve(fake)
    await vnc.screenshot()
    sent = [e.encodings for e in fake.events if isinstance(e, ev.SetEncodings)]
    assert sent == [tuple(DEFAULT_ENCODINGS)]
    assert vnc.requested_encodings == ClientConnection().encodings == tuple(DEFAULT_ENCODINGS)
    assert vnc_module.DEFAULT_ENCODINGS is DEFAULT_ENCODINGS
    # a variant names its pixel encodings and takes the pseudo-encodings from the list
    assert parse_encodings("raw") == [0, *DEFAULT_PSEUDO_ENCODINGS]


async def test_stats_are_the_state_machines_own_counters(serve) -> None:  # type: ignore[no-untyped-def]
    vnc = await serve(FakeServer(lambda conn, event, w: _answer_full(conn, event)))
    await vnc.screenshot()
    counted = vnc._conn.stats
    assert vnc.stats == counted
    zrle = 16  # what ServerConnection picks from the default list
    assert vnc.stats.updates == 1 and vnc.stats.rects == {zrle: 1}
    assert vnc.stats.pixel_bytes == 64 * 48 * 4
    assert vnc.stats.bytes_received > vnc.stats.wire_bytes > 4 + 12
    first = vnc.stats
    info = await vnc.info(seconds=0.2)  # counts from here on
    assert info.stats.updates == counted.updates - 1 >= 1
    assert info.stats.rects == {zrle: info.stats.updates}
    assert info.stats.pixel_bytes == info.stats.updates * 64 * 48 * 4
    assert info.stats.wire_bytes == counted.wire_bytes - first.wire_bytes
    assert info.stats.ratio == info.stats.pixel_bytes / info.stats.wire_bytes
    text = "\n".join(info.lines())
    assert f"updates:        {info.stats.updates}" in text
    assert f"(socket {info.stats.bytes_received})" in text
