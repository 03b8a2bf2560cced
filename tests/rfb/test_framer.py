"""The relay framer: bytes in, bytes out, compared byte for byte."""

from __future__ import annotations

import struct

import pytest

from xcpconsole.errors import LimitExceededError, ProtocolError, UnsupportedError
from xcpconsole.rfb.framer import RfbRelayFramer, XvpRequested, xvp_message
from xcpconsole.rfb.pixelformat import PixelFormat

BGRX = PixelFormat(32, 24, False, True, 255, 255, 255, 16, 8, 0)
RGB565 = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
XVP_INIT = bytes([250, 0, 1, 1])


def server_init(pf: PixelFormat = BGRX, name: bytes = b"QEMU (vm)") -> bytes:
    return struct.pack(">HH", 640, 480) + pf.pack() + struct.pack(">I", len(name)) + name


def set_encodings(*encs: int) -> bytes:
    return struct.pack(f">BxH{len(encs)}i", 2, len(encs), *encs)


def rect(x: int, y: int, w: int, h: int, enc: int) -> bytes:
    return struct.pack(">HHHHi", x, y, w, h, enc)


def fbu(*rects: bytes, count: int | None = None) -> bytes:
    n = len(rects) if count is None else count
    return struct.pack(">BxH", 0, n) + b"".join(rects)


def handshake(fr: RfbRelayFramer, *, offered: bytes = b"\x01", pf: PixelFormat = BGRX) -> None:
    assert fr.server_data(b"RFB 003.008\n") == b"RFB 003.008\n"
    assert fr.client_data(b"RFB 003.008\n") == b"RFB 003.008\n"
    fr.server_data(bytes([len(offered)]) + offered)
    assert fr.client_data(b"\x01") == b"\x01"
    assert fr.server_data(b"\x00\x00\x00\x00") == b"\x00\x00\x00\x00"
    assert fr.client_data(b"\x01") == b"\x01"
    init = server_init(pf)
    assert fr.server_data(init) == init
    assert fr.normal


def compact(n: int) -> bytes:
    out = [n & 0x7F]
    if n > 0x7F:
        out[0] |= 0x80
        out.append((n >> 7) & 0x7F)
        if n > 0x3FFF:
            out[1] |= 0x80
            out.append(n >> 14)
    return bytes(out)


def sample_server_stream() -> bytes:
    """Messages of every kind the framer relays, with payloads of the right length."""
    hextile = (
        bytes([1]) + bytes(16 * 16 * 4)  # raw tile
        + bytes([2 | 4 | 8]) + bytes(4) + bytes(4) + bytes([3]) + bytes(2 * 3)  # fg subrects
        + bytes([2 | 8 | 16]) + bytes(4) + bytes([2]) + bytes(6 * 2)  # coloured subrects
        + bytes([0])  # same background
    )
    tight = [
        rect(0, 0, 8, 8, 7) + bytes([0x80]) + bytes(3),  # fill, TPIXEL = 3 bytes
        rect(0, 0, 64, 64, 7) + bytes([0x90]) + compact(300) + bytes(300),  # JPEG
        rect(0, 0, 2, 1, 7) + bytes([0x00]) + bytes(6),  # copy, < 12 bytes raw
        rect(0, 0, 64, 64, 7) + bytes([0x40, 1, 1]) + bytes(6) + compact(40) + bytes(40),
        rect(0, 0, 64, 64, 7) + bytes([0x40, 1, 5]) + bytes(18) + compact(20000) + bytes(20000),
        rect(0, 0, 4, 2, 7) + bytes([0x40, 1, 1]) + bytes(6) + bytes(2),  # 2 colours, 2 bytes
        rect(0, 0, 50, 50, 7) + bytes([0x40, 2]) + compact(1000) + bytes(1000),  # gradient
    ]
    return b"".join(
        [
            fbu(
                rect(0, 0, 10, 10, 0) + bytes(400),
                rect(0, 0, 10, 10, 1) + bytes(4),
                rect(0, 0, 40, 40, 2) + struct.pack(">I", 2) + bytes(4 + 2 * 12),
                rect(0, 0, 64, 16, 5) + hextile,
                rect(0, 0, 20, 20, 16) + struct.pack(">I", 77) + bytes(77),
                rect(0, 0, 20, 20, 6) + struct.pack(">I", 5) + bytes(5),
                *tight,
                rect(1, 1, 9, 3, -239) + bytes(9 * 3 * 4 + 2 * 3),
                rect(0, 0, 800, 600, -308) + bytes([2, 0, 0, 0]) + bytes(32),
                rect(0, 0, 0, 0, -307) + struct.pack(">I", 3) + b"abc",
                rect(0, 0, 0, 0, -261) + b"\x01",
                rect(0, 0, 0, 0, -258),
                rect(0, 0, 800, 600, -223),
            ),
            bytes([2]),  # bell
            struct.pack(">BxxxI", 3, 5) + b"hello",
            struct.pack(">BxHH", 1, 0, 2) + bytes(12),
            fbu(rect(0, 0, 1, 1, 0) + bytes(4), rect(0, 0, 0, 0, -224), count=0xFFFF),
        ]
    )


