"""Several VNC clients on the HVM guest's QEMU at once, through ``/console``.

QEMU listens on its VNC unix socket with a backlog of 1; the ``/console``
relay must wait for QEMU to accept (like xapi's blocking connect) instead of
dropping clients that arrive while the backlog is full.  QEMU runs with
xenopsd's ``-vnc`` options, i.e. QEMU's default share policy
``allow-exclusive``; the tests pin that behaviour down too.

Clients are raw RFB over a raw ``CONNECT /console`` tunnel (asyncio + TLS):
version 3.8, security None, ClientInit with the shared flag under test,
Raw encoding only, one non-incremental FramebufferUpdateRequest.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from xcpconsole.sim.console import connect_unix

from .conftest import IO_TIMEOUT

OK_REPLY = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"
CLIENTS = 6
ROUNDS = 4


@dataclass
class Viewer:
    """One raw RFB client through the tunnel, up to its first full frame."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    width: int = 0
    height: int = 0
    name: bytes = b""
    frame: np.ndarray | None = None

    async def read(self, n: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), IO_TIMEOUT)

    async def handshake(self, shared: bool) -> None:
        """Version, security None, ClientInit(shared); reads ServerInit."""
        assert await self.read(12) == b"RFB 003.008\n"
        self.writer.write(b"RFB 003.008\n")
        count = (await self.read(1))[0]
        assert 1 in await self.read(count)
        self.writer.write(b"\x01")
        assert await self.read(4) == b"\0\0\0\0"  # SecurityResult OK
        self.writer.write(bytes([1 if shared else 0]))
        init = await self.read(24)
        self.width, self.height = struct.unpack(">HH", init[:4])
        bpp, _depth, big_endian, true_colour = init[4:8]
        assert (bpp, true_colour) == (32, 1)
        self.big_endian = bool(big_endian)
        self.shifts = init[14:17]  # red, green, blue shifts (max 255 each, checked below)
        assert struct.unpack(">HHH", init[8:14]) == (255, 255, 255)
        (name_len,) = struct.unpack(">I", init[20:24])
        assert name_len < 4096
        self.name = await self.read(name_len)

    async def full_frame(self) -> np.ndarray:
        """SetEncodings [Raw], one full non-incremental update, decoded to RGB."""
        self.writer.write(struct.pack(">BBHi", 2, 0, 1, 0))
        self.writer.write(struct.pack(">BBHHHH", 3, 0, 0, 0, self.width, self.height))
        rgb = np.zeros((self.height, self.width, 3), np.uint8)
        seen = np.zeros((self.height, self.width), bool)
        while not seen.all():
            kind = (await self.read(1))[0]
            assert kind == 0, f"server message type {kind} before the frame"
            (rects,) = struct.unpack(">xH", await self.read(3))
            for _ in range(rects):
                x, y, w, h, enc = struct.unpack(">HHHHi", await self.read(12))
                assert enc == 0 and x + w <= self.width and y + h <= self.height
                pixels = np.frombuffer(await self.read(w * h * 4), ">u4" if self.big_endian
                                       else "<u4").reshape(h, w)
                for channel, shift in enumerate(self.shifts):
                    rgb[y:y + h, x:x + w, channel] = (pixels >> shift) & 0xFF
                seen[y:y + h, x:x + w] = True
        self.frame = rgb
        return rgb

    async def at_eof(self) -> bool:
        """True when the server closes; bytes that still arrive (updates) are skipped."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), IO_TIMEOUT):
                pass
        except ConnectionError:
            pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), 5.0)


def _ids(sim_host) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A session id (left logged in for the module) and win-hvm's rfb console ref."""
    s = sim_host.session()
    vm = s.xenapi.VM.get_by_name_label("win-hvm")[0]
    ref = next(c for c in s.xenapi.VM.get_consoles(vm)
               if s.xenapi.console.get_protocol(c) == "rfb")
    return s._session, ref


async def _open(port: int, sid: str, ref: str) -> Viewer:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, limit=1 << 22), IO_TIMEOUT
    )
    writer.write(f"CONNECT /console?ref={ref}&session_id={sid} HTTP/1.0\r\n\r\n".encode())
    viewer = Viewer(reader, writer)
    assert await viewer.read(len(OK_REPLY)) == OK_REPLY
    return viewer


async def _view(port: int, sid: str, ref: str, shared: bool) -> Viewer | BaseException:
    """Handshake and first frame; the exception instead when the server dropped us."""
    viewer = await _open(port, sid, ref)
    try:
        await viewer.handshake(shared)
        await viewer.full_frame()
        return viewer
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        await viewer.close()
        return exc


async def _shared_view(port: int, sid: str, ref: str) -> Viewer:
    """A shared viewer, retried while QEMU still has an exclusive client that just left
    (its disconnect travels client -> relay -> QEMU after our close returns)."""
    for _ in range(100):
        viewer = await _view(port, sid, ref, True)
        if isinstance(viewer, Viewer):
            return viewer
        await asyncio.sleep(0.05)
    raise AssertionError(f"shared viewers keep being dropped: {viewer!r}")


