"""One target per parser fed by the network: bytes in, and the contract checked.

The contract (docs/architecture.md, "Sans-I/O conventions"): hostile input ends in one
of our errors (``XcpConsoleError``), or the library's documented refusal where a library
parses (h11's ``RemoteProtocolError``); anything else escaping (IndexError, struct.error,
ValueError, zlib.error, RecursionError, ...) is a finding.  Each target is a plain
function of ``bytes``, so the crash files under ``fuzz/crashes`` replay as tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable

import h11

from xcpconsole.errors import XcpConsoleError
from xcpconsole.http1 import ConnectReplyParser
from xcpconsole.rfb.client import ClientConnection
from xcpconsole.rfb.framer import RfbRelayFramer
from xcpconsole.rfb.server import ServerConnection
from xcpconsole.rfb.shareflag import ShareFlagRewriter
from xcpconsole.web.auth import Signer, host_allowed, origin_allowed

#: Frame buffers stay small so that memory stays bounded however many inputs run.
MAX_PIXELS = 256 * 256

_PIXEL_FORMAT = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
#: what a VNC server sends up to the normal phase (RFB 3.8, security None, 64x48 "fz")
SERVER_HANDSHAKE = (b"RFB 003.008\n" + b"\x01\x01" + b"\0\0\0\0"
                    + struct.pack(">HH", 64, 48) + _PIXEL_FORMAT + b"\0\0\0\x02fz")


def _drain(next_event: Callable[[], object]) -> None:
    for _ in range(10_000):
        if next_event() is None:
            return


def _feed_in_pieces(data: bytes, feed: Callable[[bytes], object]) -> None:
    """The first byte says how to cut the rest: parsers must not care where reads end."""
    if not data:
        feed(b"")
        return
    step, rest = data[0] % 7 + 1, data[1:]
    cut = max(1, len(rest) // step)
    for i in range(0, len(rest), cut):
        feed(rest[i:i + cut])


def _pump(conn: ClientConnection | ServerConnection, data: bytes) -> None:
    def feed(piece: bytes) -> None:
        conn.receive_data(piece)
        _drain(conn.next_event)

    _feed_in_pieces(data, feed)


def connect_reply(data: bytes) -> None:
    parser = ConnectReplyParser()
    try:
        _feed_in_pieces(data, parser.feed)
        parser.feed(b"")
    except XcpConsoleError:
        pass


def rfb_client_handshake(data: bytes) -> None:
    conn = ClientConnection(max_pixels=MAX_PIXELS)
    with contextlib.suppress(XcpConsoleError):
        _pump(conn, data)


def rfb_client_updates(data: bytes) -> None:
    """The normal phase: every decoder (raw, copyrect, rre, hextile, zlib, tight, zrle)."""
    conn = ClientConnection(max_pixels=MAX_PIXELS)
    try:
        conn.receive_data(SERVER_HANDSHAKE)
        _drain(conn.next_event)
        _pump(conn, data)
    except XcpConsoleError:
        pass


def rfb_server(data: bytes) -> None:
    conn = ServerConnection(width=64, height=48, name="fz")
    with contextlib.suppress(XcpConsoleError):
        _pump(conn, data)


def rfb_framer(data: bytes) -> None:
    framer = RfbRelayFramer()
    half = data[0] if data else 0
    try:
        framer.server_data(SERVER_HANDSHAKE[:12])
        framer.client_data(data[1:1 + half])
        framer.server_data(data[1 + half:])
        _drain(framer.next_event)
    except XcpConsoleError:
        pass


def rfb_shareflag(data: bytes) -> None:
    rewriter = ShareFlagRewriter()
    half = data[0] if data else 0
    try:
        rewriter.server_data(data[1 + half:])
        rewriter.client_data(data[1:1 + half])
    except XcpConsoleError:
        pass


def sim_http(data: bytes) -> None:
    """The sim's request heads and bodies go through h11, as the sim's front end uses it."""
    from xcpconsole.sim.http import _to_request

    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    try:
        conn.receive_data(data)
        for _ in range(64):
            event = conn.next_event()
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return
            if isinstance(event, h11.Request):
                _to_request(event, b"")
    except (h11.RemoteProtocolError, XcpConsoleError):
        pass


_loop: asyncio.AbstractEventLoop | None = None
_dispatcher: object = None


def _sim_dispatcher() -> tuple[asyncio.AbstractEventLoop, object]:
    global _loop, _dispatcher
    if _loop is None:
        from xcpconsole.sim.inventory import build_model, load_inventory
        from xcpconsole.sim.xapi import XenApiDispatcher

        class _NoPower:
            async def vm_starting(self, vm: object) -> None:
                raise XcpConsoleError("no power in the fuzzer")

            async def vm_stopped(self, vm: object) -> None:
                return None

        model = build_model(load_inventory(None), user="root", password="pw",
                            address="127.0.0.1", port=443)
        _loop = asyncio.new_event_loop()
        _dispatcher = XenApiDispatcher(model, _NoPower())  # type: ignore[arg-type]
    return _loop, _dispatcher


def sim_xmlrpc(data: bytes) -> None:
    loop, dispatcher = _sim_dispatcher()
    with contextlib.suppress(XcpConsoleError):
        loop.run_until_complete(dispatcher.handle_xmlrpc(data))  # type: ignore[attr-defined]


def sim_jsonrpc(data: bytes) -> None:
    loop, dispatcher = _sim_dispatcher()
    with contextlib.suppress(XcpConsoleError):
        loop.run_until_complete(dispatcher.handle_jsonrpc(data))  # type: ignore[attr-defined]


_SIGNER = Signer(b"k" * 32)


def web_auth(data: bytes) -> None:
    """Cookie, CSRF and form-token checks, Origin and Host rules: strings from a browser."""
    text = data.decode("utf-8", "surrogateescape")
    _SIGNER.unsign(text)
    _SIGNER.check_login_form_token(text, 1000.0)
    origin_allowed(text, "http://127.0.0.1:8080", ("https://consoles.example.com",))
    host_allowed(text, ("consoles.example.com",), ("https://consoles.example.com",))


def sim_idle(data: bytes) -> None:
    """The sim's idle monitor reads every viewer's RFB stream."""
    from xcpconsole.sim.idle import IdleParser

    parser = IdleParser()
    _feed_in_pieces(data, parser.receive_data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "connect_reply": connect_reply,
    "rfb_client_handshake": rfb_client_handshake,
    "rfb_client_updates": rfb_client_updates,
    "rfb_server": rfb_server,
    "rfb_framer": rfb_framer,
    "rfb_shareflag": rfb_shareflag,
    "sim_http": sim_http,
    "sim_xmlrpc": sim_xmlrpc,
    "sim_jsonrpc": sim_jsonrpc,
    "web_auth": web_auth,
    "sim_idle": sim_idle,
}