ALL = (0, 1, 2, 5, 16, 6, 7, -239, -308, -307, -261, -258, -223, -224)


@pytest.mark.parametrize("step", [1, 3, 7, 4096, 1 << 20])
def test_server_stream_passes_through_unchanged_in_any_chunking(step: int) -> None:
    fr = RfbRelayFramer()
    handshake(fr)
    fr.client_data(set_encodings(*ALL))
    stream = sample_server_stream()
    out = b"".join(fr.server_data(stream[i : i + step]) for i in range(0, len(stream), step))
    assert out == stream
    assert fr._server.at_boundary


def test_security_types_narrowed_to_relayable() -> None:
    fr = RfbRelayFramer()
    fr.server_data(b"RFB 003.008\n")
    fr.client_data(b"RFB 003.008\n")
    assert fr.server_data(bytes([4, 19, 16, 2, 1])) == bytes([2, 2, 1])
    with pytest.raises(ProtocolError):
        fr.client_data(b"\x13")


def test_vnc_auth_and_version_33() -> None:
    fr = RfbRelayFramer()
    fr.server_data(b"RFB 003.003\n")
    fr.client_data(b"RFB 003.003\n")
    challenge = bytes(range(16))
    assert fr.server_data(struct.pack(">I", 2) + challenge) == struct.pack(">I", 2) + challenge
    assert fr.client_data(bytes(16) + b"\x01") == bytes(16) + b"\x01"
    init = server_init(RGB565)
    assert fr.server_data(b"\x00\x00\x00\x00" + init) == b"\x00\x00\x00\x00" + init
    fr.client_data(set_encodings(0))
    raw = fbu(rect(0, 0, 3, 3, 0) + bytes(18))
    assert fr.server_data(raw + b"\x02") == raw + b"\x02"


def test_backend_refusal_reason_relayed_then_stream_dead() -> None:
    fr = RfbRelayFramer()
    fr.server_data(b"RFB 003.008\n")
    fr.client_data(b"RFB 003.008\n")
    msg = b"\x00" + struct.pack(">I", 4) + b"nope"
    assert fr.server_data(msg) == msg
    with pytest.raises(ProtocolError):
        fr.server_data(b"x")


def test_set_encodings_filtered_and_xvp_init_injected_when_idle() -> None:
    fr = RfbRelayFramer()
    handshake(fr)
    out = fr.client_data(set_encodings(7, 50, -260, 21, 16, 0, -309, -312, -313, 0x574D5664))
    assert out == set_encodings(7, 16, 0)
    assert fr.xvp_enabled
    assert fr.data_for_client() == XVP_INIT
    assert fr.data_for_client() == b""
    # A second SetEncodings does not announce XVP twice.
    fr.client_data(set_encodings(0, -309))
    assert fr.data_for_client() == b""


