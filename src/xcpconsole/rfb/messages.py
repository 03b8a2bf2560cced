"""Codecs of every RFB message after the handshake, both directions (rfbproto.rst).

``pack_*`` functions build wire bytes.  ``parse_*`` functions read one message
from the start of a buffer and return ``(value, bytes_used)``, or ``None``
when the buffer does not yet hold the whole message; they never read past a
length they have not bounded first and raise a :class:`ProtocolError`
subclass (never ``IndexError`` or ``struct.error``) on malformed input.  The
``*_length`` functions read only a message's fixed head and return its whole
length, with the same bounds, for the relay framer that passes payloads through.
The handshake's messages are in :mod:`.handshake`.  The state machines in
:mod:`.server` and :mod:`.client` and the framer in :mod:`.framer` are built from
these.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import LimitExceededError, ProtocolError, UnsupportedError
from . import events as ev
from .constants import (
    MAX_CUT_TEXT,
    MAX_ENCODINGS,
    XVP_VERSION,
    ClientMsg,
    DesktopSizeReason,
    DesktopSizeStatus,
    Encoding,
    ServerMsg,
)
from .pixelformat import PixelFormat

Buffer = bytes | bytearray | memoryview

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_RECT = struct.Struct(">HHHHi")
_FBU_REQUEST = struct.Struct(">BBHHHH")
_KEY = struct.Struct(">BBxxI")
_POINTER = struct.Struct(">BBHH")
_XVP = struct.Struct(">BxBB")
_CUT_TEXT_HEAD = struct.Struct(">BxxxI")
_SET_ENCODINGS_HEAD = struct.Struct(">BxH")
_SET_DESKTOP_SIZE_HEAD = struct.Struct(">BxHHBx")
_COLOUR_MAP_HEAD = struct.Struct(">BxHH")
_SCREEN = struct.Struct(">IHHHHI")

SET_PIXEL_FORMAT_LEN = 4 + PixelFormat.SIZE
#: Sizes of the client messages whose length never varies (type byte included).
FIXED_CLIENT_MESSAGE_LEN: dict[int, int] = {
    ClientMsg.SET_PIXEL_FORMAT: SET_PIXEL_FORMAT_LEN,
    ClientMsg.FRAMEBUFFER_UPDATE_REQUEST: _FBU_REQUEST.size,
    ClientMsg.KEY_EVENT: _KEY.size,
    ClientMsg.POINTER_EVENT: _POINTER.size,
    ClientMsg.XVP: _XVP.size,
}
SET_ENCODINGS_HEAD_LEN = _SET_ENCODINGS_HEAD.size
CUT_TEXT_HEAD_LEN = _CUT_TEXT_HEAD.size
SET_DESKTOP_SIZE_HEAD_LEN = _SET_DESKTOP_SIZE_HEAD.size
XVP_LEN = _XVP.size
#: One screen of SetDesktopSize and ExtendedDesktopSize.
SCREEN_LEN = _SCREEN.size
#: Head of ExtendedDesktopSize's payload: number of screens and padding.
SCREENS_HEAD_LEN = 4
FRAMEBUFFER_UPDATE_HEAD_LEN = 4
#: A FramebufferUpdate with this rectangle count ends with a LastRect rectangle.
UNTIL_LAST_RECT = 0xFFFF


# -- client to server ---------------------------------------------------------


def pack_set_pixel_format(pf: PixelFormat) -> bytes:
    return bytes([ClientMsg.SET_PIXEL_FORMAT, 0, 0, 0]) + pf.pack()


def pack_set_encodings(encodings: Sequence[int]) -> bytes:
    return _SET_ENCODINGS_HEAD.pack(ClientMsg.SET_ENCODINGS, len(encodings)) + struct.pack(
        f">{len(encodings)}i", *encodings
    )


def pack_framebuffer_update_request(incremental: bool, x: int, y: int, w: int, h: int) -> bytes:
    return _FBU_REQUEST.pack(ClientMsg.FRAMEBUFFER_UPDATE_REQUEST, int(incremental), x, y, w, h)


def pack_key_event(down: bool, keysym: int) -> bytes:
    return _KEY.pack(ClientMsg.KEY_EVENT, int(down), keysym & 0xFFFFFFFF)


def pack_pointer_event(button_mask: int, x: int, y: int) -> bytes:
    return _POINTER.pack(ClientMsg.POINTER_EVENT, button_mask & 0xFF, x, y)


def _latin1(text: str) -> bytes:
    """Cut text is ISO 8859-1 on the wire; other characters become '?'."""
    return text.encode("latin-1", "replace")[:MAX_CUT_TEXT]


def pack_client_cut_text(text: str) -> bytes:
    raw = _latin1(text)
    return _CUT_TEXT_HEAD.pack(ClientMsg.CLIENT_CUT_TEXT, len(raw)) + raw


def pack_client_xvp(code: int, version: int = XVP_VERSION) -> bytes:
    return _XVP.pack(ClientMsg.XVP, version, code)


def set_encodings_length(data: Buffer, state: object) -> int | None:
    """Bytes of the SetEncodings at ``data[0]`` (at most MAX_ENCODINGS), None before its head."""
    if len(data) < SET_ENCODINGS_HEAD_LEN:
        return None
    count = int(_U16.unpack_from(data, 2)[0])
    if count > MAX_ENCODINGS:
        raise LimitExceededError(
            f"SetEncodings with {count} encodings in state {state} (limit {MAX_ENCODINGS})"
        )
    return SET_ENCODINGS_HEAD_LEN + 4 * count


def cut_text_length(data: Buffer, what: str, state: object) -> int | None:
    """Bytes of the Client/ServerCutText at ``data[0]`` (text at most MAX_CUT_TEXT),
    None before its head."""
    if len(data) < CUT_TEXT_HEAD_LEN:
        return None
    length = int(_U32.unpack_from(data, 4)[0])
    if length > MAX_CUT_TEXT:
        # includes the negative lengths of the extended clipboard we never announced
        raise LimitExceededError(
            f"{what} of {length} bytes in state {state} (limit {MAX_CUT_TEXT})")
    return CUT_TEXT_HEAD_LEN + length


def _parse_cut_text(data: Buffer, what: str, state: object) -> tuple[str, int] | None:
    """Text and size of a Client/ServerCutText at ``data[0]``, None if incomplete."""
    end = cut_text_length(data, what, state)
    if end is None or len(data) < end:
        return None
    return bytes(data[CUT_TEXT_HEAD_LEN:end]).decode("latin-1"), end


def _parse_xvp(data: Buffer) -> tuple[int, int] | None:
    """(version, code) of an XVP message at ``data[0]``, None if incomplete."""
    if len(data) < _XVP.size:
        return None
    _, version, code = _XVP.unpack_from(data, 0)
    return version, code


def set_desktop_size_length(data: Buffer) -> int | None:
    """Bytes of the SetDesktopSize at ``data[0]``, None before its head."""
    if len(data) < SET_DESKTOP_SIZE_HEAD_LEN:
        return None
    return SET_DESKTOP_SIZE_HEAD_LEN + SCREEN_LEN * data[6]


def parse_client_message(
    data: Buffer, state: str
) -> tuple[ev.EventFromClient | SetDesktopSizeRequest, int] | None:
    """One client-to-server message at ``data[0]``: (event, bytes used) or None."""
    if not data:
        return None
    kind = data[0]
    n = len(data)
    if kind == ClientMsg.SET_PIXEL_FORMAT:
        if n < SET_PIXEL_FORMAT_LEN:
            return None
        pf = PixelFormat.unpack(data[4:SET_PIXEL_FORMAT_LEN], validate=False)
        try:
            pf.validate()
        except UnsupportedError as exc:
            raise UnsupportedError(f"SetPixelFormat in state {state}: {exc}") from None
        return ev.SetPixelFormat(pf), SET_PIXEL_FORMAT_LEN
    if kind == ClientMsg.SET_ENCODINGS:
        end = set_encodings_length(data, state)
        if end is None or n < end:
            return None
        count = (end - SET_ENCODINGS_HEAD_LEN) // 4
        return ev.SetEncodings(struct.unpack_from(f">{count}i", data, 4)), end
    if kind == ClientMsg.FRAMEBUFFER_UPDATE_REQUEST:
        if n < _FBU_REQUEST.size:
            return None
        _, inc, x, y, w, h = _FBU_REQUEST.unpack_from(data, 0)
        return ev.FramebufferUpdateRequest(bool(inc), x, y, w, h), _FBU_REQUEST.size
    if kind == ClientMsg.KEY_EVENT:
        if n < _KEY.size:
            return None
        _, down, keysym = _KEY.unpack_from(data, 0)
        return ev.KeyEvent(bool(down), keysym), _KEY.size
    if kind == ClientMsg.POINTER_EVENT:
        if n < _POINTER.size:
            return None
        _, mask, x, y = _POINTER.unpack_from(data, 0)
        return ev.PointerEvent(mask, x, y), _POINTER.size
    if kind == ClientMsg.CLIENT_CUT_TEXT:
        text = _parse_cut_text(data, "ClientCutText", state)
        return None if text is None else (ev.ClientCutText(text[0]), text[1])
    if kind == ClientMsg.XVP:
        xvp = _parse_xvp(data)
        return None if xvp is None else (ev.XvpRequest(*xvp), _XVP.size)
    if kind == ClientMsg.SET_DESKTOP_SIZE:
        end = set_desktop_size_length(data)
        if end is None or n < end:
            return None
        _, w, h, screens = _SET_DESKTOP_SIZE_HEAD.unpack_from(data, 0)
        return SetDesktopSizeRequest(w, h, screens), end
    raise UnsupportedError(f"unknown client message type {kind} in state {state}")


@dataclass(frozen=True)
class SetDesktopSizeRequest:
    """SetDesktopSize, sent by clients once we announce ExtendedDesktopSize; the
    server refuses it itself (the console size is the VM's, not the viewer's)."""

    width: int
    height: int
    screens: int


# -- server to client ---------------------------------------------------------


def pack_framebuffer_update_header(nrects: int) -> bytes:
    return bytes([ServerMsg.FRAMEBUFFER_UPDATE, 0]) + _U16.pack(nrects)


def pack_rect_header(x: int, y: int, w: int, h: int, encoding: int) -> bytes:
    return _RECT.pack(x, y, w, h, encoding)


def pack_extended_desktop_size(
    reason: DesktopSizeReason, status: DesktopSizeStatus, width: int, height: int
) -> bytes:
    """Rect header and payload of ExtendedDesktopSize with one screen covering all."""
    return (
        pack_rect_header(reason, status, width, height, Encoding.EXTENDED_DESKTOP_SIZE)
        + bytes([1, 0, 0, 0]) + _SCREEN.pack(0, 0, 0, width, height, 0)
    )


def pack_set_colour_map_entries(first: int, colours: Sequence[tuple[int, int, int]]) -> bytes:
    """``colours`` are 16-bit (r, g, b) values."""
    return _COLOUR_MAP_HEAD.pack(ServerMsg.SET_COLOUR_MAP_ENTRIES, first, len(colours)) + b"".join(
        struct.pack(">HHH", *c) for c in colours
    )


def pack_bell() -> bytes:
    return bytes([ServerMsg.BELL])


def pack_server_cut_text(text: str) -> bytes:
    raw = _latin1(text)
    return _CUT_TEXT_HEAD.pack(ServerMsg.SERVER_CUT_TEXT, len(raw)) + raw


def pack_server_xvp(code: int, version: int = XVP_VERSION) -> bytes:
    return _XVP.pack(ServerMsg.XVP, version, code)


@dataclass(frozen=True)
class FramebufferUpdateStart:
    """Header of a FramebufferUpdate: the rectangles follow (UNTIL_LAST_RECT with LastRect)."""

    nrects: int


@dataclass(frozen=True)
class RectHeader:
    x: int
    y: int
    width: int
    height: int
    encoding: int


#: x, y, width, height, encoding; for readers that want the bare tuple (the framer)
RECT_HEADER = _RECT
RECT_HEADER_LEN = _RECT.size
COLOUR_MAP_HEAD_LEN = _COLOUR_MAP_HEAD.size
COLOUR_LEN = 6


def parse_rect_header(data: Buffer, pos: int = 0) -> RectHeader | None:
    if len(data) < pos + _RECT.size:
        return None
    return RectHeader(*_RECT.unpack_from(data, pos))


def colour_map_length(data: Buffer, state: object) -> int | None:
    """Bytes of the SetColourMapEntries at ``data[0]``, None before its head."""
    if len(data) < _COLOUR_MAP_HEAD.size:
        return None
    _, first, count = _COLOUR_MAP_HEAD.unpack_from(data, 0)
    if first + count > 65536:
        raise ProtocolError(f"SetColourMapEntries beyond entry 65535 in state {state}")
    return _COLOUR_MAP_HEAD.size + COLOUR_LEN * int(count)


def parse_server_message(
    data: Buffer, state: str
) -> tuple[ev.EventFromServer | FramebufferUpdateStart, int] | None:
    """One server-to-client message (only the header of a FramebufferUpdate)."""
    if not data:
        return None
    kind = data[0]
    n = len(data)
    if kind == ServerMsg.FRAMEBUFFER_UPDATE:
        if n < FRAMEBUFFER_UPDATE_HEAD_LEN:
            return None
        return FramebufferUpdateStart(_U16.unpack_from(data, 2)[0]), FRAMEBUFFER_UPDATE_HEAD_LEN
    if kind == ServerMsg.SET_COLOUR_MAP_ENTRIES:
        end = colour_map_length(data, state)
        if end is None or n < end:
            return None
        _, first, count = _COLOUR_MAP_HEAD.unpack_from(data, 0)
        vals = struct.unpack_from(f">{3 * count}H", data, _COLOUR_MAP_HEAD.size)
        colours = tuple(
            (vals[i], vals[i + 1], vals[i + 2]) for i in range(0, 3 * count, 3)
        )
        return ev.ColourMapEntries(first, colours), end
    if kind == ServerMsg.BELL:
        return ev.Bell(), 1
    if kind == ServerMsg.SERVER_CUT_TEXT:
        text = _parse_cut_text(data, "ServerCutText", state)
        return None if text is None else (ev.ServerCutText(text[0]), text[1])
    if kind == ServerMsg.XVP:
        xvp = _parse_xvp(data)
        return None if xvp is None else (ev.XvpMessage(*xvp), _XVP.size)
    raise UnsupportedError(f"unknown server message type {kind} in state {state}")
