"""A hostile VNC server: garbage, truncation, huge sizes and zlib bombs.

The client must end with an :class:`XcpConsoleError` (never another exception,
never a hang) and must not allocate much beyond its configured caps.
"""

from __future__ import annotations

import asyncio
import random
import struct
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from xcpconsole.errors import LimitExceededError, ProtocolError, XcpConsoleError
from xcpconsole.net.vnc import VncClient, open_vnc
from xcpconsole.rfb.pixelformat import BGRX32

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                    width: int = 64, height: int = 48, name: bytes = b"evil",
                    name_len: int | None = None) -> None:
    """RFB 3.8, security None, then ServerInit (possibly lying about its sizes)."""
    writer.write(b"RFB 003.008\n")
    await reader.readexactly(12)
    writer.write(b"\x01\x01")
    await reader.readexactly(1)
    writer.write(struct.pack(">I", 0))
    await reader.readexactly(1)
    length = len(name) if name_len is None else name_len
    writer.write(struct.pack(">HH", width, height) + BGRX32.pack() + struct.pack(">I", length)
                 + name)
    await writer.drain()


@pytest.fixture
async def fake_server() -> AsyncIterator[Callable[[Script], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await script(reader, writer)
                await writer.drain()
                await asyncio.sleep(0.05)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _screenshot(port: int, **kw: object) -> None:
    client: VncClient = await open_vnc(f"vnc://127.0.0.1:{port}", timeout=5, **kw)  # type: ignore[arg-type]
    async with client:
        await client.screenshot(timeout=5)


async def test_huge_desktop_refused(fake_server) -> None:  # type: ignore[no-untyped-def]
    port = await fake_server(lambda r, w: handshake(r, w, width=65535, height=65535))
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            await _screenshot(port, max_pixels=4096 * 4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


async def test_huge_name_refused(fake_server) -> None:  # type: ignore[no-untyped-def]
    port = await fake_server(lambda r, w: handshake(r, w, name=b"x" * 100, name_len=0x7FFFFFFF))
    with pytest.raises(LimitExceededError):
        await _screenshot(port)


async def test_rect_outside_the_screen(fake_server) -> None:  # type: ignore[no-untyped-def]
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await handshake(r, w)
        w.write(struct.pack(">BxH", 0, 1) + struct.pack(">HHHHi", 60, 40, 10, 10, 0)
                + b"\0" * 400)

    port = await fake_server(script)
    with pytest.raises(ProtocolError):
        await _screenshot(port)


async def test_truncated_rect_then_close(fake_server) -> None:  # type: ignore[no-untyped-def]
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await handshake(r, w)
        w.write(struct.pack(">BxH", 0, 1) + struct.pack(">HHHHi", 0, 0, 64, 48, 0)
                + b"\x11" * 1000)

    port = await fake_server(script)
    with pytest.raises(XcpConsoleError):
        await _screenshot(port)


async def test_zlib_bomb_is_capped(fake_server) -> None:  # type: ignore[no-untyped-def]
    bomb = zlib.compress(b"\0" * 64_000_000, 9)

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await handshake(r, w)
        w.write(struct.pack(">BxH", 0, 1) + struct.pack(">HHHHi", 0, 0, 16, 16, 6)
                + struct.pack(">I", len(bomb)) + bomb)

    port = await fake_server(script)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            await _screenshot(port, encodings="zlib")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, peak


async def test_wrong_version_string(fake_server) -> None:  # type: ignore[no-untyped-def]
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\n\r\n")

    port = await fake_server(script)
    with pytest.raises(ProtocolError):
        await _screenshot(port)


async def test_silent_server_times_out(fake_server) -> None:  # type: ignore[no-untyped-def]
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3)

    port = await fake_server(script)
    with pytest.raises(XcpConsoleError):
        client = await open_vnc(f"vnc://127.0.0.1:{port}", timeout=0.5)
        await client.close()


@pytest.mark.parametrize("seed", range(60))
async def test_random_updates(fake_server, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Random rectangles with plausible headers in every encoding, random payloads."""
    rng = random.Random(seed)

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await handshake(r, w)
        for _ in range(rng.randint(1, 3)):
            n = rng.choice([1, 2, 0xFFFF])
            w.write(struct.pack(">BxH", rng.choice([0, 0, 0, 1, 2, 3, 7, 250]), n))
            for _ in range(min(n, 4)):
                enc = rng.choice([0, 1, 2, 5, 6, 7, 16, -223, -224, -239, -308, 99])
                rw, rh = rng.randint(0, 70), rng.randint(0, 50)
                w.write(struct.pack(">HHHHi", rng.randint(0, 64), rng.randint(0, 48), rw, rh,
                                    enc))
                w.write(rng.randbytes(rng.choice([0, 3, 17, 300, 5000])))
            await w.drain()

    port = await fake_server(script)
    with pytest.raises(XcpConsoleError):
        await _screenshot(port)