def test_xvp_init_waits_for_the_end_of_a_server_message() -> None:
    fr = RfbRelayFramer()
    handshake(fr)
    fr.client_data(set_encodings(0))
    update = fbu(rect(0, 0, 10, 10, 0) + bytes(400))
    first = fr.server_data(update[:100])
    assert first == update[:100]
    fr.client_data(set_encodings(0, -309))
    assert fr.data_for_client() == b""  # mid-message: not now
    rest = fr.server_data(update[100:] + b"\x02")
    assert rest == update[100:] + XVP_INIT + b"\x02"


def test_client_xvp_removed_and_reported() -> None:
    fr = RfbRelayFramer()
    handshake(fr)
    key = struct.pack(">BBxxI", 4, 1, 0x61)
    out = fr.client_data(key + bytes([250, 0, 1, 3]) + key)
    assert out == key + key
    assert fr.next_event() == XvpRequested(1, 3)
    assert fr.next_event() is None
    assert fr.input_events == 2
    fr.queue_to_client(xvp_message(0))
    assert fr.data_for_client() == bytes([250, 0, 1, 0])


def test_client_messages_pass_through_byte_by_byte() -> None:
    fr = RfbRelayFramer()
    handshake(fr)
    msgs = (
        bytes([0, 0, 0, 0]) + RGB565.pack()
        + struct.pack(">BBHHHH", 3, 1, 0, 0, 640, 480)
        + struct.pack(">BBHH", 5, 1, 10, 20)
        + struct.pack(">BxxxI", 6, 3) + b"abc"
        + struct.pack(">BBHII", 255, 0, 1, 0x61, 30)
        + struct.pack(">BxHHBx", 251, 800, 600, 1) + bytes(16)
    )
    out = b"".join(fr.client_data(msgs[i : i + 1]) for i in range(len(msgs)))
    assert out == msgs
    assert fr.pixel_format == RGB565


def test_pixel_format_change_changes_framing() -> None:
    fr = RfbRelayFramer()
    handshake(fr)
    fr.client_data(bytes([0, 0, 0, 0]) + RGB565.pack() + set_encodings(0))
    update = fbu(rect(0, 0, 4, 4, 0) + bytes(32)) + b"\x02"
    assert fr.server_data(update) == update


@pytest.mark.parametrize(
    ("side", "data", "error"),
    [
        ("client", struct.pack(">BxxxI", 6, (1 << 20) + 1), LimitExceededError),
        ("client", struct.pack(">BxxxI", 6, 0xFFFFFFF0), LimitExceededError),
        ("client", struct.pack(">BxH", 2, 5000), LimitExceededError),
        ("client", bytes([99]), UnsupportedError),
        ("client", bytes([255, 1]), UnsupportedError),
        ("server", bytes([77]), UnsupportedError),
        ("server", struct.pack(">BxxxI", 3, 1 << 30), LimitExceededError),
        ("server", fbu(rect(0, 0, 1, 1, 7)), UnsupportedError),  # Tight not announced
        ("server", fbu(rect(0, 0, 1, 1, 16) + struct.pack(">I", 1 << 29)), LimitExceededError),
    ],
)
def test_hostile_input_raises(side: str, data: bytes, error: type[Exception]) -> None:
    fr = RfbRelayFramer()
    handshake(fr)
    fr.client_data(set_encodings(0, 16))
    feed = fr.client_data if side == "client" else fr.server_data
    with pytest.raises(error):
        feed(data)
    with pytest.raises(ProtocolError):
        feed(b"\x00")


def test_bad_versions_refused() -> None:
    with pytest.raises(UnsupportedError):
        RfbRelayFramer().server_data(b"RFB 003.889\n")
    fr = RfbRelayFramer()
    fr.server_data(b"RFB 003.008\n")
    with pytest.raises(UnsupportedError):
        fr.client_data(b"HTTP/1.1 200")


def test_buffer_stays_small_while_skipping_large_payloads() -> None:
    fr = RfbRelayFramer()
    handshake(fr)
    fr.client_data(set_encodings(0))
    update = fbu(rect(0, 0, 1024, 768, 0) + bytes(1024 * 768 * 4))
    for i in range(0, len(update), 65536):
        fr.server_data(update[i : i + 65536])
        assert len(fr._server._buf) < 16