def _same_screen(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal but for the text cursor, which QEMU blinks (at most one character cell)."""
    differ = np.argwhere((a != b).any(axis=2))
    if len(differ) == 0:
        return True
    (y0, x0), (y1, x1) = differ.min(axis=0), differ.max(axis=0)
    return bool(y1 - y0 < 16 and x1 - x0 < 9)


def test_six_shared_clients_at_once_all_get_a_full_frame(sim_host) -> None:  # type: ignore[no-untyped-def]
    sid, ref = _ids(sim_host)

    async def rounds() -> list[list[Viewer | BaseException]]:
        await (await _shared_view(sim_host.port, sid, ref)).close()  # no exclusive left over
        results = []
        for _ in range(ROUNDS):
            got = await asyncio.gather(
                *(_view(sim_host.port, sid, ref, True) for _ in range(CLIENTS))
            )
            results.append(list(got))
            for viewer in got:
                if isinstance(viewer, Viewer):
                    await viewer.close()
        return results

    results = asyncio.run(rounds())
    reference = None
    for number, got in enumerate(results):
        failed = [repr(v) for v in got if not isinstance(v, Viewer)]
        assert not failed, f"round {number}: {failed}"
        for viewer in got:
            assert isinstance(viewer, Viewer) and viewer.frame is not None
            assert viewer.name == b"QEMU (win-hvm)"
            assert (viewer.width, viewer.height) == (viewer.frame.shape[1], viewer.frame.shape[0])
            # SeaBIOS text on a black screen: not a blank frame.
            assert len(np.unique(viewer.frame.reshape(-1, 3), axis=0)) > 1
            reference = viewer.frame if reference is None else reference
            assert _same_screen(viewer.frame, reference)


def test_exclusive_client_disconnects_the_shared_ones(sim_host) -> None:  # type: ignore[no-untyped-def]
    """QEMU's default ``share=allow-exclusive``, as xenopsd starts it on a real host."""
    sid, ref = _ids(sim_host)

    async def scenario() -> None:
        first = await _shared_view(sim_host.port, sid, ref)
        second = await _shared_view(sim_host.port, sid, ref)
        exclusive = await _view(sim_host.port, sid, ref, False)
        assert isinstance(exclusive, Viewer) and exclusive.frame is not None
        assert _same_screen(exclusive.frame, first.frame)  # type: ignore[arg-type]
        # The shared viewers are disconnected, and the tunnel passes that on.
        assert await first.at_eof() and await second.at_eof()
        # While the exclusive viewer is connected, a shared one is refused after ClientInit.
        late = await _view(sim_host.port, sid, ref, True)
        assert isinstance(late, asyncio.IncompleteReadError | ConnectionError)
        await exclusive.close()
        # Once it has gone, shared viewers get in again.
        again = await _shared_view(sim_host.port, sid, ref)
        await again.close()
        for viewer in (first, second):
            await viewer.close()

    asyncio.run(scenario())


def test_mixed_shared_flags_at_once_never_stall(sim_host) -> None:  # type: ignore[no-untyped-def]
    """Shared-flag 0 for some of 6 simultaneous clients: each either gets its frame or a
    clean close (QEMU dropped it), none hangs, and the last exclusive one always wins."""
    sid, ref = _ids(sim_host)
    flags = [True, False, True, True, False, True]

    async def rounds() -> None:
        for number in range(ROUNDS):
            got = await asyncio.gather(
                *(_view(sim_host.port, sid, ref, shared) for shared in flags)
            )
            winners = [v for v in got if isinstance(v, Viewer)]
            for viewer in got:
                assert isinstance(viewer, Viewer | asyncio.IncompleteReadError
                                  | ConnectionResetError | BrokenPipeError), (number, viewer)
            # Whoever QEMU disconnected got EOF from the tunnel; someone is left watching.
            assert winners, f"round {number}: every client was dropped"
            for viewer in winners:
                await viewer.close()

    asyncio.run(rounds())


async def _accept_all(listener: socket.socket, count: int) -> list[socket.socket]:
    loop = asyncio.get_running_loop()
    return [(await loop.sock_accept(listener))[0] for _ in range(count)]


def test_connect_unix_waits_while_the_backlog_is_full(tmp_path: Path) -> None:
    """The cause of the dropped clients: a full backlog makes connect(2) fail with EAGAIN."""
    path = tmp_path / "rfb.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)  # like QEMU's VNC listener
    listener.setblocking(False)
    filler: list[socket.socket] = []
    try:
        # Fill the backlog so that a plain non-blocking connect gets EAGAIN.
        while True:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.setblocking(False)
            try:
                probe.connect(str(path))
            except BlockingIOError as exc:
                assert exc.errno == errno.EAGAIN
                probe.close()
                break
            filler.append(probe)
            assert len(filler) < 64

        async def scenario() -> None:
            waiting = [asyncio.create_task(connect_unix(path, IO_TIMEOUT)) for _ in range(3)]
            await asyncio.sleep(0.1)
            assert not any(task.done() for task in waiting)  # waiting, not failed
            accepted = await _accept_all(listener, len(filler) + 3)
            streams = await asyncio.gather(*waiting)
            for number, (_, writer) in enumerate(streams):
                writer.write(bytes([number]))
                await writer.drain()
            received = sorted(
                b for conn in accepted[len(filler):] for b in conn.recv(1)  # blocking: sent
            )
            assert received == [0, 1, 2]
            for conn in accepted:
                conn.close()
            for _, writer in streams:
                writer.close()

        asyncio.run(scenario())
    finally:
        for probe in filler:
            probe.close()
        listener.close()


def test_connect_unix_fails_at_once_without_a_listener(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        asyncio.run(connect_unix(tmp_path / "none.sock", IO_TIMEOUT))
