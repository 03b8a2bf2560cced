"""ClientConnection: byte-level handshakes and messages, and full sessions against our
ServerConnection with every server-side encoding in 32 and 16 bpp."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from xcpconsole.errors import (
    AuthError,
    LimitExceededError,
    ProtocolError,
    UnsupportedError,
    UsageError,
)
from xcpconsole.rfb import events as ev
from xcpconsole.rfb.client import ClientConnection, ClientState
from xcpconsole.rfb.constants import Encoding
from xcpconsole.rfb.pixelformat import BGR233, BGRX32, RGB565, PixelFormat
from xcpconsole.rfb.server import CopyRegion, ServerConnection

U32 = struct.Struct(">I")


def drain(conn: ClientConnection | ServerConnection) -> list[object]:
    out = []
    while (e := conn.next_event()) is not None:
        out.append(e)
    return out


def pump(server: ServerConnection, client: ClientConnection,
         sev: list[object] | None = None) -> tuple[list[object], list[object]]:
    """Move bytes both ways until both sides are quiet; (server events, client events)."""
    sev = [] if sev is None else sev
    cev: list[object] = []
    while True:
        s2c, c2s = server.data_to_send(), b""
        if s2c:
            client.receive_data(s2c)
        cev += drain(client)
        c2s = client.data_to_send()
        if c2s:
            server.receive_data(c2s)
        sev += drain(server)
        if not s2c and not c2s:
            return sev, cev


def session(version: tuple[int, int] = (3, 8), encodings: tuple[int, ...] | None = None,
            pixel_format: PixelFormat | None = BGRX32, w: int = 100, h: int = 70
            ) -> tuple[ServerConnection, ClientConnection]:
    server = ServerConnection(width=w, height=h, name="vm \u00e9", version=version,
                              password="pw")
    client = ClientConnection(password="pw", encodings=encodings, pixel_format=pixel_format)
    sev, cev = pump(server, client)
    assert sev[0] == ev.ClientHandshakeDone(shared=True)
    assert cev == [ev.ServerInitReceived(w, h, BGRX32, "vm \u00e9", version, 2)]
    assert client.state is ClientState.NORMAL
    return server, client


def scene(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fb = np.zeros((h, w, 3), np.uint8)
    fb[:] = (0, 0, 170)
    fb[rng.random((h, w)) < 0.15] = (255, 255, 255)
    fb[h // 2:, : w // 3] = rng.integers(0, 256, (h - h // 2, w // 3, 3), dtype=np.uint8)
    fb[5:20, 40:90] = (200, 30, 30)
    return fb


# -- handshake ----------------------------------------------------------------


@pytest.mark.parametrize(("announced", "answer"), [
    (b"RFB 003.008\n", b"RFB 003.008\n"),
    (b"RFB 003.007\n", b"RFB 003.007\n"),
    (b"RFB 003.003\n", b"RFB 003.003\n"),
    (b"RFB 003.889\n", b"RFB 003.003\n"),  # Apple: treated as 3.3 (rfbproto)
    (b"RFB 003.006\n", b"RFB 003.003\n"),
    (b"RFB 004.001\n", b"RFB 003.008\n"),
])
def test_version_answer(announced: bytes, answer: bytes) -> None:
    client = ClientConnection()
    client.receive_data(announced)
    assert drain(client) == []
    assert client.data_to_send() == answer


@pytest.mark.parametrize("bad", [b"RFB 003.002\n", b"RFB 002.009\n", b"SSH-2.0-Open",
                                 b"RFB 03.008\n\n"])
def test_bad_server_versions(bad: bytes) -> None:
    client = ClientConnection()
    client.receive_data(bad)
    with pytest.raises(ProtocolError):
        drain(client)


def test_38_byte_level_none() -> None:
    client = ClientConnection(shared=False, encodings=[0, -223], pixel_format=RGB565)
    client.receive_data(b"RFB 003.008\n\x02\x10\x01")  # offers 16 (Tight auth) and None
    assert drain(client) == []
    assert client.data_to_send() == b"RFB 003.008\n\x01"
    client.receive_data(U32.pack(0))
    drain(client)
    assert client.data_to_send() == b"\x00"  # ClientInit, not shared
    init = struct.pack(">HH", 3, 2) + BGRX32.pack() + U32.pack(3) + b"abc"
    for i in range(len(init)):  # byte by byte
        client.receive_data(init[i:i + 1])
        got = drain(client)
    assert got == [ev.ServerInitReceived(3, 2, BGRX32, "abc", (3, 8), 1)]
    assert client.data_to_send() == (
        b"\x00\x00\x00\x00" + RGB565.pack() + b"\x02\x00\x00\x02" + struct.pack(">ii", 0, -223)
    )
    client.request_update(incremental=False)
    client.key_event(True, 0x61)
    client.pointer_event(1, 50, -3)  # clamped into the frame buffer
    client.cut_text("h\u00e9\u20ac")
    client.xvp(3)
    assert client.data_to_send() == (
        b"\x03\x00" + struct.pack(">HHHH", 0, 0, 3, 2)
        + b"\x04\x01\x00\x00" + U32.pack(0x61)
        + b"\x05\x01" + struct.pack(">HH", 2, 0)
        + b"\x06\x00\x00\x00" + U32.pack(3) + b"h\xe9?"
        + b"\xfa\x00\x01\x03"
    )


@pytest.mark.parametrize("version", [(3, 3), (3, 7), (3, 8)])
def test_sessions_with_password(version: tuple[int, int]) -> None:
    server, client = session(version)
    assert client.version == version == server.version
    assert client.security_type == 2


@pytest.mark.parametrize("version", [(3, 3), (3, 7), (3, 8)])
def test_wrong_password(version: tuple[int, int]) -> None:
    server = ServerConnection(width=4, height=4, name="x", version=version, password="right")
    client = ClientConnection(password="wrong")
    sev: list[object] = []
    with pytest.raises(AuthError, match="authentication failed"):
        pump(server, client, sev)
    assert client.state is ClientState.ERROR  # final: more bytes are refused, with the reason
    with pytest.raises(ProtocolError, match="already failed: VNC authentication failed"):
        client.receive_data(b"\0")
    assert sev == [ev.AuthFailed("authentication failed")]


def test_password_needed() -> None:
    server = ServerConnection(width=4, height=4, name="x", password="right")
    with pytest.raises(AuthError, match="requires a VNC password"):
        pump(server, ClientConnection())


@pytest.mark.parametrize("data", [
    b"RFB 003.008\n\x00" + U32.pack(9) + b"too many!",
    b"RFB 003.003\n" + U32.pack(0) + U32.pack(9) + b"too many!",
])
def test_server_refuses_with_reason(data: bytes) -> None:
    client = ClientConnection()
    client.receive_data(data)
    with pytest.raises(ProtocolError, match="too many!"):
        drain(client)


def test_unknown_security_types() -> None:
    client = ClientConnection()
    client.receive_data(b"RFB 003.008\n\x02\x13\x10")
    with pytest.raises(UnsupportedError, match=r"\[19, 16\]"):
        drain(client)


# -- sessions with our server -------------------------------------------------


@pytest.mark.parametrize("pf", [BGRX32, RGB565, BGR233], ids=["32bpp", "16bpp", "8bpp"])
@pytest.mark.parametrize("encoding", [Encoding.RAW, Encoding.HEXTILE, Encoding.ZRLE])
def test_round_trip_updates(pf: PixelFormat, encoding: int) -> None:
    server, client = session(encodings=(int(encoding), 1), pixel_format=pf)
    assert server.client_pixel_format == pf
    assert server.best_encoding() == encoding
    client.request_update(incremental=False)
    fb = scene(70, 100, seed=1)
    pump(server, client)
    assert server.pending_request == ev.FramebufferUpdateRequest(False, 0, 0, 100, 70)
    want = pf.to_rgb(pf.from_rgb(fb))
    for step in range(3):  # full update, then partial ones through the same zlib stream
        regions = [(0, 0, 100, 70)] if step == 0 else [(10, 5, 33, 40), (60, 0, 40, 3)]
        server.send_update(fb, regions)
        _, cev = pump(server, client)
        assert len(cev) == 1 and isinstance(cev[0], ev.FramebufferUpdated)
        assert client.framebuffer is not None
        assert np.array_equal(client.framebuffer, want)
        fb = scene(70, 100, seed=step + 2)
        fb[:, 43:60] = 7
        want = want.copy()
        new = pf.to_rgb(pf.from_rgb(fb))
        want[5:45, 10:43] = new[5:45, 10:43]
        want[0:3, 60:100] = new[0:3, 60:100]
    # a scroll: CopyRect of everything one line up, then the new line
    before = client.framebuffer.copy()
    server.send_update(fb, [], copies=[CopyRegion(0, 1, 0, 0, 100, 69)])
    _, cev = pump(server, client)
    assert cev == [ev.FramebufferUpdated((ev.RectInfo(0, 0, 100, 69, 1, 16),))]
    assert np.array_equal(client.framebuffer[:69], before[1:])
    assert client.stats.rects[1] == 1 and client.stats.rects[int(encoding)] == 5
    assert client.stats.updates == 4


def test_stats_and_rect_info() -> None:
    server, client = session(encodings=(0,))
    fb = scene(70, 100, 0)
    server.send_update(fb, [(0, 0, 10, 10), (20, 20, 5, 4)])
    _, cev = pump(server, client)
    assert cev == [ev.FramebufferUpdated((
        ev.RectInfo(0, 0, 10, 10, 0, 12 + 400), ev.RectInfo(20, 20, 5, 4, 0, 12 + 80)))]
    assert client.stats.wire_bytes == 4 + 412 + 92
    assert client.stats.pixel_bytes == 480
    assert client.stats.rects == {0: 2}


def test_big_raw_update_in_small_chunks() -> None:
    server, client = session(encodings=(0,), w=300, h=200)
    fb = scene(200, 300, 4)
    server.send_update(fb, [(0, 0, 300, 200)])
    data = server.data_to_send()
    got: list[object] = []
    for i in range(0, len(data), 997):
        client.receive_data(data[i:i + 997])
        got += drain(client)
    assert len(got) == 1
    assert np.array_equal(client.framebuffer, fb)
    assert client._pos == len(client._buf) or client._pos < 1 << 16  # buffer compacts


def test_server_messages_and_desktop_size() -> None:
    server, client = session(encodings=(0, -223, -308, -309))
    server.send_bell()
    server.send_cut_text("caf\u00e9")
    server.send_xvp(1)
    server.send_desktop_size(40, 30)
    _, cev = pump(server, client)
    assert cev[:3] == [ev.Bell(), ev.ServerCutText("caf\u00e9"), ev.XvpMessage(1, 1)]
    assert cev[3] == ev.DesktopResized(40, 30)
    assert isinstance(cev[4], ev.FramebufferUpdated) and cev[4].rects[0].encoding == -308
    assert client.xvp_supported
    assert client.framebuffer is not None and client.framebuffer.shape == (30, 40, 3)
    client.cut_text("x")
    client.xvp(4)
    sev, _ = pump(server, client)
    assert sev == [ev.ClientCutText("x"), ev.XvpRequest(1, 4)]


# -- hand-made server bytes -----------------------------------------------------


def normal_client(w: int = 8, h: int = 4, **kw: object) -> ClientConnection:
    client = ClientConnection(**kw)  # type: ignore[arg-type]
    client.receive_data(b"RFB 003.003\n" + U32.pack(1) + struct.pack(">HH", w, h)
                        + BGRX32.pack() + U32.pack(0))
    drain(client)
    client.data_to_send()
    return client


def rect(x: int, y: int, w: int, h: int, enc: int) -> bytes:
    return struct.pack(">HHHHi", x, y, w, h, enc)


def test_pseudo_encodings_and_last_rect() -> None:
    client = normal_client()
    cursor_px = bytes([0, 0, 255, 0]) * 4  # 2x2 red
    cursor_mask = bytes([0b10000000, 0b01000000])
    data = (
        b"\x00\x00\xff\xff"
        + rect(1, 0, 2, 2, -239) + cursor_px + cursor_mask
        + rect(0, 0, 1, 1, 0) + b"\x01\x02\x03\x00"
        + rect(0, 0, 0, 0, -224)
        + b"\x00\x00\x00\x01" + rect(0, 0, 6, 5, -223)
        + b"\x00\x00\x00\x01" + rect(1, 3, 6, 5, -308) + b"\x01\x00\x00\x00" + bytes(16)
    )
    client.receive_data(data)
    got = drain(client)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[0, 0, 3] = rgba[1, 1, 3] = 255
    assert got == [
        ev.CursorShape(1, 0, 2, 2, rgba),
        ev.FramebufferUpdated((ev.RectInfo(1, 0, 2, 2, -239, 30), ev.RectInfo(0, 0, 1, 1, 0, 16),
                               ev.RectInfo(0, 0, 0, 0, -224, 12))),
        ev.DesktopResized(6, 5),
        ev.FramebufferUpdated((ev.RectInfo(0, 0, 6, 5, -223, 12),)),
        ev.FramebufferUpdated((ev.RectInfo(1, 3, 6, 5, -308, 32),)),  # status 3: no resize
    ]
    assert (client.width, client.height) == (6, 5)


def test_empty_update_and_colour_map() -> None:
    client = normal_client()
    client.receive_data(b"\x00\x00\x00\x00" + b"\x01\x00\x00\x02\x00\x02"
                        + struct.pack(">6H", 1, 2, 3, 65535, 0, 0))
    assert drain(client) == [ev.FramebufferUpdated(()),
                             ev.ColourMapEntries(2, ((1, 2, 3), (65535, 0, 0)))]


@pytest.mark.parametrize(("data", "error", "match"), [
    (b"\x03\x00\x00\x00" + U32.pack(1 << 30), LimitExceededError, "ServerCutText"),
    (b"\x07", UnsupportedError, "type 7 in state NORMAL"),
    (b"\x00\x00\x00\x01" + rect(5, 0, 4, 1, 0), ProtocolError, "outside"),
    (b"\x00\x00\x00\x01" + rect(0, 0, 1, 1, 99), UnsupportedError, "encoding 99"),
    (b"\x00\x00\x00\x01" + rect(0, 0, 9000, 9000, -223), LimitExceededError, "DesktopSize"),
    (b"\x00\x00\x00\x01" + rect(0, 0, 5000, 1, -239), LimitExceededError, "cursor"),
    (b"\x01\x00\xff\xff\x00\x02", ProtocolError, "SetColourMapEntries"),
])
def test_hostile_server_messages(data: bytes, error: type[Exception], match: str) -> None:
    client = normal_client()
    client.receive_data(data)
    with pytest.raises(error, match=match):
        drain(client)


def test_server_init_bounds() -> None:
    client = ClientConnection(max_pixels=1000)
    client.receive_data(b"RFB 003.003\n" + U32.pack(1) + struct.pack(">HH", 100, 11)
                        + BGRX32.pack() + U32.pack(0))
    with pytest.raises(LimitExceededError, match="ServerInit"):
        drain(client)
    client = ClientConnection()
    client.receive_data(b"RFB 003.003\n" + U32.pack(1) + struct.pack(">HH", 1, 1)
                        + BGRX32.pack() + U32.pack(1 << 20))
    with pytest.raises(LimitExceededError, match="desktop name"):
        drain(client)
    client = ClientConnection(pixel_format=None)
    bad = PixelFormat(24, 24, False, True, 255, 255, 255, 16, 8, 0)
    client.receive_data(b"RFB 003.003\n" + U32.pack(1) + struct.pack(">HH", 1, 1)
                        + bad.pack() + U32.pack(0))
    with pytest.raises(UnsupportedError, match="SERVER_INIT"):
        drain(client)


def test_requests_before_handshake_fail() -> None:
    with pytest.raises(UsageError, match="state VERSION"):
        ClientConnection().request_update()


def test_eof() -> None:
    client = normal_client()
    client.receive_data(b"")
    assert drain(client) == [ev.ConnectionClosed()]
    assert client.state is ClientState.CLOSED
