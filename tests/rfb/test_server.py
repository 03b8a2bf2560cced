"""ServerConnection, byte level: feed client bytes, compare events and server bytes."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import pytest

from xcpconsole.errors import LimitExceededError, ProtocolError, UnsupportedError, UsageError
from xcpconsole.rfb import events as ev
from xcpconsole.rfb.auth import vnc_auth_response
from xcpconsole.rfb.constants import Encoding
from xcpconsole.rfb.pixelformat import BGRX32, RGB565, PixelFormat
from xcpconsole.rfb.server import CopyRegion, ServerConnection, ServerState

U32 = struct.Struct(">I")
SERVER_INIT_4x2 = (
    struct.pack(">HH", 4, 2) + BGRX32.pack() + U32.pack(2) + b"vm"
)


def events(conn: ServerConnection) -> list[object]:
    out = []
    while (e := conn.next_event()) is not None:
        out.append(e)
    return out


def normal(encodings: tuple[int, ...] = (), **kw: object) -> ServerConnection:
    """A server in state NORMAL after a 3.8 / None handshake."""
    conn = ServerConnection(width=4, height=2, name="vm", **kw)  # type: ignore[arg-type]
    conn.receive_data(b"RFB 003.008\n\x01\x01")
    assert events(conn) == [ev.ClientHandshakeDone(shared=True)]
    if encodings:
        conn.receive_data(b"\x02\x00" + struct.pack(">H", len(encodings))
                          + struct.pack(f">{len(encodings)}i", *encodings))
        assert events(conn) == [ev.SetEncodings(encodings)]
    conn.data_to_send()
    return conn


# -- handshake ----------------------------------------------------------------


def test_38_none_handshake_bytes() -> None:
    conn = ServerConnection(width=4, height=2, name="vm")
    assert conn.data_to_send() == b"RFB 003.008\n"
    conn.receive_data(b"RFB 003.008\n")
    assert events(conn) == []
    assert conn.data_to_send() == b"\x01\x01"
    assert conn.state is ServerState.SECURITY
    conn.receive_data(b"\x01")
    assert events(conn) == []
    assert conn.data_to_send() == U32.pack(0)
    conn.receive_data(b"\x00")
    assert events(conn) == [ev.ClientHandshakeDone(shared=False)]
    assert conn.data_to_send() == SERVER_INIT_4x2
    assert conn.state is ServerState.NORMAL


@pytest.mark.parametrize("answer", [b"RFB 003.003\n", b"RFB 003.889\n", b"RFB 003.005\n"])
def test_38_server_falls_back_to_33(answer: bytes) -> None:
    conn = ServerConnection(width=4, height=2, name="vm")
    conn.data_to_send()
    conn.receive_data(answer)
    assert events(conn) == []
    assert conn.version == (3, 3)
    assert conn.data_to_send() == U32.pack(1)  # the server decides: None, no SecurityResult
    conn.receive_data(b"\x01")
    assert events(conn) == [ev.ClientHandshakeDone(shared=True)]
    assert conn.data_to_send() == SERVER_INIT_4x2


def test_38_server_accepts_37_without_security_result() -> None:
    conn = ServerConnection(width=4, height=2, name="vm")
    conn.data_to_send()
    conn.receive_data(b"RFB 003.007\n\x01")
    assert events(conn) == []
    assert conn.data_to_send() == b"\x01\x01"  # no SecurityResult for None in 3.7
    conn.receive_data(b"\x01")
    assert events(conn) == [ev.ClientHandshakeDone(shared=True)]


def test_33_server_like_vncterm() -> None:
    conn = ServerConnection(width=4, height=2, name="vm", version=(3, 3))
    assert conn.data_to_send() == b"RFB 003.003\n"
    conn.receive_data(b"RFB 003.003\n\x01")
    assert events(conn) == [ev.ClientHandshakeDone(shared=True)]
    assert conn.data_to_send() == U32.pack(1) + SERVER_INIT_4x2


def test_33_server_refuses_38_answer() -> None:
    conn = ServerConnection(width=4, height=2, name="vm", version=(3, 3))
    conn.receive_data(b"RFB 003.008\n")
    with pytest.raises(UnsupportedError, match="VERSION"):
        conn.next_event()


@pytest.mark.parametrize("bad", [b"RFB 003.00x\n", b"HTTP/1.1 200", b"RFB 002.000\n",
                                 b"RFB 003.008\r"])
def test_bad_version_strings(bad: bytes) -> None:
    conn = ServerConnection(width=4, height=2, name="vm")
    conn.receive_data(bad)
    with pytest.raises(ProtocolError):
        conn.next_event()


@pytest.mark.parametrize("version", [(3, 8), (3, 7), (3, 3)])
def test_vnc_auth_success(version: tuple[int, int]) -> None:
    conn = ServerConnection(width=4, height=2, name="vm", password="secret", version=version)
    conn.data_to_send()
    conn.receive_data(b"RFB %03d.%03d\n" % version)
    events(conn)
    if version == (3, 3):
        head = conn.data_to_send()
        assert head[:4] == U32.pack(2)
        challenge = head[4:]
    else:
        assert conn.data_to_send() == b"\x01\x02"
        conn.receive_data(b"\x02")
        events(conn)
        challenge = conn.data_to_send()
    assert len(challenge) == 16
    assert conn.state is ServerState.AUTH
    conn.receive_data(vnc_auth_response("secret", challenge))
    assert events(conn) == []
    assert conn.data_to_send() == U32.pack(0)
    conn.receive_data(b"\x01")
    assert events(conn) == [ev.ClientHandshakeDone(shared=True)]


@pytest.mark.parametrize("version", [(3, 8), (3, 7), (3, 3)])
def test_vnc_auth_failure(version: tuple[int, int]) -> None:
    conn = ServerConnection(width=4, height=2, name="vm", password="secret", version=version)
    conn.receive_data(b"RFB %03d.%03d\n" % version)
    events(conn)
    if version != (3, 3):
        conn.receive_data(b"\x02")
        events(conn)
    challenge = conn.data_to_send()[-16:]
    conn.receive_data(vnc_auth_response("wrong", challenge) + b"\x01")
    assert events(conn) == [ev.AuthFailed("authentication failed")]
    expected = U32.pack(1)
    if version == (3, 8):
        expected += U32.pack(21) + b"authentication failed"
    assert conn.data_to_send() == expected
    assert conn.state is ServerState.CLOSED
    conn.receive_data(b"more")  # ignored once closed
    assert events(conn) == []


def test_security_type_not_offered() -> None:
    conn = ServerConnection(width=4, height=2, name="vm", password="pw")
    conn.receive_data(b"RFB 003.008\n\x01")
    with pytest.raises(UnsupportedError, match="SECURITY"):
        events(conn)
    out = conn.data_to_send()
    assert out.endswith(U32.pack(1) + U32.pack(25) + b"security type not offered")


def test_eof_gives_connection_closed() -> None:
    conn = normal()
    conn.receive_data(b"")
    assert events(conn) == [ev.ConnectionClosed()]
    assert conn.state is ServerState.CLOSED


# -- client messages ----------------------------------------------------------

CLIENT_BYTES = (
    b"\x00\x00\x00\x00" + RGB565.pack()
    + b"\x02\x00\x00\x03" + struct.pack(">iii", 16, 5, -309)
    + b"\x03\x01" + struct.pack(">HHHH", 1, 0, 3, 2)
    + b"\x04\x01\x00\x00" + U32.pack(0xFF0D)
    + b"\x05\x03" + struct.pack(">HH", 3, 1)
    + b"\x06\x00\x00\x00" + U32.pack(3) + b"h\xe9!"
    + b"\xfa\x00\x01\x04"
)
CLIENT_EVENTS = [
    ev.SetPixelFormat(RGB565),
    ev.SetEncodings((16, 5, -309)),
    ev.FramebufferUpdateRequest(True, 1, 0, 3, 2),
    ev.KeyEvent(True, 0xFF0D),
    ev.PointerEvent(3, 3, 1),
    ev.ClientCutText("hé!"),
    ev.XvpRequest(1, 4),
]


def test_all_client_messages_at_once() -> None:
    conn = normal()
    conn.receive_data(CLIENT_BYTES)
    assert events(conn) == CLIENT_EVENTS
    assert conn.client_pixel_format == RGB565
    assert conn.supports(Encoding.XVP) and not conn.supports(Encoding.COPYRECT)
    assert conn.best_encoding() == Encoding.ZRLE
    assert conn.pending_request == ev.FramebufferUpdateRequest(True, 1, 0, 3, 2)


def test_client_messages_byte_by_byte() -> None:
    conn = normal()
    got = []
    for i in range(len(CLIENT_BYTES)):
        conn.receive_data(CLIENT_BYTES[i:i + 1])
        got += events(conn)
    assert got == CLIENT_EVENTS


def test_update_requests_merge_until_sent() -> None:
    conn = normal()
    conn.receive_data(b"\x03\x01" + struct.pack(">HHHH", 0, 0, 1, 1)
                      + b"\x03\x00" + struct.pack(">HHHH", 2, 1, 2, 1))
    events(conn)
    assert conn.pending_request == ev.FramebufferUpdateRequest(False, 0, 0, 4, 2)
    conn.send_update(np.zeros((2, 4, 3), np.uint8), [])
    assert conn.pending_request is None


@pytest.mark.parametrize(("data", "error", "match"), [
    (b"\x06\x00\x00\x00" + U32.pack(0xFFFFFFF0), LimitExceededError, "ClientCutText"),
    (b"\x02\x00\xff\xff", LimitExceededError, "SetEncodings"),
    (b"\x63", UnsupportedError, "type 99 in state NORMAL"),
    (b"\x00\x00\x00\x00" + PixelFormat(24, 24, False, True, 255, 255, 255, 16, 8, 0).pack(),
     UnsupportedError, "bits-per-pixel"),
    (b"\x00\x00\x00\x00" + PixelFormat(32, 24, False, True, 254, 255, 255, 16, 8, 0).pack(),
     UnsupportedError, "2\\^n-1"),
    (b"\x00\x00\x00\x00" + PixelFormat(16, 16, False, True, 255, 255, 255, 16, 8, 0).pack(),
     UnsupportedError, "shift"),
])
def test_hostile_client_messages(data: bytes, error: type[Exception], match: str) -> None:
    conn = normal()
    conn.receive_data(data)
    with pytest.raises(error, match=match):
        events(conn)


def test_colour_map_client_gets_a_colour_map() -> None:
    conn = normal(encodings=())
    cmap = PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0)
    conn.receive_data(b"\x00\x00\x00\x00" + cmap.pack())
    assert events(conn) == [ev.SetPixelFormat(cmap)]
    out = conn.data_to_send()
    assert out[:6] == b"\x01\x00\x00\x00\x01\x00"
    assert len(out) == 6 + 256 * 6
    assert out[6 + 255 * 6:] == b"\xff\xff" * 3  # entry 255 = 7,7,3 = white
    fb = np.zeros((2, 4, 3), np.uint8)
    fb[0, 0] = (255, 255, 255)
    conn.send_update(fb, [(0, 0, 2, 1)])
    assert conn.data_to_send()[-2:] == b"\xff\x00"


def test_set_desktop_size_is_refused() -> None:
    conn = normal(encodings=(-308,))
    conn.receive_data(b"\xfb\x00" + struct.pack(">HHBx", 8, 8, 1) + bytes(16))
    assert events(conn) == []
    assert conn.data_to_send() == (
        b"\x00\x00\x00\x01" + struct.pack(">HHHHi", 1, 1, 4, 2, -308)
        + b"\x01\x00\x00\x00" + struct.pack(">IHHHHI", 0, 0, 0, 4, 2, 0)
    )


# -- server messages ----------------------------------------------------------


def test_raw_update_bytes_in_client_format() -> None:
    conn = normal()
    conn.receive_data(b"\x00\x00\x00\x00" + RGB565.pack())
    events(conn)
    fb = np.zeros((2, 4, 3), np.uint8)
    fb[1, 2] = (255, 0, 0)
    fb[1, 3] = (0, 0, 255)
    conn.send_update(fb, [(2, 1, 5, 5)])  # clipped to 2x1
    assert conn.data_to_send() == (
        b"\x00\x00\x00\x01" + struct.pack(">HHHHi", 2, 1, 2, 1, 0) + b"\x00\xf8\x1f\x00"
    )


def test_copyrect_and_fallback() -> None:
    fb = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    conn = normal(encodings=(1,))
    conn.send_update(fb, [(0, 0, 1, 1)], copies=[CopyRegion(0, 0, 2, 1, 2, 1)])
    assert conn.data_to_send() == (
        b"\x00\x00\x00\x02"
        + struct.pack(">HHHHi", 2, 1, 2, 1, 1) + struct.pack(">HH", 0, 0)
        + struct.pack(">HHHHi", 0, 0, 1, 1, 0) + bytes([2, 1, 0, 0])
    )
    conn = normal()  # no CopyRect: the destination pixels are sent instead
    conn.send_update(fb, [], copies=[CopyRegion(0, 0, 3, 1, 1, 1)])
    assert conn.data_to_send() == (
        b"\x00\x00\x00\x01" + struct.pack(">HHHHi", 3, 1, 1, 1, 0) + bytes([23, 22, 21, 0])
    )
    with pytest.raises(UsageError, match="leaves"):
        conn.send_update(fb, [], copies=[CopyRegion(3, 0, 0, 0, 2, 1)])


def test_encoding_preference() -> None:
    assert normal(encodings=(7, 16, 1, 5, 0)).best_encoding() == Encoding.ZRLE
    assert normal(encodings=(5, 16, 0)).best_encoding() == Encoding.HEXTILE
    assert normal(encodings=(-239, 0, 16)).best_encoding() == Encoding.RAW
    assert normal(encodings=(7, 2)).best_encoding() == Encoding.RAW


def test_small_messages() -> None:
    conn = normal()
    conn.send_bell()
    conn.send_cut_text("hé€")
    conn.send_xvp(1)
    assert conn.data_to_send() == (
        b"\x02" + b"\x03\x00\x00\x00" + U32.pack(3) + b"h\xe9?" + b"\xfa\x00\x01\x01"
    )


def test_desktop_size() -> None:
    conn = normal(encodings=(-223,))
    conn.send_desktop_size(8, 6)
    assert conn.data_to_send() == b"\x00\x00\x00\x01" + struct.pack(">HHHHi", 0, 0, 8, 6, -223)
    assert (conn.width, conn.height) == (8, 6)
    conn = normal(encodings=(-223, -308))
    conn.send_desktop_size(8, 6)
    assert conn.data_to_send() == (
        b"\x00\x00\x00\x01" + struct.pack(">HHHHi", 0, 0, 8, 6, -308)
        + b"\x01\x00\x00\x00" + struct.pack(">IHHHHI", 0, 0, 0, 8, 6, 0)
    )
    conn = normal()
    conn.send_desktop_size(8, 6)
    assert conn.data_to_send() == b""


def test_sending_before_handshake_is_an_error() -> None:
    conn = ServerConnection(width=4, height=2, name="vm")
    with pytest.raises(UsageError, match="state VERSION"):
        conn.send_bell()


# -- a real viewer: TigerVNC's vncviewer decodes what we encode ----------------


def _picture() -> np.ndarray:
    """Noise, solid blocks, a 2-colour checkerboard and a few-colour stripe pattern."""
    rng = np.random.default_rng(5)
    pic = np.zeros((200, 320, 3), np.uint8)
    pic[:] = (0, 0, 170)
    pic[:, :90] = rng.integers(0, 256, (200, 90, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:200, 0:100]
    pic[:, 100:200][(yy + xx) % 2 == 1] = (255, 255, 85)
    pal = rng.integers(0, 256, (9, 3), dtype=np.uint8)
    pic[:, 210:320] = pal[(np.arange(110) // 5) % 9]
    pic[130:170, 20:300] = (200, 40, 40)
    return pic


@pytest.fixture
def xvfb() -> Iterator[str]:
    """A private Xvfb display for the viewer; stopped in teardown."""
    import os
    import select
    import shutil
    import subprocess

    exe = shutil.which("Xvfb")
    assert exe, "Xvfb is required"
    rfd, wfd = os.pipe()
    proc = subprocess.Popen([exe, "-displayfd", str(wfd), "-screen", "0", "640x480x24",
                             "-nolisten", "tcp"], pass_fds=(wfd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(wfd)
    try:
        ready, _, _ = select.select([rfd], [], [], 20)
        number = os.read(rfd, 64).decode().strip() if ready else ""
        assert number.isdigit(), "Xvfb did not report its display"
        yield ":" + number
    finally:
        os.close(rfd)
        proc.terminate()
        proc.wait(10)


@pytest.mark.peers
@pytest.mark.parametrize(("encoding", "full_colour", "used"), [
    ("ZRLE", 1, Encoding.ZRLE), ("Hextile", 1, Encoding.HEXTILE), ("Raw", 1, Encoding.RAW),
    ("ZRLE", 0, Encoding.ZRLE), ("Hextile", 0, Encoding.HEXTILE),
])
def test_tigervnc_viewer_shows_our_pixels(xvfb: str, encoding: str, full_colour: int,
                                          used: int) -> None:
    """Serve a picture to vncviewer (32 bpp, or 8 bpp BGR233 with FullColor=0) and compare
    its window, grabbed by ImageMagick, with the picture in the viewer's pixel format."""
    import io
    import os
    import shutil
    import socket
    import subprocess
    import threading
    import time

    from PIL import Image

    for tool in ("vncviewer", "import", "xdotool"):
        assert shutil.which(tool), f"{tool} is required"
    pic = _picture()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(20)
    seen: dict[str, object] = {}
    decoded = threading.Event()

    def serve() -> None:
        sock, _ = listener.accept()
        sock.settimeout(30)
        srv = ServerConnection(width=320, height=200, name="xcpconsole-test")
        with sock:
            sock.sendall(srv.data_to_send())
            while data := sock.recv(65536):
                srv.receive_data(data)
                while (e := srv.next_event()) is not None:
                    if isinstance(e, ev.FramebufferUpdateRequest):
                        if not e.incremental:
                            seen["encoding"] = srv.best_encoding()
                            seen["pf"] = srv.client_pixel_format
                            srv.send_update(pic, [(0, 0, 320, 200)])
                        else:  # asked for more: the first update is decoded
                            decoded.set()
                sock.sendall(srv.data_to_send())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    env = {**os.environ, "DISPLAY": xvfb}
    viewer = subprocess.Popen(
        ["vncviewer", "-geometry", "+0+0", f"-PreferredEncoding={encoding}", "-AutoSelect=0",
         f"-FullColor={full_colour}", "-LowColorLevel=2", "-SecurityTypes=None",
         f"127.0.0.1::{listener.getsockname()[1]}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert decoded.wait(30), "the viewer never asked for a second update"
        assert seen["encoding"] == used
        pf = seen["pf"]
        assert isinstance(pf, PixelFormat)
        assert pf.bits_per_pixel == (32 if full_colour else 8)
        want = pf.from_rgb(pic)
        # The viewer shows a "Press F8" banner over rows ~40-120 for a few seconds at
        # start; compare the rows outside it and wait (bounded) for the window to be drawn.
        rows = np.r_[0:35, 125:200]
        deadline = time.monotonic() + 20
        while True:
            wid = subprocess.run(["xdotool", "search", "--name", "xcpconsole-test"], env=env,
                                 capture_output=True, timeout=10).stdout.split()
            bad = -1
            if wid:
                png = subprocess.run(["import", "-window", wid[-1], "png:-"], env=env,
                                     capture_output=True, timeout=10).stdout
                if png:
                    shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
                    if shot.shape == pic.shape:
                        bad = int((pf.from_rgb(shot)[rows] != want[rows]).sum())
                        if bad == 0:
                            break
            assert time.monotonic() < deadline, f"viewer window differs ({bad} pixels)"
            time.sleep(0.2)
    finally:
        viewer.terminate()
        viewer.wait(10)
        listener.close()
        thread.join(10)
