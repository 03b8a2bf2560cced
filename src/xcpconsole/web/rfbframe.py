"""Sans-I/O RFB message framer for the web gateway's relay (both directions).

Why a framer of our own instead of ``xcpconsole.rfb.client``/``server``: the gateway is a
relay.  It must know where each message starts and ends (to inject ``XVP_INIT`` only
between two server messages, and to cut the browser's XVP requests out of the stream),
but it must never decode pixels: decoding costs CPU and a frame buffer per session, and
200 sessions per process is a goal.  So this module reads only headers and lengths and
passes payloads through untouched, in bounded memory.

To keep the framing exact it also *controls what the backend may send*: the browser's
``SetEncodings`` is rewritten to the encodings listed in :data:`RELAYABLE_ENCODINGS`
(those whose payload length can be found without decompressing), and the backend's
security types are narrowed to None and VNC authentication.  The XVP pseudo-encoding is
never forwarded: the gateway implements XVP itself with XenAPI power calls, exactly
like the real host's web console does.

Each direction is a generator-based parser that yields small instructions (take N bytes,
pass N bytes through, emit these bytes, "I am between two messages", wait for data); a
driver (:class:`_Stream`) feeds it from a buffer that never holds more than one header.
Server-direction decisions that depend on the client's reply (which version, which
security type) are taken only once the server speaks again; the server cannot speak
before it received that reply, and the reply went through this framer first.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass

from ..errors import LimitExceededError, ProtocolError, UnsupportedError
from ..rfb.constants import (
    MAX_CUT_TEXT,
    MAX_DESKTOP_NAME,
    MAX_ENCODINGS,
    MAX_REASON,
    PROTOCOL_VERSIONS,
    ClientMsg,
    Encoding,
    SecurityType,
    ServerMsg,
    XvpCode,
)
from ..rfb.pixelformat import PixelFormat

QEMU_EXTENDED_KEY_EVENT = -258
QEMU_LED_STATE = -261
DESKTOP_NAME = -307
QEMU_CLIENT_MSG = 255
SET_DESKTOP_SIZE_MSG = 251
MAX_RECT_PAYLOAD = 1 << 28

RELAYABLE_ENCODINGS: frozenset[int] = frozenset(
    {
        Encoding.RAW, Encoding.COPYRECT, Encoding.RRE, Encoding.HEXTILE, Encoding.ZLIB,
        Encoding.TIGHT, Encoding.ZRLE, Encoding.DESKTOP_SIZE, Encoding.LAST_RECT,
        Encoding.CURSOR, Encoding.EXTENDED_DESKTOP_SIZE, QEMU_EXTENDED_KEY_EVENT,
        QEMU_LED_STATE, DESKTOP_NAME,
    }
    | set(range(Encoding.JPEG_QUALITY_0, Encoding.JPEG_QUALITY_0 + 10))
    | set(range(Encoding.COMPRESS_LEVEL_0, Encoding.COMPRESS_LEVEL_0 + 10))
)
"""Encodings forwarded to the backend: every one of them can be framed by length alone."""

RELAYABLE_SECURITY = (SecurityType.NONE, SecurityType.VNC_AUTH)


def xvp_message(code: int) -> bytes:
    """An XVP server message (type 250, version 1): ``XVP_INIT`` or ``XVP_FAIL``."""
    return bytes((ServerMsg.XVP, 0, 1, code))


@dataclass(frozen=True)
class XvpRequested:
    """The browser asked for a power action (XVP client message, removed from the stream)."""

    version: int
    code: int


# Parser instructions: (kind, argument).
_TAKE = 0  # read N bytes, do not forward them (the parser emits what it wants)
_PASS = 1  # read N bytes and forward them unchanged
_SKIP = 2  # forward N bytes unchanged without looking at them (payloads)
_EMIT = 3  # forward these bytes
_BOUNDARY = 4  # the forwarded stream is between two messages here
_WAIT = 5  # resume once at least one byte is buffered

_Instr = tuple[int, "int | bytes"]
_Parser = Generator[_Instr, bytes, None]

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_S32 = struct.Struct(">i")
_RECT = struct.Struct(">HHHHi")


class _Stream:
    """Drives one direction's parser; holds at most one incomplete header in memory."""

    def __init__(self, parser: _Parser, name: str) -> None:
        self._parser = parser
        self._name = name
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._instr: _Instr = next(parser)
        self.at_boundary = False
        self.pending = bytearray()  # to insert at the next boundary
        self.closed = False

    def feed(self, data: bytes) -> bytes:
        if self.closed:
            raise ProtocolError(f"RFB relay: {self._name} stream already failed")
        self._buf += data
        try:
            self._run()
        except (ProtocolError, StopIteration):
            self.closed = True
            raise
        except (struct.error, ValueError, IndexError) as exc:
            self.closed = True
            raise ProtocolError(f"RFB relay: malformed {self._name} message: {exc}") from None
        out = b"".join(self._out)
        self._out.clear()
        return out

    def take_pending(self) -> bytes:
        """Bytes to insert now, if the forwarded stream sits between two messages."""
        if not (self.at_boundary and self.pending):
            return b""
        out = bytes(self.pending)
        self.pending.clear()
        return out

    def _run(self) -> None:
        buf, out, parser = self._buf, self._out, self._parser
        pos = 0
        instr = self._instr
        try:
            while True:
                kind, arg = instr
                avail = len(buf) - pos
                if kind in (_TAKE, _PASS):
                    assert isinstance(arg, int)
                    if avail < arg:
                        break
                    chunk = bytes(buf[pos : pos + arg])
                    pos += arg
                    self.at_boundary = False
                    if kind == _PASS:
                        out.append(chunk)
                    instr = parser.send(chunk)
                elif kind == _SKIP:
                    assert isinstance(arg, int)
                    n = min(arg, avail)
                    if n:
                        out.append(bytes(buf[pos : pos + n]))
                        pos += n
                    if n < arg:
                        instr = (_SKIP, arg - n)
                        break
                    instr = parser.send(b"")
                elif kind == _EMIT:
                    assert isinstance(arg, bytes)
                    out.append(arg)
                    instr = parser.send(b"")
                elif kind == _BOUNDARY:
                    self.at_boundary = True
                    if self.pending:
                        out.append(bytes(self.pending))
                        self.pending.clear()
                    instr = parser.send(b"")
                else:  # _WAIT
                    if avail == 0:
                        break
                    instr = parser.send(b"")
        finally:
            del buf[:pos]
            self._instr = instr


