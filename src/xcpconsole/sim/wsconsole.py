"""The WebSocket form of ``/console``: ``GET`` + ``Upgrade: websocket``, as xapi serves it.

On a real host ``console.ml`` (``ws_proxy``) checks ``limit_console_sessions`` (on:
a bare ``503``), answers the upgrade itself (``ws_helpers.ml``) and hands the socket
to its ``wsproxy`` daemon (``ocaml/wsproxy``), which relays to the console backend.
The sim does the same steps in-process, with these behaviours of xapi's code kept:

- the 101 reply always says ``Sec-WebSocket-Protocol: binary``, whatever the client
  offered (a browser that did not offer ``binary`` then fails the handshake);
- the backend is read 1024 bytes at a time and each read is one binary frame, so
  server frames carry at most 1024 bytes;
- every client frame other than close goes to the console as data - text, binary,
  continuation, **ping and pong** alike - and pings are never answered; a close
  frame ends both sides at once, without a close frame back (wsproxy never sends one);
- no idle monitor and no session accounting.

Frames are decoded by ``wsproto`` (never by hand).  Where the sim differs on
purpose: wsproxy misreads client frames of 64 KiB or more (it reads a 64-bit length
as 32 bits) and then relays garbage; the sim closes the connection instead and
relays none of that frame.  Input wsproto rejects as a protocol error (unmasked
client frames, reserved opcodes or bits, text frames that are not UTF-8), which
wsproxy would relay, also closes the connection.  Hixie-76 handshakes (which xapi
still answers) are refused with ``501``.
"""

from __future__ import annotations

import asyncio
import logging

from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.utilities import LocalProtocolError, generate_accept_token

from ..relay import Relay, StreamEnd
from .http import HttpRequest

log = logging.getLogger(__name__)

#: wsproxy's read size on the backend socket: the largest frame it ever sends
SERVER_FRAME = 1024
#: wsproxy misparses client frames this large; the sim refuses them
CLIENT_FRAME_LIMIT = 64 * 1024
#: bound on a fragmented client message being put together (wsproxy has none)
MAX_CLIENT_MESSAGE = 1024 * 1024
READ_CHUNK = 64 * 1024
HIGH_WATER = 64 * 1024


def upgrade_reply(key: str) -> bytes:
    """``ws_helpers.ml`` ``http_101_websocket_upgrade_15``, byte for byte."""
    accept = generate_accept_token(key.encode("latin-1")).decode("ascii")
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n"
        "Sec-WebSocket-Protocol: binary\r\n"
        "\r\n"
    ).encode("ascii")


def bare_reply(code: int, reason: str) -> bytes:
    """``Http.http_503_service_unavailable ()`` and friends: headers only, and HTTP/1.0
    (their default version), whatever the request's."""
    return (
        f"HTTP/1.0 {code} {reason}\r\nConnection: close\r\n"
        "Cache-Control: no-cache, no-store\r\n\r\n"
    ).encode("ascii")


LIMIT_REPLY = bare_reply(503, "Service Unavailable")
NO_UPGRADE_REPLY = bare_reply(501, "Method Not Implemented")


def websocket_key(req: HttpRequest) -> str | None:
    """The RFC 6455 key, or None when xapi could not upgrade (no key: ``501``).

    xapi upgrades any ``GET /console`` with a ``Sec-WebSocket-Key``; it does not look
    at ``Upgrade:``, ``Connection:`` or the version.
    """
    if req.header("sec-websocket-key1") is not None:  # Hixie-76: not supported here
        return None
    return req.header("sec-websocket-key")


class WebSocketEnd(StreamEnd):
    """The client's WebSocket (over the TLS stream) as a relay end.

    Input: frames decoded by wsproto; each complete message, and each ping or pong
    payload, is handed to the relay as console bytes.  Output: each chunk the relay
    writes becomes binary frames of at most :data:`SERVER_FRAME` bytes.
    """

    name = "websocket"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 leftover: bytes = b"", high_water: int = HIGH_WATER) -> None:
        # the stream end's back-pressure, pausing and closing; frames in and out here
        super().__init__(reader, writer, "websocket", chunk=READ_CHUNK, high_water=high_water)
        self._ws = Connection(ConnectionType.SERVER)
        self._leftover = leftover
        self._message = bytearray()
        self._frame = 0  # payload bytes of the client frame being received
        #: why the client side ended (for the log and the tests)
        self.ended = ""

    async def _read_loop(self) -> None:
        relay = self.relay
        assert relay is not None
        try:
            data, self._leftover = self._leftover, b""
            while True:
                if data:
                    self._ws.receive_data(data)
                    if not self._deliver_events():
                        return
                if not self._readable.is_set():
                    await self._readable.wait()
                data = await self.reader.read(READ_CHUNK)
                if not data:
                    self.ended = "connection closed without a close frame"
                    relay.eof(self.side)
                    return
        except (ConnectionError, OSError) as exc:
            self.ended = f"connection lost: {exc}"
            relay.lost(self.side, exc)

    def _deliver_events(self) -> bool:
        """Hand decoded input to the relay; False once this end is done."""
        relay = self.relay
        assert relay is not None
        for event in self._ws.events():
            if isinstance(event, BytesMessage | TextMessage):
                payload = event.data.encode() if isinstance(event.data, str) else event.data
                self._frame += len(payload)
                if self._frame >= CLIENT_FRAME_LIMIT:
                    return self._refuse("a client frame of 64 KiB or more")
                self._message += payload
                if len(self._message) > MAX_CLIENT_MESSAGE:
                    return self._refuse("a fragmented client message over 1 MiB")
                if event.frame_finished:
                    self._frame = 0
                if event.message_finished:
                    self._flush()
            elif isinstance(event, Ping | Pong):
                # wsproxy's unframer passes every finished non-close frame on, pings
                # included (with whatever a fragmented message had gathered so far),
                # and never answers them: no Pong is sent.
                self._message += event.payload
                self._flush()
            elif isinstance(event, CloseConnection):
                self.ended = f"close frame {event.code} {event.reason or ''}".strip()
                relay.eof(self.side)
                return False
            if relay.done:
                return False
        return True

    def _flush(self) -> None:
        assert self.relay is not None
        if self._message:
            data, self._message = bytes(self._message), bytearray()
            self.relay.data(self.side, data)

    def _refuse(self, what: str) -> bool:
        self.ended = f"refused {what}"
        log.info("websocket console: %s; closing", self.ended)
        assert self.relay is not None
        self.relay.lost(self.side, None)
        return False

    def encode(self, data: bytes) -> bytes | None:
        try:
            return b"".join(self._ws.send(BytesMessage(data=data[i:i + SERVER_FRAME]))
                            for i in range(0, len(data), SERVER_FRAME))
        except LocalProtocolError:  # the client sent a close frame: nothing more goes out
            return None

    def end_of_input(self) -> bool:
        return False  # wsproxy ends both directions as soon as one ends


async def relay_websocket(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
    backend_r: asyncio.StreamReader, backend_w: asyncio.StreamWriter, leftover: bytes,
) -> str:
    """Relay an upgraded connection to the console backend until either side ends;
    returns how the client side ended."""
    client = WebSocketEnd(client_r, client_w, leftover=leftover)
    backend = StreamEnd(backend_r, backend_w, "backend", chunk=SERVER_FRAME)
    result = await Relay(client, backend).run()
    log.debug("websocket console ended: %s (%s)", result.reason, client.ended)
    return client.ended or result.reason
