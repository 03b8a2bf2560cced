"""The handshake's pure functions (rfb.handshake): exact bytes, every prefix is "need
more", bounds, hostile bytes (only ProtocolError subclasses may escape), and the one
version rule as the client, the server and the relay framer apply it."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xcpconsole.errors import LimitExceededError, ProtocolError, UnsupportedError
from xcpconsole.rfb import handshake as hs
from xcpconsole.rfb.client import ClientConnection
from xcpconsole.rfb.constants import (
    MAX_DESKTOP_NAME,
    MAX_REASON,
    PUBLISHED_VERSIONS,
    SecurityType,
)
from xcpconsole.rfb.framer import RfbRelayFramer
from xcpconsole.rfb.pixelformat import BGRX32, RGB565, PixelFormat
from xcpconsole.rfb.server import ServerConnection

U32 = struct.Struct(">I")
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

Parse = Callable[[bytes], object]

MESSAGES: list[tuple[str, Parse, bytes, object]] = [
    ("security types", hs.parse_security_types, hs.pack_security_types([2, 1]), (2, 1)),
    ("no security types", hs.parse_security_types, hs.pack_security_types([]), ()),
    ("security type 3.3", hs.parse_security_type_33, hs.pack_security_type_33(2), 2),
    ("reason", hs.parse_reason, hs.pack_reason("go away \u00e9"), "go away \u00e9"),
    ("result ok", hs.parse_security_result, hs.pack_security_result(True, "", (3, 8)), True),
    ("result failed 3.7", hs.parse_security_result,
     hs.pack_security_result(False, "x", (3, 7)), False),
    ("server init", hs.parse_server_init, hs.pack_server_init(640, 480, RGB565, "vm"),
     hs.ServerInitFields(640, 480, RGB565, "vm")),
]


@pytest.mark.parametrize(("what", "parse", "data", "value"), MESSAGES,
                         ids=[m[0] for m in MESSAGES])
def test_every_prefix_needs_more(what: str, parse: Parse, data: bytes, value: object) -> None:
    for i in range(len(data)):
        assert parse(data[:i]) is None, i
    assert parse(data + b"junk") == (value, len(data))
    assert parse(memoryview(bytearray(data))) == (value, len(data))


def test_exact_bytes() -> None:
    assert hs.pack_version((3, 3)) == b"RFB 003.003\n"
    assert hs.pack_security_types([1]) == b"\x01\x01"
    assert hs.pack_security_type_33(SecurityType.VNC_AUTH) == b"\0\0\0\2"
    assert hs.pack_reason("ab") == b"\0\0\0\2ab"
    assert hs.pack_security_result(False, "no", (3, 8)) == b"\0\0\0\1\0\0\0\2no"
    assert hs.pack_security_result(False, "no", (3, 3)) == b"\0\0\0\1"
    # a SecurityResult of 2 (old "too many attempts") is a failure like any non-zero word
    assert hs.parse_security_result(b"\0\0\0\2") == (False, 4)


def test_lengths_agree_with_parsers() -> None:
    reason = hs.pack_reason("why")
    assert hs.reason_length(reason[:3]) is None
    assert hs.reason_length(reason[:4]) == len(reason)
    assert hs.reason_length(b"xx" + reason, 2) == len(reason)
    init = hs.pack_server_init(1, 1, BGRX32, "name")
    assert hs.server_init_length(init[:hs.SERVER_INIT_HEAD_LEN - 1]) is None
    assert hs.server_init_length(init[:hs.SERVER_INIT_HEAD_LEN]) == len(init)


def test_bounds() -> None:
    with pytest.raises(LimitExceededError, match="reason"):
        hs.reason_length(U32.pack(MAX_REASON + 1))
    assert hs.reason_length(U32.pack(MAX_REASON)) == 4 + MAX_REASON
    head = struct.pack(">HH16sI", 1, 1, BGRX32.pack(), MAX_DESKTOP_NAME + 1)
    with pytest.raises(LimitExceededError, match="desktop name"):
        hs.server_init_length(head)
    with pytest.raises(LimitExceededError, match="desktop name"):
        hs.parse_server_init(head)
    assert hs.pack_reason("x" * (MAX_REASON + 10)) == U32.pack(MAX_REASON) + b"x" * MAX_REASON


def test_server_init_keeps_a_pixel_format_we_cannot_convert() -> None:
    odd = PixelFormat(24, 24, False, True, 255, 255, 255, 16, 8, 0)
    init = hs.pack_server_init(2, 2, odd, "")
    assert hs.parse_server_init(init) == (hs.ServerInitFields(2, 2, odd, ""), 24)


@pytest.mark.parametrize("head", [b"HTTP/1.1 200", b"SSH-2.0-Open", b"RFB 003.00x\n",
                                  b"RFB 3.8\n\n\n\n\n", b"RFB 003.008\r"])
def test_not_rfb_is_unsupported(head: bytes) -> None:
    with pytest.raises(UnsupportedError, match="malformed ProtocolVersion"):
        hs.parse_version(head, "peer")


def test_security_steps() -> None:
    assert not hs.expects_security_result((3, 3), SecurityType.NONE)
    assert not hs.expects_security_result((3, 7), SecurityType.NONE)
    assert hs.expects_security_result((3, 8), SecurityType.NONE)
    for version in PUBLISHED_VERSIONS:
        assert hs.expects_security_result(version, SecurityType.VNC_AUTH)
        assert hs.failure_has_reason(version) == (version == (3, 8))


# -- hostile bytes --------------------------------------------------------------

PARSERS: list[Parse] = [
    hs.parse_security_types, hs.parse_security_type_33, hs.parse_reason,
    hs.parse_security_result, hs.parse_server_init, hs.reason_length, hs.server_init_length,
]


@SETTINGS
@given(st.sampled_from(PARSERS), st.binary(max_size=64))
def test_random_bytes_only_protocol_errors(parse: Parse, data: bytes) -> None:
    try:
        got = parse(data)
    except ProtocolError:
        return
    if isinstance(got, tuple):
        assert 0 < got[1] <= len(data)
    elif isinstance(got, int):
        assert got > 0


@SETTINGS
@given(st.binary(min_size=12, max_size=12))
def test_random_versions_only_protocol_errors(data: bytes) -> None:
    try:
        major, minor = hs.parse_version(data, "peer")
        hs.effective_version(major, minor, "peer")
    except ProtocolError:
        pass


@SETTINGS
@given(st.integers(0, 0xFFFFFFFF), st.binary(max_size=40))
def test_random_reason_lengths(length: int, tail: bytes) -> None:
    data = U32.pack(length) + tail
    try:
        parsed = hs.parse_reason(data)
    except LimitExceededError:
        assert length > MAX_REASON
        return
    assert (parsed is None) == (len(tail) < length)


# -- one version rule for the three readers -----------------------------------------

VERSIONS = [b"RFB 003.003\n", b"RFB 003.007\n", b"RFB 003.008\n", b"RFB 003.889\n",
            b"RFB 003.005\n", b"RFB 004.001\n", b"RFB 003.002\n", b"RFB 002.009\n",
            b"HTTP/1.1 200", b"RFB 03.008\n\n"]


def shared_rule(head: bytes) -> tuple[int, int] | type[Exception]:
    try:
        return hs.effective_version(*hs.parse_version(head, "peer"), "peer")
    except ProtocolError as exc:
        return type(exc)


@pytest.mark.parametrize("head", VERSIONS)
def test_client_applies_the_shared_version_rule(head: bytes) -> None:
    client = ClientConnection()
    client.receive_data(head)
    want = shared_rule(head)
    if isinstance(want, tuple):
        assert client.next_event() is None
        assert client.data_to_send() == hs.pack_version(want)
    else:
        with pytest.raises(want):
            client.next_event()


@pytest.mark.parametrize("head", VERSIONS)
def test_server_applies_the_shared_version_rule(head: bytes) -> None:
    server = ServerConnection(width=4, height=2, name="vm")
    server.data_to_send()
    server.receive_data(head)
    want = shared_rule(head)
    if isinstance(want, tuple):
        assert server.next_event() is None
        assert server.version == want
    else:
        with pytest.raises(want):
            server.next_event()


@pytest.mark.parametrize("head", VERSIONS)
def test_framer_applies_the_shared_rule_and_forwards_only_published(head: bytes) -> None:
    want = shared_rule(head)
    relayable = isinstance(want, tuple) and hs.parse_version(head, "peer") in PUBLISHED_VERSIONS
    for side in ("server", "client"):
        fr = RfbRelayFramer()
        if side == "client":
            fr.server_data(b"RFB 003.008\n")
        feed = fr.server_data if side == "server" else fr.client_data
        if relayable:
            assert feed(head) == head
        else:
            with pytest.raises(UnsupportedError):
                feed(head)