class RfbRelayFramer:
    """Frames, filters and injects RFB messages between a browser and a console backend.

    Feed browser bytes to :meth:`client_data` (returns bytes for the backend) and backend
    bytes to :meth:`server_data` (returns bytes for the browser).  XVP requests come out
    of :meth:`next_event`; answer with :meth:`queue_to_client` and collect injected bytes
    with :meth:`data_for_client` (they are released only at a server message boundary).
    """

    def __init__(self) -> None:
        self.version: tuple[int, int] | None = None
        self.security: int | None = None
        self.pixel_format: PixelFormat | None = None
        self.client_encodings: tuple[int, ...] = ()
        self.xvp_enabled = False
        self.input_events = 0  # KeyEvent / PointerEvent count, for the idle timeout
        self.normal = False  # handshake finished in both directions
        self._offered: tuple[int, ...] = ()
        self._events: deque[XvpRequested] = deque()
        self._server = _Stream(self._server_parser(), "server")
        self._client = _Stream(self._client_parser(), "client")

    # -- public API ---------------------------------------------------------------------
    def client_data(self, data: bytes) -> bytes:
        return self._client.feed(data)

    def server_data(self, data: bytes) -> bytes:
        return self._server.feed(data)

    def next_event(self) -> XvpRequested | None:
        return self._events.popleft() if self._events else None

    def queue_to_client(self, message: bytes) -> None:
        """Insert a complete server message into the browser stream at the next boundary."""
        self._server.pending += message

    def data_for_client(self) -> bytes:
        """Injected bytes that may be sent to the browser right now (else ``b""``)."""
        return self._server.take_pending()

    # -- server -> browser --------------------------------------------------------------
    def _server_parser(self) -> _Parser:
        head = yield (_PASS, 12)
        if head not in PROTOCOL_VERSIONS:
            raise UnsupportedError(f"RFB relay: backend speaks unknown version {head[:11]!r}")
        yield (_WAIT, 0)  # the security step depends on the client's version reply
        if self.version is None:
            raise ProtocolError("RFB relay: backend spoke before the client chose a version")
        if self.version == (3, 3):
            (sec,) = _U32.unpack((yield (_PASS, 4)))
            if sec == SecurityType.INVALID:
                yield from self._reason()
            if sec not in RELAYABLE_SECURITY:
                raise UnsupportedError(f"RFB relay: backend security type {sec} not relayable")
            self.security = sec
        else:
            count = (yield (_TAKE, 1))[0]
            if count == 0:
                yield (_EMIT, b"\x00")
                yield from self._reason()
            offered = yield (_TAKE, count)
            kept = tuple(t for t in offered if t in RELAYABLE_SECURITY)
            if not kept:
                raise UnsupportedError(
                    f"RFB relay: backend offers security types {list(offered)}, none relayable"
                )
            self._offered = kept
            yield (_EMIT, bytes((len(kept), *kept)))
            yield (_WAIT, 0)
            if self.security is None:
                raise ProtocolError("RFB relay: backend spoke before the client chose security")
        if self.security == SecurityType.VNC_AUTH:
            yield (_PASS, 16)  # challenge
        if self.security == SecurityType.VNC_AUTH or self.version == (3, 8):
            (result,) = _U32.unpack((yield (_PASS, 4)))
            if result != 0:
                if self.version == (3, 8):
                    yield from self._reason()
                yield from self._dead()
        width_height_pf = yield (_PASS, 20)
        self.pixel_format = PixelFormat.unpack(width_height_pf[4:20])
        (name_len,) = _U32.unpack((yield (_PASS, 4)))
        if name_len > MAX_DESKTOP_NAME:
            raise LimitExceededError(f"RFB relay: desktop name of {name_len} bytes")
        if name_len:
            yield (_PASS, name_len)
        self.normal = True
        while True:
            yield (_BOUNDARY, 0)
            kind = (yield (_TAKE, 1))[0]
            if kind == ServerMsg.XVP:
                yield (_TAKE, 3)  # the gateway owns XVP; drop the backend's own messages
                continue
            yield (_EMIT, bytes((kind,)))
            if kind == ServerMsg.FRAMEBUFFER_UPDATE:
                yield from self._framebuffer_update()
            elif kind == ServerMsg.SET_COLOUR_MAP_ENTRIES:
                _pad, _first, n = struct.unpack(">BHH", (yield (_PASS, 5)))
                yield (_SKIP, 6 * n)
            elif kind == ServerMsg.BELL:
                pass
            elif kind == ServerMsg.SERVER_CUT_TEXT:
                (length,) = _S32.unpack((yield (_PASS, 7))[3:])
                if not 0 <= length <= MAX_CUT_TEXT:
                    raise LimitExceededError(f"RFB relay: server cut text of {length} bytes")
                yield (_SKIP, length)
            else:
                raise UnsupportedError(f"RFB relay: unexpected server message type {kind}")

    def _reason(self) -> _Parser:
        (length,) = _U32.unpack((yield (_PASS, 4)))
        if length > MAX_REASON:
            raise LimitExceededError(f"RFB relay: failure reason of {length} bytes")
        yield (_SKIP, length)
        yield from self._dead()

    def _dead(self) -> _Parser:
        """The backend refused the connection; anything more it sends is an error."""
        yield (_WAIT, 0)
        raise ProtocolError("RFB relay: backend sent data after refusing the connection")

    def _framebuffer_update(self) -> _Parser:
        (count,) = _U16.unpack((yield (_PASS, 3))[1:])
        i = 0
        while count == 0xFFFF or i < count:
            i += 1
            _x, _y, w, h, enc = _RECT.unpack((yield (_PASS, 12)))
            if enc == Encoding.LAST_RECT:
                return
            if enc not in self.client_encodings and enc not in (Encoding.RAW,):
                raise UnsupportedError(f"RFB relay: backend used encoding {enc} not announced")
            yield from self._rect(enc, w, h)

    def _rect(self, enc: int, w: int, h: int) -> _Parser:
        pf = self.pixel_format
        assert pf is not None
        bpp = pf.bytes_per_pixel
        if enc == Encoding.RAW:
            yield (_SKIP, w * h * bpp)
        elif enc == Encoding.COPYRECT:
            yield (_SKIP, 4)
        elif enc == Encoding.RRE:
            (n,) = _U32.unpack((yield (_PASS, 4)))
            if n > w * h:
                raise ProtocolError(f"RFB relay: RRE with {n} subrects in {w}x{h}")
            yield (_SKIP, bpp + n * (bpp + 8))
        elif enc == Encoding.HEXTILE:
            yield from self._hextile(w, h, bpp)
        elif enc in (Encoding.ZLIB, Encoding.ZRLE):
            (n,) = _U32.unpack((yield (_PASS, 4)))
            if n > MAX_RECT_PAYLOAD:
                raise LimitExceededError(f"RFB relay: rectangle payload of {n} bytes")
            yield (_SKIP, n)
        elif enc == Encoding.TIGHT:
            yield from self._tight(w, h, pf)
        elif enc == Encoding.CURSOR:
            yield (_SKIP, w * h * bpp + (w + 7) // 8 * h)
        elif enc == Encoding.EXTENDED_DESKTOP_SIZE:
            screens = (yield (_PASS, 4))[0]
            yield (_SKIP, 16 * screens)
        elif enc == DESKTOP_NAME:
            (n,) = _U32.unpack((yield (_PASS, 4)))
            if n > MAX_DESKTOP_NAME:
                raise LimitExceededError(f"RFB relay: desktop name of {n} bytes")
            yield (_SKIP, n)
        elif enc == QEMU_LED_STATE:
            yield (_SKIP, 1)
        elif enc in (Encoding.DESKTOP_SIZE, QEMU_EXTENDED_KEY_EVENT):
            pass
        else:
            raise UnsupportedError(f"RFB relay: cannot frame encoding {enc}")

    def _hextile(self, w: int, h: int, bpp: int) -> _Parser:
        for ty in range(0, h, 16):
            th = min(16, h - ty)
            for tx in range(0, w, 16):
                tw = min(16, w - tx)
                sub = (yield (_PASS, 1))[0]
                if sub & 1:
                    yield (_SKIP, tw * th * bpp)
                    continue
                extra = (bpp if sub & 2 else 0) + (bpp if sub & 4 else 0) + (1 if sub & 8 else 0)
                if extra:
                    data = yield (_PASS, extra)
                    if sub & 8:
                        yield (_SKIP, data[-1] * ((bpp + 2) if sub & 16 else 2))

    def _tight(self, w: int, h: int, pf: PixelFormat) -> _Parser:
        tpixel = (
            3
            if pf.true_colour and pf.bits_per_pixel == 32 and pf.depth == 24
            and pf.red_max == pf.green_max == pf.blue_max == 255
            else pf.bytes_per_pixel
        )
        comp = (yield (_PASS, 1))[0] >> 4
        if comp == 8:  # fill
            yield (_SKIP, tpixel)
            return
        if comp == 9:  # JPEG
            yield (_SKIP, (yield from self._compact_length()))
            return
        if comp > 9:
            raise ProtocolError(f"RFB relay: bad Tight compression control {comp:#x}")
        size = w * h * tpixel
        if comp & 4:
            filt = (yield (_PASS, 1))[0]
            if filt == 1:
                colours = (yield (_PASS, 1))[0] + 1
                yield (_SKIP, colours * tpixel)
                size = (w + 7) // 8 * h if colours == 2 else w * h
            elif filt not in (0, 2):
                raise ProtocolError(f"RFB relay: bad Tight filter {filt}")
        if size < 12:
            yield (_SKIP, size)
        else:
            yield (_SKIP, (yield from self._compact_length()))

    def _compact_length(self) -> Generator[_Instr, bytes, int]:
        b = (yield (_PASS, 1))[0]
        length = b & 0x7F
        if b & 0x80:
            b = (yield (_PASS, 1))[0]
            length |= (b & 0x7F) << 7
            if b & 0x80:
                length |= (yield (_PASS, 1))[0] << 14
        return length

    # -- browser -> server --------------------------------------------------------------
    def _client_parser(self) -> _Parser:
        head = yield (_PASS, 12)
        version = PROTOCOL_VERSIONS.get(head)
        if version is None:
            raise UnsupportedError(f"RFB relay: browser speaks unknown version {head[:11]!r}")
        self.version = version
        if version == (3, 3):
            yield (_WAIT, 0)  # the backend chose the security type
        else:
            choice = (yield (_PASS, 1))[0]
            if choice not in self._offered:
                raise ProtocolError(f"RFB relay: browser chose security type {choice} not offered")
            self.security = choice
        if self.security == SecurityType.VNC_AUTH:
            yield (_PASS, 16)
        yield (_PASS, 1)  # ClientInit
        handlers: dict[int, Callable[[], _Parser]] = {
            ClientMsg.SET_PIXEL_FORMAT: self._set_pixel_format,
            ClientMsg.SET_ENCODINGS: self._set_encodings,
            ClientMsg.CLIENT_CUT_TEXT: self._client_cut_text,
            ClientMsg.XVP: self._client_xvp,
            QEMU_CLIENT_MSG: self._qemu_message,
            SET_DESKTOP_SIZE_MSG: self._set_desktop_size,
        }
        fixed: dict[int, int] = {ClientMsg.FRAMEBUFFER_UPDATE_REQUEST: 9, ClientMsg.KEY_EVENT: 7,
                 ClientMsg.POINTER_EVENT: 5}
        while True:
            kind = (yield (_TAKE, 1))[0]
            if kind in fixed:
                yield (_EMIT, bytes((kind,)))
                yield (_PASS, fixed[kind])
                if kind != ClientMsg.FRAMEBUFFER_UPDATE_REQUEST:
                    self.input_events += 1
            elif kind in handlers:
                yield from handlers[kind]()
            else:
                raise UnsupportedError(f"RFB relay: unexpected client message type {kind}")

    def _set_pixel_format(self) -> _Parser:
        body = yield (_TAKE, 19)
        self.pixel_format = PixelFormat.unpack(body[3:19])
        yield (_EMIT, bytes((ClientMsg.SET_PIXEL_FORMAT,)) + body)

    def _set_encodings(self) -> _Parser:
        (count,) = _U16.unpack((yield (_TAKE, 3))[1:])
        if count > MAX_ENCODINGS:
            raise LimitExceededError(f"RFB relay: SetEncodings with {count} encodings")
        raw = yield (_TAKE, 4 * count)
        announced = struct.unpack(f">{count}i", raw)
        kept = tuple(e for e in announced if e in RELAYABLE_ENCODINGS)
        self.client_encodings = kept
        if Encoding.XVP in announced and not self.xvp_enabled:
            self.xvp_enabled = True
            self.queue_to_client(xvp_message(XvpCode.INIT))
        yield (_EMIT, struct.pack(f">BxH{len(kept)}i", ClientMsg.SET_ENCODINGS, len(kept), *kept))

    def _client_cut_text(self) -> _Parser:
        body = yield (_TAKE, 7)
        (length,) = _S32.unpack(body[3:])
        if not 0 <= length <= MAX_CUT_TEXT:
            raise LimitExceededError(f"RFB relay: client cut text of {length} bytes")
        yield (_EMIT, bytes((ClientMsg.CLIENT_CUT_TEXT,)) + body)
        yield (_SKIP, length)

    def _client_xvp(self) -> _Parser:
        _pad, version, code = yield (_TAKE, 3)
        self._events.append(XvpRequested(version, code))

    def _qemu_message(self) -> _Parser:
        subtype = (yield (_TAKE, 1))[0]
        if subtype != 0:
            raise UnsupportedError(f"RFB relay: QEMU client message subtype {subtype}")
        body = yield (_TAKE, 10)
        self.input_events += 1
        yield (_EMIT, bytes((QEMU_CLIENT_MSG, 0)) + body)

    def _set_desktop_size(self) -> _Parser:
        yield (_EMIT, bytes((SET_DESKTOP_SIZE_MSG,)))
        screens = (yield (_PASS, 7))[5]
        yield (_SKIP, 16 * screens)
