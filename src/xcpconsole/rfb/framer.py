"""Sans-I/O RFB message framer for the web gateway's relay (both directions).

Why a framer instead of :mod:`.client` / :mod:`.server`: the gateway is a relay.  It
must know where each message starts and ends (to inject ``XVP_INIT`` only between two
server messages, and to cut the browser's XVP requests out of the stream), but it must
never decode pixels: decoding costs CPU and a frame buffer per session, and 200
sessions per process is a goal.  So this module reads only headers and lengths and
passes payloads through untouched, in bounded memory.  It reads those headers with the
same pure functions as the client and the server (:mod:`.handshake` for the handshake,
:mod:`.messages` for the lengths and bounds of later messages), applied to the bytes
it has taken, so the three agree on every rule.

To keep the framing exact it also *controls what the backend may send*: the browser's
``SetEncodings`` is rewritten to the encodings listed in :data:`RELAYABLE_ENCODINGS`
(those whose payload length can be found without decompressing), and the backend's
security types are narrowed to None and VNC authentication.  The XVP pseudo-encoding is
never forwarded: the gateway implements XVP itself with XenAPI power calls, exactly
like the real host's web console does.  Both ends must announce a published RFB
version (3.3, 3.7 or 3.8): the version bytes are forwarded untouched, so with another
version (Apple's 3.889) the two ends could run handshake variants the framer cannot
frame.

Each direction is a generator-based parser that yields small instructions (take N bytes,
pass N bytes through, emit these bytes, "I am between two messages", wait for data); a
driver (:class:`_Stream`) feeds it from a buffer that never holds more than one header.
Server-direction decisions that depend on the client's reply (which version, which
security type) are taken only once the server speaks again; the server cannot speak
before it received that reply, and the reply went through this framer first.

Anything either direction raises leaves the whole framer failed: every later call to
:meth:`RfbRelayFramer.client_data` or :meth:`~RfbRelayFramer.server_data` raises a
ProtocolError saying the relay already failed, and why.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

from ..errors import LimitExceededError, ProtocolError, UnsupportedError
from . import events as ev
from . import handshake as hs
from . import messages as msg
from .auth import CHALLENGE_LEN
from .constants import (
    COMPRESS_LEVEL_ENCODINGS,
    HEXTILE_ANY_SUBRECTS,
    HEXTILE_BACKGROUND_SPECIFIED,
    HEXTILE_FOREGROUND_SPECIFIED,
    HEXTILE_RAW,
    HEXTILE_SUBRECTS_COLOURED,
    HEXTILE_TILE,
    JPEG_QUALITY_ENCODINGS,
    MAX_DESKTOP_NAME,
    PUBLISHED_VERSIONS,
    TIGHT_EXPLICIT_FILTER,
    TIGHT_FILL,
    TIGHT_FILTER_COPY,
    TIGHT_FILTER_GRADIENT,
    TIGHT_FILTER_PALETTE,
    TIGHT_JPEG,
    TIGHT_MIN_TO_COMPRESS,
    ClientMsg,
    Encoding,
    QemuClientMsg,
    SecurityType,
    ServerMsg,
    XvpCode,
)
from .pixelformat import PixelFormat, is_tpixel3

__all__ = ["RELAYABLE_ENCODINGS", "RfbRelayFramer", "XvpRequested", "xvp_message"]

#: Largest zlib / ZRLE payload of one rectangle the relay forwards.
MAX_RECT_PAYLOAD = 1 << 28
#: QEMU extended key event: type, subtype, down flag (u16), keysym (u32), keycode (u32).
QEMU_EXTENDED_KEY_EVENT_LEN = 12

RELAYABLE_ENCODINGS: frozenset[int] = frozenset(
    {
        Encoding.RAW, Encoding.COPYRECT, Encoding.RRE, Encoding.HEXTILE, Encoding.ZLIB,
        Encoding.TIGHT, Encoding.ZRLE, Encoding.DESKTOP_SIZE, Encoding.LAST_RECT,
        Encoding.CURSOR, Encoding.EXTENDED_DESKTOP_SIZE, Encoding.QEMU_EXTENDED_KEY_EVENT,
        Encoding.QEMU_LED_STATE, Encoding.DESKTOP_NAME,
    }
    | set(JPEG_QUALITY_ENCODINGS)
    | set(COMPRESS_LEVEL_ENCODINGS)
)
"""Encodings forwarded to the backend: every one of them can be framed by length alone."""

RELAYABLE_SECURITY = (SecurityType.NONE, SecurityType.VNC_AUTH)

_STATE = "relay"  # the "state" shared parsers name in their errors


def xvp_message(code: int) -> bytes:
    """An XVP server message (version 1): ``XvpCode.INIT`` or ``XvpCode.FAIL``."""
    return msg.pack_server_xvp(code)


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

_U32 = struct.Struct(">I")
_RECT = msg.RECT_HEADER

_T = TypeVar("_T")


def _whole(parsed: tuple[_T, int] | None) -> _T:
    """The value a shared ``parse_*`` read from exactly the bytes its message takes."""
    if parsed is None:  # the framer took fewer bytes than the message's own length
        raise ProtocolError("RFB relay: message shorter than its length")
    return parsed[0]


def _length(length: int | None) -> int:
    """A shared ``*_length`` applied to a complete head."""
    if length is None:
        raise ProtocolError("RFB relay: message head shorter than expected")
    return length


def _published_version(head: bytes, who: str) -> tuple[int, int]:
    """The shared ProtocolVersion rule, plus the relay's own: only published versions."""
    version = hs.parse_version(head, who)
    if version not in PUBLISHED_VERSIONS:
        raise UnsupportedError(
            f"RFB relay: {who} speaks RFB {version[0]}.{version[1]:03d}; the relay forwards "
            "only 3.3, 3.7 and 3.8")
    return version


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

    def feed(self, data: bytes) -> bytes:
        """Bytes to forward for ``data``; only ProtocolError subclasses escape.  The owning
        framer refuses all input once this raised (the parser is then finished)."""
        self._buf += data
        try:
            self._run()
        except ProtocolError:
            raise
        except (struct.error, ValueError, IndexError, StopIteration) as exc:
            raise ProtocolError(f"RFB relay: malformed {self._name} message: {exc!r}") from None
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
        #: what failed the relay (then all input is refused)
        self.error: BaseException | None = None
        self._offered: tuple[int, ...] = ()
        self._events: deque[XvpRequested] = deque()
        self._server = _Stream(self._server_parser(), "server")
        self._client = _Stream(self._client_parser(), "client")

    # -- public API ---------------------------------------------------------------------
    def client_data(self, data: bytes) -> bytes:
        return self._feed(self._client, data)

    def server_data(self, data: bytes) -> bytes:
        return self._feed(self._server, data)

    def next_event(self) -> XvpRequested | None:
        return self._events.popleft() if self._events else None

    def queue_to_client(self, message: bytes) -> None:
        """Insert a complete server message into the browser stream at the next boundary."""
        self._server.pending += message

    def data_for_client(self) -> bytes:
        """Injected bytes that may be sent to the browser right now (else ``b""``)."""
        return self._server.take_pending()

    def _feed(self, stream: _Stream, data: bytes) -> bytes:
        if self.error is not None:
            raise ProtocolError(f"RFB relay: the relay already failed: {self.error}")
        try:
            return stream.feed(data)
        except Exception as exc:
            self.error = exc
            raise

    # -- server -> browser --------------------------------------------------------------
    def _server_parser(self) -> _Parser:
        _published_version((yield (_PASS, hs.VERSION_LEN)), "backend")
        yield (_WAIT, 0)  # the security step depends on the client's version reply
        if self.version is None:
            raise ProtocolError("RFB relay: backend spoke before the client chose a version")
        if self.version == (3, 3):
            sec = _whole(hs.parse_security_type_33((yield (_PASS, hs.SECURITY_TYPE_33_LEN))))
            if sec == SecurityType.INVALID:
                yield from self._reason()
            if sec not in RELAYABLE_SECURITY:
                raise UnsupportedError(f"RFB relay: backend security type {sec} not relayable")
            self.security = sec
        else:
            count = yield (_TAKE, 1)
            offered = _whole(hs.parse_security_types(count + (yield (_TAKE, count[0]))))
            if not offered:
                yield (_EMIT, hs.pack_security_types(()))
                yield from self._reason()
            kept = tuple(t for t in offered if t in RELAYABLE_SECURITY)
            if not kept:
                raise UnsupportedError(
                    f"RFB relay: backend offers security types {list(offered)}, none relayable"
                )
            self._offered = kept
            yield (_EMIT, hs.pack_security_types(kept))
            yield (_WAIT, 0)
            if self.security is None:
                raise ProtocolError("RFB relay: backend spoke before the client chose security")
        if self.security == SecurityType.VNC_AUTH:
            yield (_PASS, CHALLENGE_LEN)
        if hs.expects_security_result(self.version, self.security):
            ok = _whole(hs.parse_security_result((yield (_PASS, hs.SECURITY_RESULT_LEN))))
            if not ok:
                if hs.failure_has_reason(self.version):
                    yield from self._reason()
                yield from self._dead()
        head = yield (_PASS, hs.SERVER_INIT_HEAD_LEN)
        name_len = _length(hs.server_init_length(head)) - len(head)
        name = (yield (_PASS, name_len)) if name_len else b""
        init = _whole(hs.parse_server_init(head + name))
        init.pixel_format.validate()  # the framing depends on its pixel size
        self.pixel_format = init.pixel_format
        self.normal = True
        while True:
            yield (_BOUNDARY, 0)
            kind = (yield (_TAKE, 1))[0]
            if kind == ServerMsg.XVP:
                # the gateway owns XVP; drop the backend's own messages
                yield (_TAKE, msg.XVP_LEN - 1)
                continue
            kind_byte = bytes((kind,))
            yield (_EMIT, kind_byte)
            if kind == ServerMsg.FRAMEBUFFER_UPDATE:
                yield from self._framebuffer_update()
            elif kind == ServerMsg.SET_COLOUR_MAP_ENTRIES:
                head = kind_byte + (yield (_PASS, msg.COLOUR_MAP_HEAD_LEN - 1))
                yield (_SKIP, _length(msg.colour_map_length(head, _STATE)) - len(head))
            elif kind == ServerMsg.BELL:
                pass
            elif kind == ServerMsg.SERVER_CUT_TEXT:
                head = kind_byte + (yield (_PASS, msg.CUT_TEXT_HEAD_LEN - 1))
                total = _length(msg.cut_text_length(head, "ServerCutText", _STATE))
                yield (_SKIP, total - len(head))
            else:
                raise UnsupportedError(f"RFB relay: unexpected server message type {kind}")

    def _reason(self) -> _Parser:
        head = yield (_PASS, hs.REASON_HEAD_LEN)
        yield (_SKIP, _length(hs.reason_length(head)) - len(head))
        yield from self._dead()

    def _dead(self) -> _Parser:
        """The backend refused the connection; anything more it sends is an error."""
        yield (_WAIT, 0)
        raise ProtocolError("RFB relay: backend sent data after refusing the connection")

    def _framebuffer_update(self) -> _Parser:
        head = bytes((ServerMsg.FRAMEBUFFER_UPDATE,)) + (
            yield (_PASS, msg.FRAMEBUFFER_UPDATE_HEAD_LEN - 1))
        start = _whole(msg.parse_server_message(head, _STATE))
        assert isinstance(start, msg.FramebufferUpdateStart)
        count = start.nrects
        i = 0
        while count == msg.UNTIL_LAST_RECT or i < count:
            i += 1
            _x, _y, w, h, enc = _RECT.unpack((yield (_PASS, msg.RECT_HEADER_LEN)))
            if enc == Encoding.LAST_RECT:
                return
            if enc not in self.client_encodings and enc != Encoding.RAW:
                raise UnsupportedError(f"RFB relay: backend used encoding {enc} not announced")
            yield from self._rect(enc, w, h)

    def _rect(self, enc: int, w: int, h: int) -> _Parser:
        pf = self.pixel_format
        assert pf is not None
        bpp = pf.bytes_per_pixel
        if enc == Encoding.RAW:
            yield (_SKIP, w * h * bpp)
        elif enc == Encoding.COPYRECT:
            yield (_SKIP, 4)  # source x, y
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
            yield (_SKIP, w * h * bpp + (w + 7) // 8 * h)  # pixels, then the bit mask
        elif enc == Encoding.EXTENDED_DESKTOP_SIZE:
            screens = (yield (_PASS, msg.SCREENS_HEAD_LEN))[0]
            yield (_SKIP, msg.SCREEN_LEN * screens)
        elif enc == Encoding.DESKTOP_NAME:
            (n,) = _U32.unpack((yield (_PASS, 4)))
            if n > MAX_DESKTOP_NAME:
                raise LimitExceededError(f"RFB relay: desktop name of {n} bytes")
            yield (_SKIP, n)
        elif enc == Encoding.QEMU_LED_STATE:
            yield (_SKIP, 1)
        elif enc in (Encoding.DESKTOP_SIZE, Encoding.QEMU_EXTENDED_KEY_EVENT):
            pass
        else:
            raise UnsupportedError(f"RFB relay: cannot frame encoding {enc}")

    def _hextile(self, w: int, h: int, bpp: int) -> _Parser:
        tile = HEXTILE_TILE
        for ty in range(0, h, tile):
            th = min(tile, h - ty)
            for tx in range(0, w, tile):
                tw = min(tile, w - tx)
                sub = (yield (_PASS, 1))[0]
                if sub & HEXTILE_RAW:
                    yield (_SKIP, tw * th * bpp)
                    continue
                extra = ((bpp if sub & HEXTILE_BACKGROUND_SPECIFIED else 0)
                         + (bpp if sub & HEXTILE_FOREGROUND_SPECIFIED else 0)
                         + (1 if sub & HEXTILE_ANY_SUBRECTS else 0))
                if extra:
                    data = yield (_PASS, extra)
                    if sub & HEXTILE_ANY_SUBRECTS:
                        per = (bpp + 2) if sub & HEXTILE_SUBRECTS_COLOURED else 2
                        yield (_SKIP, data[-1] * per)

    def _tight(self, w: int, h: int, pf: PixelFormat) -> _Parser:
        tpixel = 3 if is_tpixel3(pf) else pf.bytes_per_pixel
        comp = (yield (_PASS, 1))[0] >> 4
        if comp == TIGHT_FILL:
            yield (_SKIP, tpixel)
            return
        if comp == TIGHT_JPEG:
            yield (_SKIP, (yield from self._compact_length()))
            return
        if comp > TIGHT_JPEG:
            raise ProtocolError(f"RFB relay: bad Tight compression control {comp:#x}")
        size = w * h * tpixel
        if comp & TIGHT_EXPLICIT_FILTER:
            filt = (yield (_PASS, 1))[0]
            if filt == TIGHT_FILTER_PALETTE:
                colours = (yield (_PASS, 1))[0] + 1
                yield (_SKIP, colours * tpixel)
                size = (w + 7) // 8 * h if colours == 2 else w * h
            elif filt not in (TIGHT_FILTER_COPY, TIGHT_FILTER_GRADIENT):
                raise ProtocolError(f"RFB relay: bad Tight filter {filt}")
        if size < TIGHT_MIN_TO_COMPRESS:
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
        version = _published_version((yield (_PASS, hs.VERSION_LEN)), "browser")
        self.version = version
        if version == (3, 3):
            yield (_WAIT, 0)  # the backend chose the security type
        else:
            choice = (yield (_PASS, 1))[0]
            if choice not in self._offered:
                raise ProtocolError(f"RFB relay: browser chose security type {choice} not offered")
            self.security = choice
        if self.security == SecurityType.VNC_AUTH:
            yield (_PASS, CHALLENGE_LEN)
        yield (_PASS, 1)  # ClientInit
        handlers: dict[int, Callable[[bytes], _Parser]] = {
            ClientMsg.SET_PIXEL_FORMAT: self._set_pixel_format,
            ClientMsg.SET_ENCODINGS: self._set_encodings,
            ClientMsg.CLIENT_CUT_TEXT: self._client_cut_text,
            ClientMsg.XVP: self._client_xvp,
            ClientMsg.QEMU: self._qemu_message,
            ClientMsg.SET_DESKTOP_SIZE: self._set_desktop_size,
        }
        fixed: dict[int, int] = {
            k: msg.FIXED_CLIENT_MESSAGE_LEN[k] - 1
            for k in (ClientMsg.FRAMEBUFFER_UPDATE_REQUEST, ClientMsg.KEY_EVENT,
                      ClientMsg.POINTER_EVENT)
        }
        while True:
            kind = (yield (_TAKE, 1))[0]
            if kind in fixed:
                yield (_EMIT, bytes((kind,)))
                yield (_PASS, fixed[kind])
                if kind != ClientMsg.FRAMEBUFFER_UPDATE_REQUEST:
                    self.input_events += 1
            elif kind in handlers:
                yield from handlers[kind](bytes((kind,)))
            else:
                raise UnsupportedError(f"RFB relay: unexpected client message type {kind}")

    def _client_message(self, data: bytes) -> ev.EventFromClient | msg.SetDesktopSizeRequest:
        return _whole(msg.parse_client_message(data, _STATE))

    def _set_pixel_format(self, kind: bytes) -> _Parser:
        data = kind + (yield (_TAKE, msg.SET_PIXEL_FORMAT_LEN - 1))
        event = self._client_message(data)
        assert isinstance(event, ev.SetPixelFormat)
        self.pixel_format = event.pixel_format
        yield (_EMIT, data)

    def _set_encodings(self, kind: bytes) -> _Parser:
        head = kind + (yield (_TAKE, msg.SET_ENCODINGS_HEAD_LEN - 1))
        body_len = _length(msg.set_encodings_length(head, _STATE)) - len(head)
        event = self._client_message(head + (yield (_TAKE, body_len)))
        assert isinstance(event, ev.SetEncodings)
        kept = tuple(e for e in event.encodings if e in RELAYABLE_ENCODINGS)
        self.client_encodings = kept
        if Encoding.XVP in event.encodings and not self.xvp_enabled:
            self.xvp_enabled = True
            self.queue_to_client(xvp_message(XvpCode.INIT))
        yield (_EMIT, msg.pack_set_encodings(kept))

    def _client_cut_text(self, kind: bytes) -> _Parser:
        head = kind + (yield (_TAKE, msg.CUT_TEXT_HEAD_LEN - 1))
        total = _length(msg.cut_text_length(head, "ClientCutText", _STATE))
        yield (_EMIT, head)
        yield (_SKIP, total - len(head))

    def _client_xvp(self, kind: bytes) -> _Parser:
        event = self._client_message(kind + (yield (_TAKE, msg.XVP_LEN - 1)))
        assert isinstance(event, ev.XvpRequest)
        self._events.append(XvpRequested(event.version, event.code))

    def _qemu_message(self, kind: bytes) -> _Parser:
        subtype = (yield (_TAKE, 1))[0]
        if subtype != QemuClientMsg.EXTENDED_KEY_EVENT:
            raise UnsupportedError(f"RFB relay: QEMU client message subtype {subtype}")
        body = yield (_TAKE, QEMU_EXTENDED_KEY_EVENT_LEN - 2)
        self.input_events += 1
        yield (_EMIT, kind + bytes((subtype,)) + body)

    def _set_desktop_size(self, kind: bytes) -> _Parser:
        yield (_EMIT, kind)
        head = kind + (yield (_PASS, msg.SET_DESKTOP_SIZE_HEAD_LEN - 1))
        yield (_SKIP, _length(msg.set_desktop_size_length(head)) - len(head))
