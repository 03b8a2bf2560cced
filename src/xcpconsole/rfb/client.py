"""Client side of RFB as a sans-I/O state machine, with the frame buffer.

Feed server bytes with ``receive_data``, pull events with ``next_event``,
send ``data_to_send()``.  The handshake (3.3 / 3.7 / 3.8, security None or
VNC Authentication) runs by itself; at ``ServerInitReceived`` our pixel format
and encodings are already queued, then call ``request_update()``.

Any exception raised while reading the server's bytes moves the machine to
``ClientState.ERROR``, which refuses further input with a ProtocolError that says
why; asking for something before the handshake ended raises UsageError.

Incoming bytes live in one bytearray read through a moving offset; decoders
get a memoryview of it (no copy of big payloads), so a large Raw rectangle
arriving in many chunks is converted once, straight into ``framebuffer``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np

from ..errors import AuthError, LimitExceededError, ProtocolError, UnsupportedError, UsageError
from . import events as ev
from . import handshake as hs
from . import messages as msg
from .auth import CHALLENGE_LEN, vnc_auth_response
from .constants import (
    DEFAULT_ENCODINGS,
    MAX_DIMENSION,
    MAX_FRAMEBUFFER_PIXELS,
    DesktopSizeStatus,
    Encoding,
    SecurityType,
    XvpCode,
)
from .decoders import RectDecoder, TightDecoder, make_decoders
from .pixelformat import BGRX32, RGB, PixelFormat

__all__ = ["ClientConnection", "ClientState", "ClientStats"]

#: Cursor shapes larger than this are refused (real cursors are at most 256x256).
MAX_CURSOR_DIMENSION = 1024

_COMPACT_AT = 1 << 16


class ClientState(Enum):
    VERSION = "VERSION"
    SECURITY = "SECURITY"
    AUTH = "AUTH"
    SECURITY_RESULT = "SECURITY_RESULT"
    SERVER_INIT = "SERVER_INIT"
    NORMAL = "NORMAL"
    CLOSED = "CLOSED"  # the server closed the connection (EOF)
    ERROR = "ERROR"  # something raised while reading the server's bytes; final


@dataclass
class ClientStats:
    """Counters of what the server sent, for benchmarks and the status line.

    The only place these are counted; readers wanting counts over a period take a
    :meth:`snapshot` and later ask for :meth:`since` it.
    """

    updates: int = 0
    rects: dict[int, int] = field(default_factory=dict)  # encoding -> count (pseudo: < 0)
    pixel_bytes: int = 0  # w*h*bytes-per-pixel of pixel rectangles (their Raw size)
    wire_bytes: int = 0  # bytes of FramebufferUpdate messages (headers + payloads)
    bytes_received: int = 0  # everything fed to receive_data
    jpeg_rects: int = 0  # Tight rectangles sent as JPEG (lossy); the others are lossless

    @property
    def pixel_rects(self) -> int:
        """Rectangles carrying pixels (of a real encoding)."""
        return sum(n for e, n in self.rects.items() if e >= 0)

    @property
    def pseudo_rects(self) -> int:
        """Pseudo-rectangles (DesktopSize, LastRect, Cursor, ...)."""
        return sum(n for e, n in self.rects.items() if e < 0)

    @property
    def ratio(self) -> float:
        """Raw size over wire size of the updates (the compression achieved)."""
        return self.pixel_bytes / self.wire_bytes if self.wire_bytes else 0.0

    def snapshot(self) -> ClientStats:
        """An independent copy of the counters as they are now."""
        return replace(self, rects=dict(self.rects))

    def since(self, earlier: ClientStats) -> ClientStats:
        """What was counted after ``earlier`` (a :meth:`snapshot` of these counters)."""
        rects = {e: n - earlier.rects.get(e, 0) for e, n in self.rects.items()}
        return ClientStats(
            updates=self.updates - earlier.updates,
            rects={e: n for e, n in rects.items() if n},
            pixel_bytes=self.pixel_bytes - earlier.pixel_bytes,
            wire_bytes=self.wire_bytes - earlier.wire_bytes,
            bytes_received=self.bytes_received - earlier.bytes_received,
            jpeg_rects=self.jpeg_rects - earlier.jpeg_rects,
        )


class ClientConnection:
    """One RFB client session and its frame buffer."""

    def __init__(self, *, password: str | None = None, shared: bool = True,
                 encodings: Sequence[int] | None = None,
                 pixel_format: PixelFormat | None = BGRX32,
                 max_pixels: int = MAX_FRAMEBUFFER_PIXELS) -> None:
        if pixel_format is not None:
            pixel_format.validate()
            if not pixel_format.true_colour:
                raise UnsupportedError("the client decodes true-colour pixel formats only")
        self._decoders: dict[int, RectDecoder] = make_decoders()
        if encodings is None:
            encodings = [int(e) for e in DEFAULT_ENCODINGS]
        for e in encodings:
            if e >= 0 and e not in self._decoders:
                raise UnsupportedError(f"no decoder for encoding {e}")
        self.encodings = tuple(encodings)
        self.password = password
        self.shared = shared
        self.max_pixels = max_pixels
        self.state = ClientState.VERSION
        #: what moved the machine to ERROR
        self.error: BaseException | None = None
        self.framebuffer: RGB | None = None
        self.width = 0
        self.height = 0
        self.name = ""
        self.server_pixel_format: PixelFormat | None = None
        self.pixel_format: PixelFormat | None = pixel_format  # what we decode
        self.version: tuple[int, int] = (0, 0)
        self.security_type = 0
        self.xvp_supported = False
        self.stats = ClientStats()
        self._buf = bytearray()
        self._pos = 0
        self._out = bytearray()
        self._events: deque[ev.EventFromServer] = deque()
        # FramebufferUpdate in progress
        self._rects_left = 0
        self._in_update = False
        self._rect: msg.RectHeader | None = None
        self._rect_infos: list[ev.RectInfo] = []

    # -- I/O ------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the server (``b""`` means the server closed)."""
        if self.state is ClientState.ERROR:
            raise self._already_failed()
        if self.state is ClientState.CLOSED:
            return
        if not data:
            self.state = ClientState.CLOSED
            self._events.append(ev.ConnectionClosed())
            return
        self.stats.bytes_received += len(data)
        try:
            if self._pos and (self._pos >= len(self._buf) or self._pos >= _COMPACT_AT):
                del self._buf[:self._pos]
                self._pos = 0
            self._buf += data
        except BufferError:  # a decoder still holds a view: move to a fresh buffer
            self._buf = bytearray(memoryview(self._buf)[self._pos:]) + data
            self._pos = 0

    def next_event(self) -> ev.EventFromServer | None:
        """The next event, or None when more bytes are needed."""
        if self.state is ClientState.ERROR:
            raise self._already_failed()
        try:
            while not self._events and self.state is not ClientState.CLOSED:
                # not released explicitly: arrays a decoder made from it may outlive the
                # call (in a traceback); receive_data copies the buffer if still exported
                view = memoryview(self._buf)[self._pos:]
                used = self._step(view)
                del view
                if used is None:
                    break
                self._pos += used
        except Exception as exc:
            self.error = exc
            self.state = ClientState.ERROR
            raise
        return self._events.popleft() if self._events else None

    def _already_failed(self) -> ProtocolError:
        return ProtocolError(f"the RFB connection already failed: {self.error}")

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    # -- requests -------------------------------------------------------------
    def _require_normal(self, what: str) -> None:
        if self.state is ClientState.NORMAL:
            return
        if self.state is ClientState.ERROR:
            raise self._already_failed()
        raise UsageError(f"cannot send {what} in state {self.state.value}")

    def request_update(self, incremental: bool = True, x: int = 0, y: int = 0,
                       width: int | None = None, height: int | None = None) -> None:
        self._require_normal("FramebufferUpdateRequest")
        w = self.width - x if width is None else width
        h = self.height - y if height is None else height
        self._out += msg.pack_framebuffer_update_request(incremental, x, y, max(0, w), max(0, h))

    def key_event(self, down: bool, keysym: int) -> None:
        self._require_normal("KeyEvent")
        self._out += msg.pack_key_event(down, keysym)

    def pointer_event(self, button_mask: int, x: int, y: int) -> None:
        self._require_normal("PointerEvent")
        x = min(max(x, 0), max(self.width - 1, 0))
        y = min(max(y, 0), max(self.height - 1, 0))
        self._out += msg.pack_pointer_event(button_mask, x, y)

    def cut_text(self, text: str) -> None:
        self._require_normal("ClientCutText")
        self._out += msg.pack_client_cut_text(text)

    def xvp(self, code: int) -> None:
        """Ask for XVP ``code`` (XvpCode.SHUTDOWN, REBOOT or RESET); the server answers
        XvpCode.FAIL if it cannot."""
        self._require_normal("XVP")
        self._out += msg.pack_client_xvp(code)

    # -- handshake ------------------------------------------------------------
    def _step(self, data: memoryview) -> int | None:
        """Consume one unit of input at ``data[0]``; the bytes used or None."""
        state = self.state
        if state is ClientState.NORMAL:
            if self._in_update:
                return self._step_update(data)
            parsed = msg.parse_server_message(data, state.value)
            if parsed is None:
                return None
            event, used = parsed
            if isinstance(event, msg.FramebufferUpdateStart):
                self._in_update = True
                self._rects_left = event.nrects
                self._rect_infos = []
                if event.nrects == 0:
                    self._finish_update()
                self.stats.wire_bytes += used
            else:
                if isinstance(event, ev.XvpMessage) and event.code == XvpCode.INIT:
                    self.xvp_supported = True
                self._events.append(event)
            return used
        if state is ClientState.VERSION:
            if len(data) < hs.VERSION_LEN:
                return None
            major, minor = hs.parse_version(data, "server")
            self.version = hs.effective_version(major, minor, "server")
            self._out += hs.pack_version(self.version)
            self.state = ClientState.SECURITY
            return hs.VERSION_LEN
        if state is ClientState.SECURITY:
            return self._step_security(data)
        if state is ClientState.AUTH:
            if len(data) < CHALLENGE_LEN:
                return None
            assert self.password is not None
            self._out += vnc_auth_response(self.password, bytes(data[:CHALLENGE_LEN]))
            self.state = ClientState.SECURITY_RESULT
            return CHALLENGE_LEN
        if state is ClientState.SECURITY_RESULT:
            return self._step_security_result(data)
        return self._step_server_init(data)

    def _refused(self, data: memoryview, pos: int) -> int | None:
        """The server refused the connection; read its reason and raise."""
        parsed = hs.parse_reason(data, pos)
        if parsed is None:
            return None
        raise ProtocolError(f"the server refused the connection: {parsed[0]!r}")

    def _step_security(self, data: memoryview) -> int | None:
        if self.version == (3, 3):
            parsed33 = hs.parse_security_type_33(data)
            if parsed33 is None:
                return None
            chosen, used = parsed33
            if chosen == SecurityType.INVALID:
                return self._refused(data, used)
            if chosen not in (SecurityType.NONE, SecurityType.VNC_AUTH):
                raise UnsupportedError(f"server chose security type {chosen} (state SECURITY)")
            if chosen == SecurityType.VNC_AUTH and self.password is None:
                raise AuthError("the server requires a VNC password")
            self._security_chosen(chosen)
            return used
        parsed = hs.parse_security_types(data)
        if parsed is None:
            return None
        types, used = parsed
        if not types:
            return self._refused(data, used)
        offered = list(types)
        if self.password is not None and SecurityType.VNC_AUTH in offered:
            chosen = SecurityType.VNC_AUTH
        elif SecurityType.NONE in offered:
            chosen = SecurityType.NONE
        elif SecurityType.VNC_AUTH in offered:
            raise AuthError("the server requires a VNC password")
        else:
            raise UnsupportedError(f"server offers only security types {offered} (state SECURITY)")
        self._out.append(chosen)
        self._security_chosen(chosen)
        return used

    def _security_chosen(self, chosen: int) -> None:
        self.security_type = int(chosen)
        if chosen == SecurityType.VNC_AUTH:
            self.state = ClientState.AUTH
        elif hs.expects_security_result(self.version, chosen):
            self.state = ClientState.SECURITY_RESULT
        else:
            self._send_client_init()

    def _send_client_init(self) -> None:
        self._out.append(1 if self.shared else 0)
        self.state = ClientState.SERVER_INIT

    def _step_security_result(self, data: memoryview) -> int | None:
        result = hs.parse_security_result(data)
        if result is None:
            return None
        ok, used = result
        if ok:
            self._send_client_init()
            return used
        reason = "authentication failed"
        if hs.failure_has_reason(self.version):
            parsed = hs.parse_reason(data, used)
            if parsed is None:
                return None
            reason = parsed[0]
        raise AuthError(f"VNC authentication failed: {reason}")

    def _step_server_init(self, data: memoryview) -> int | None:
        parsed = hs.parse_server_init(data)
        if parsed is None:
            return None
        init, used = parsed
        self._check_size(init.width, init.height, "ServerInit")
        self.server_pixel_format = init.pixel_format
        if self.pixel_format is None:
            try:
                init.pixel_format.validate()
            except UnsupportedError as exc:
                raise UnsupportedError(f"server pixel format in state SERVER_INIT: {exc}") from None
            if not init.pixel_format.true_colour:
                raise UnsupportedError("the server uses a colour map; pass a pixel_format")
            self.pixel_format = init.pixel_format
        else:
            self._out += msg.pack_set_pixel_format(self.pixel_format)
        self._out += msg.pack_set_encodings(self.encodings)
        self.name = init.name
        self._resize(init.width, init.height)
        self.state = ClientState.NORMAL
        self._events.append(ev.ServerInitReceived(
            init.width, init.height, init.pixel_format, init.name, self.version,
            self.security_type,
        ))
        return used

    # -- frame buffer updates ---------------------------------------------------
    def _check_size(self, width: int, height: int, what: str) -> None:
        if width > MAX_DIMENSION or height > MAX_DIMENSION or width * height > self.max_pixels:
            raise LimitExceededError(
                f"{what}: frame buffer {width}x{height} is larger than allowed "
                f"({MAX_DIMENSION} per side, {self.max_pixels} pixels) in state {self.state.value}"
            )

    def _resize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.framebuffer = np.zeros((height, width, 3), dtype=np.uint8)

    def _finish_update(self) -> None:
        self._in_update = False
        self._rect = None
        self.stats.updates += 1
        self._events.append(ev.FramebufferUpdated(tuple(self._rect_infos)))
        self._rect_infos = []

    def _rect_done(self, rect: msg.RectHeader, payload: int, jpeg: bool = False) -> None:
        wire = msg.RECT_HEADER_LEN + payload
        self._rect_infos.append(ev.RectInfo(rect.x, rect.y, rect.width, rect.height,
                                            rect.encoding, wire, jpeg))
        st = self.stats
        st.rects[rect.encoding] = st.rects.get(rect.encoding, 0) + 1
        if jpeg:
            st.jpeg_rects += 1
        st.wire_bytes += payload
        self._rect = None
        self._rects_left -= 1
        if rect.encoding == Encoding.LAST_RECT or self._rects_left <= 0:
            self._finish_update()

    def _step_update(self, data: memoryview) -> int | None:
        rect = self._rect
        if rect is None:
            rect = msg.parse_rect_header(data)
            if rect is None:
                return None
            self._rect = rect
            self.stats.wire_bytes += msg.RECT_HEADER_LEN
            return msg.RECT_HEADER_LEN
        decoder = self._decoders.get(rect.encoding)
        if decoder is not None:
            used = self._decode_pixels(decoder, rect, data)
        else:
            used = self._pseudo(rect, data)
        if used is not None:
            self._rect_done(rect, used,
                            isinstance(decoder, TightDecoder) and decoder.last_jpeg)
        return used

    def _decode_pixels(self, decoder: RectDecoder, r: msg.RectHeader,
                       data: memoryview) -> int | None:
        fb, pf = self.framebuffer, self.pixel_format
        assert fb is not None and pf is not None
        if r.x + r.width > self.width or r.y + r.height > self.height:
            raise ProtocolError(
                f"rectangle {r.width}x{r.height}+{r.x}+{r.y} (encoding {r.encoding}) outside "
                f"the {self.width}x{self.height} frame buffer in state NORMAL"
            )
        used = decoder.decode(data, r.x, r.y, r.width, r.height, pf, fb)
        if used is not None:
            self.stats.pixel_bytes += r.width * r.height * pf.bytes_per_pixel
        return used

    def _pseudo(self, r: msg.RectHeader, data: memoryview) -> int | None:
        enc = r.encoding
        if enc == Encoding.LAST_RECT:
            return 0
        if enc == Encoding.DESKTOP_SIZE:
            self._desktop_resized(r.width, r.height)
            return 0
        if enc == Encoding.EXTENDED_DESKTOP_SIZE:
            if not data:
                return None
            end = msg.SCREENS_HEAD_LEN + msg.SCREEN_LEN * data[0]
            if len(data) < end:
                return None
            # status OK in y: a change (others answer a SetDesktopSize we never send)
            if r.y == DesktopSizeStatus.OK:
                self._desktop_resized(r.width, r.height)
            return end
        if enc == Encoding.CURSOR:
            return self._cursor(r, data)
        raise UnsupportedError(f"server sent a rectangle in unknown encoding {enc} (state NORMAL)")

    def _desktop_resized(self, width: int, height: int) -> None:
        self._check_size(width, height, "DesktopSize")
        self._resize(width, height)
        self._events.append(ev.DesktopResized(width, height))

    def _cursor(self, r: msg.RectHeader, data: memoryview) -> int | None:
        w, h = r.width, r.height
        if w > MAX_CURSOR_DIMENSION or h > MAX_CURSOR_DIMENSION:
            raise LimitExceededError(f"cursor of {w}x{h} pixels (limit {MAX_CURSOR_DIMENSION})")
        pf = self.pixel_format
        assert pf is not None
        npix = w * h * pf.bytes_per_pixel
        row = (w + 7) // 8
        end = npix + row * h
        if len(data) < end:
            return None
        rgba = np.zeros((h, w, 4), dtype=np.uint8)
        if w and h:
            rgba[..., :3] = pf.bytes_to_rgb(data[:npix], w, h)
            bits = np.frombuffer(data, dtype=np.uint8, count=row * h, offset=npix)
            mask = np.unpackbits(bits.reshape(h, row), axis=1, count=w)
            rgba[..., 3] = mask * 255
        self._events.append(ev.CursorShape(r.x, r.y, w, h, rgba))
        return end
