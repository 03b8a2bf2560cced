"""Misuse versus hostile input, and the final error state of every RFB machine.

The caller's mistakes raise UsageError (not a ProtocolError: the peer did nothing
wrong) and change nothing.  Anything raised while reading the peer's bytes moves the
machine to a final state that refuses more input with a ProtocolError saying why,
like h11's ERROR state.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xcpconsole.errors import (
    AuthError,
    ProtocolError,
    UnsupportedError,
    UsageError,
    XcpConsoleError,
)
from xcpconsole.rfb import events as ev
from xcpconsole.rfb.client import ClientConnection, ClientState
from xcpconsole.rfb.framer import RfbRelayFramer
from xcpconsole.rfb.pixelformat import BGRX32
from xcpconsole.rfb.server import CopyRegion, ServerConnection, ServerState

U32 = struct.Struct(">I")
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
SERVER_HELLO = (b"RFB 003.003\n" + U32.pack(1) + struct.pack(">HH", 8, 4) + BGRX32.pack()
                + U32.pack(0))


def test_usage_error_is_not_a_protocol_error() -> None:
    assert issubclass(UsageError, XcpConsoleError)
    assert not issubclass(UsageError, ProtocolError)
    assert not issubclass(ProtocolError, UsageError)
    assert UsageError.exit_code == 2


# -- the caller's fault ------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda c: c.request_update(), lambda c: c.key_event(True, 0x61),
    lambda c: c.pointer_event(0, 1, 1), lambda c: c.cut_text("x"), lambda c: c.xvp(2),
])
def test_client_requests_before_normal_are_usage_errors(call) -> None:  # type: ignore[no-untyped-def]
    client = ClientConnection()
    client.receive_data(b"RFB 003.008\n")
    client.next_event()
    with pytest.raises(UsageError, match="state SECURITY"):
        call(client)
    assert client.state is ClientState.SECURITY  # nothing changed
    client.receive_data(b"\x01\x01")
    assert client.next_event() is None


@pytest.mark.parametrize("call", [
    lambda s: s.send_bell(), lambda s: s.send_cut_text("x"), lambda s: s.send_xvp(1),
    lambda s: s.send_desktop_size(8, 8),
    lambda s: s.send_update(np.zeros((2, 4, 3), np.uint8), [(0, 0, 4, 2)]),
])
def test_server_sends_before_normal_are_usage_errors(call) -> None:  # type: ignore[no-untyped-def]
    server = ServerConnection(width=4, height=2, name="vm")
    with pytest.raises(UsageError, match="state VERSION"):
        call(server)
    assert server.state is ServerState.VERSION


def normal_server() -> ServerConnection:
    server = ServerConnection(width=4, height=2, name="vm")
    server.receive_data(b"RFB 003.008\n\x01\x01")
    assert server.next_event() == ev.ClientHandshakeDone(shared=True)
    server.data_to_send()
    return server


def test_server_misfits_are_usage_errors_and_change_nothing() -> None:
    server = normal_server()
    fb = np.zeros((2, 4, 3), np.uint8)
    with pytest.raises(UsageError, match="frame buffer is 5x2"):
        server.send_update(np.zeros((2, 5, 3), np.uint8), [(0, 0, 4, 2)])
    with pytest.raises(UsageError, match="leaves"):
        server.send_update(fb, [], copies=[CopyRegion(3, 0, 0, 0, 2, 1)])
    with pytest.raises(UsageError, match="out of range"):
        server.send_desktop_size(0, 10)
    with pytest.raises(UsageError, match="out of range"):
        ServerConnection(width=0, height=2, name="vm")
    assert server.state is ServerState.NORMAL and server.data_to_send() == b""
    server.send_bell()
    assert server.data_to_send() == b"\x02"


# -- the peer's fault: a final state ------------------------------------------------


def test_client_error_state_refuses_more_input() -> None:
    client = ClientConnection()
    client.receive_data(SERVER_HELLO)
    assert isinstance(client.next_event(), ev.ServerInitReceived)
    client.receive_data(b"\x07")  # no such server message
    with pytest.raises(UnsupportedError, match="type 7"):
        client.next_event()
    assert client.state is ClientState.ERROR
    assert isinstance(client.error, UnsupportedError)
    for call in (lambda: client.receive_data(b"\x02"), client.next_event,
                 lambda: client.receive_data(b""), client.request_update):
        with pytest.raises(ProtocolError, match="already failed: unknown server message type 7"):
            call()
        assert client.state is ClientState.ERROR


def test_client_refused_by_server_is_final() -> None:
    client = ClientConnection()
    client.receive_data(b"RFB 003.008\n\x00" + U32.pack(4) + b"full")
    with pytest.raises(ProtocolError, match="full"):
        client.next_event()
    assert client.state is ClientState.ERROR
    with pytest.raises(ProtocolError, match="already failed"):
        client.next_event()


def test_server_error_state_refuses_more_input_but_keeps_its_output() -> None:
    server = ServerConnection(width=4, height=2, name="vm", password="pw")
    server.data_to_send()
    server.receive_data(b"RFB 003.008\n\x01")  # None was not offered
    with pytest.raises(UnsupportedError, match="security type 1"):
        server.next_event()
    assert server.state is ServerState.ERROR
    assert server.data_to_send().endswith(b"security type not offered")
    for call in (lambda: server.receive_data(b"\x02"), server.next_event, server.send_bell):
        with pytest.raises(ProtocolError, match="already failed: client chose security type 1"):
            call()


def test_server_auth_failure_is_a_clean_close_not_an_error() -> None:
    server = ServerConnection(width=4, height=2, name="vm", password="pw")
    server.receive_data(b"RFB 003.008\n\x02")
    assert server.next_event() is None
    server.receive_data(bytes(16))
    assert server.next_event() == ev.AuthFailed("authentication failed")
    assert server.state is ServerState.CLOSED and server.error is None
    server.receive_data(b"more")  # ignored, as before
    assert server.next_event() is None


def relay_before_server_init() -> RfbRelayFramer:
    """A framer that relayed a 3.8 handshake up to ClientInit (security None)."""
    fr = RfbRelayFramer()
    fr.server_data(b"RFB 003.008\n")
    fr.client_data(b"RFB 003.008\n")
    fr.server_data(b"\x01\x01")
    fr.client_data(b"\x01")
    fr.server_data(U32.pack(0))
    fr.client_data(b"\x01")
    return fr


def relay_in_normal() -> RfbRelayFramer:
    fr = relay_before_server_init()
    fr.server_data(struct.pack(">HH", 8, 4) + BGRX32.pack() + U32.pack(0))
    assert fr.normal
    return fr


@pytest.mark.parametrize("failing", ["client", "server"])
def test_framer_failure_refuses_both_directions(failing: str) -> None:
    fr = relay_in_normal()
    feed = fr.client_data if failing == "client" else fr.server_data
    with pytest.raises(UnsupportedError):
        feed(b"\x63")  # message type 99, both ways unknown
    assert isinstance(fr.error, UnsupportedError)
    for other in (fr.client_data, fr.server_data):
        with pytest.raises(ProtocolError, match=r"relay already failed: .*type 99"):
            other(b"\x02")


def test_framer_malformed_bytes_become_protocol_errors() -> None:
    fr = relay_before_server_init()
    bad_pf = struct.pack(">BBBBHHHBBB3x", 24, 24, 0, 1, 255, 255, 255, 16, 8, 0)
    with pytest.raises(UnsupportedError):
        fr.server_data(struct.pack(">HH", 8, 4) + bad_pf + U32.pack(0))
    with pytest.raises(ProtocolError, match="already failed"):
        fr.client_data(b"\x02")


# -- hostile bytes: after the first error, nothing but "already failed" -----------------


def _feed_until_failure(feed, pull, chunks: list[bytes]) -> bool:  # type: ignore[no-untyped-def]
    for c in chunks:
        try:
            feed(c)
            while pull() is not None:
                pass
        except (ProtocolError, AuthError):
            return True
    return False


@SETTINGS
@given(st.lists(st.binary(max_size=48), min_size=1, max_size=6))
def test_client_random_bytes_end_in_error_state(chunks: list[bytes]) -> None:
    client = ClientConnection(password="pw")
    if _feed_until_failure(client.receive_data, client.next_event, [SERVER_HELLO, *chunks]):
        assert client.state is ClientState.ERROR
        with pytest.raises(ProtocolError, match="already failed"):
            client.receive_data(b"\x00")


@SETTINGS
@given(st.lists(st.binary(max_size=48), min_size=1, max_size=6))
def test_server_random_bytes_end_in_error_state(chunks: list[bytes]) -> None:
    server = ServerConnection(width=8, height=4, name="vm")
    if _feed_until_failure(server.receive_data, server.next_event, chunks):
        assert server.state is ServerState.ERROR
        with pytest.raises(ProtocolError, match="already failed"):
            server.next_event()


@SETTINGS
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=48)), min_size=1, max_size=8))
def test_framer_random_bytes_only_protocol_errors(chunks: list[tuple[bool, bytes]]) -> None:
    fr = relay_in_normal()
    failed = False
    for to_server, data in chunks:
        try:
            (fr.client_data if to_server else fr.server_data)(data)
        except ProtocolError as exc:
            if failed:
                assert "already failed" in str(exc)
            failed = True
        else:
            assert not failed
