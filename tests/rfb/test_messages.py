"""Message codecs: exact bytes, every prefix of a message is "need more", bounds, and
random bytes into both state machines (only ProtocolError subclasses may escape)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xcpconsole.errors import AuthError, LimitExceededError, ProtocolError, UnsupportedError
from xcpconsole.rfb import events as ev
from xcpconsole.rfb import handshake as hs
from xcpconsole.rfb import messages as msg
from xcpconsole.rfb.client import ClientConnection
from xcpconsole.rfb.pixelformat import BGRX32, RGB565
from xcpconsole.rfb.server import ServerConnection

CLIENT_MESSAGES = [
    (msg.pack_set_pixel_format(RGB565), ev.SetPixelFormat(RGB565)),
    (msg.pack_set_encodings([16, 0, -309]), ev.SetEncodings((16, 0, -309))),
    (msg.pack_set_encodings([]), ev.SetEncodings(())),
    (msg.pack_framebuffer_update_request(False, 1, 2, 3, 4),
     ev.FramebufferUpdateRequest(False, 1, 2, 3, 4)),
    (msg.pack_key_event(False, 0xFFE1), ev.KeyEvent(False, 0xFFE1)),
    (msg.pack_pointer_event(0x18, 65535, 0), ev.PointerEvent(0x18, 65535, 0)),
    (msg.pack_client_cut_text("a\u00ff"), ev.ClientCutText("a\u00ff")),
    (msg.pack_client_cut_text(""), ev.ClientCutText("")),
    (msg.pack_client_xvp(2), ev.XvpRequest(1, 2)),
]
SERVER_MESSAGES = [
    (msg.pack_framebuffer_update_header(3), msg.FramebufferUpdateStart(3)),
    (msg.pack_set_colour_map_entries(5, [(1, 2, 3)]), ev.ColourMapEntries(5, ((1, 2, 3),))),
    (msg.pack_bell(), ev.Bell()),
    (msg.pack_server_cut_text("x\u00e9"), ev.ServerCutText("x\u00e9")),
    (msg.pack_server_xvp(0), ev.XvpMessage(1, 0)),
]


@pytest.mark.parametrize(("data", "event"), CLIENT_MESSAGES)
def test_client_message_prefixes(data: bytes, event: object) -> None:
    for i in range(len(data)):
        assert msg.parse_client_message(data[:i], "NORMAL") is None
    assert msg.parse_client_message(data + b"junk", "NORMAL") == (event, len(data))
    assert msg.parse_client_message(memoryview(bytearray(data)), "NORMAL") == (event, len(data))


@pytest.mark.parametrize(("data", "event"), SERVER_MESSAGES)
def test_server_message_prefixes(data: bytes, event: object) -> None:
    for i in range(len(data)):
        assert msg.parse_server_message(data[:i], "NORMAL") is None
    assert msg.parse_server_message(data + b"junk", "NORMAL") == (event, len(data))


def test_exact_bytes() -> None:
    assert hs.pack_version((3, 8)) == b"RFB 003.008\n"
    assert msg.pack_key_event(True, 0x41) == b"\x04\x01\x00\x00\x00\x00\x00\x41"
    assert msg.pack_rect_header(1, 2, 3, 4, -239) == struct.pack(">HHHHi", 1, 2, 3, 4, -239)
    assert hs.pack_security_result(False, "no", (3, 8)) == b"\0\0\0\1\0\0\0\2no"
    assert hs.pack_security_result(False, "no", (3, 7)) == b"\0\0\0\1"
    assert hs.pack_security_result(True, "", (3, 8)) == b"\0\0\0\0"
    init = hs.pack_server_init(640, 480, BGRX32, "n")
    assert init == b"\x02\x80\x01\xe0" + BGRX32.pack() + b"\0\0\0\1n"
    assert hs.parse_server_init(init) == (hs.ServerInitFields(640, 480, BGRX32, "n"), 25)
    assert hs.parse_server_init(init[:-1]) is None
    assert msg.parse_rect_header(bytes(11)) is None
    assert hs.parse_reason(b"\0\0\0\3ab") is None
    assert hs.parse_reason(b"\0\0\0\3abc") == ("abc", 7)


@pytest.mark.parametrize(("major", "minor", "eff"), [
    (3, 3, (3, 3)), (3, 7, (3, 7)), (3, 8, (3, 8)), (3, 889, (3, 3)), (3, 4, (3, 3)),
    (3, 10, (3, 3)), (4, 0, (3, 8)),
])
def test_effective_version(major: int, minor: int, eff: tuple[int, int]) -> None:
    assert hs.effective_version(major, minor, "peer") == eff


def test_versions_below_33() -> None:
    for major, minor in ((3, 2), (2, 9), (0, 0)):
        with pytest.raises(UnsupportedError):
            hs.effective_version(major, minor, "peer")
    assert hs.parse_version(b"RFB 003.889\n", "peer") == (3, 889)
    with pytest.raises(ProtocolError, match="malformed"):
        hs.parse_version(b"RFB 3.8\n\n\n\n\n", "peer")


def test_bounds() -> None:
    with pytest.raises(LimitExceededError, match="reason"):
        hs.parse_reason(struct.pack(">I", 1 << 20))
    with pytest.raises(LimitExceededError, match="desktop name"):
        hs.parse_server_init(struct.pack(">HH16sI", 1, 1, BGRX32.pack(), 1 << 31))
    with pytest.raises(LimitExceededError):
        msg.parse_server_message(b"\x03\0\0\0\xff\xff\xff\xff", "NORMAL")
    with pytest.raises(UnsupportedError, match="type 200 in state X"):
        msg.parse_client_message(b"\xc8", "X")
    # SetDesktopSize is parsed (the server answers it) even though it has no event
    data = b"\xfb\x00" + struct.pack(">HHBx", 10, 20, 2) + bytes(32)
    assert msg.parse_client_message(data[:-1], "NORMAL") is None
    assert msg.parse_client_message(data, "NORMAL") == (msg.SetDesktopSizeRequest(10, 20, 2), 40)


def test_cut_text_is_latin1() -> None:
    assert msg.pack_server_cut_text("\u20ac\u00e9") == b"\x03\0\0\0\0\0\0\2?\xe9"


# -- hostile bytes into both state machines -------------------------------------

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# prefixes that get the machines past the handshake so the fuzz reaches NORMAL
CLIENT_HELLO = b"RFB 003.008\n\x01\x01"
SERVER_HELLO = (b"RFB 003.003\n" + struct.pack(">IHH", 1, 64, 48) + BGRX32.pack()
                + struct.pack(">I", 2) + b"vm")
# message heads that make random tails interesting
SERVER_HEADS = [b"", b"\x00\x00\x00\x01", b"\x00\x00\xff\xff", b"\x01\x00", b"\x03\x00\x00\x00"]
RECT_HEADS = [struct.pack(">HHHHi", 0, 0, 8, 8, e) for e in (0, 1, 2, 5, 6, 7, 16, -239, -308)]


def feed_server(chunks: list[bytes]) -> None:
    conn = ServerConnection(width=64, height=48, name="vm")
    try:
        for c in chunks:
            conn.receive_data(c)
            while conn.next_event() is not None:
                pass
    except ProtocolError:
        pass


def feed_client(chunks: list[bytes]) -> None:
    conn = ClientConnection(password="pw")
    try:
        for c in chunks:
            conn.receive_data(c)
            while conn.next_event() is not None:
                pass
    except (ProtocolError, AuthError):
        pass


@SETTINGS
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_server_random_bytes(chunks: list[bytes]) -> None:
    feed_server(chunks)


@SETTINGS
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_server_random_messages_after_handshake(chunks: list[bytes]) -> None:
    feed_server([CLIENT_HELLO, *chunks])


@SETTINGS
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_client_random_bytes(chunks: list[bytes]) -> None:
    feed_client(chunks)


@SETTINGS
@given(st.sampled_from(SERVER_HEADS), st.sampled_from(RECT_HEADS),
       st.lists(st.binary(max_size=300), max_size=6))
def test_client_random_rects(head: bytes, rect: bytes, chunks: list[bytes]) -> None:
    feed_client([SERVER_HELLO, head + b"\x00\x00\x00\x02" + rect, *chunks])


@SETTINGS
@given(st.binary(min_size=12, max_size=12))
def test_random_rect_headers(rect: bytes) -> None:
    feed_client([SERVER_HELLO, b"\x00\x00\x00\x01" + rect + bytes(64)])
