"""Codecs of every RFB message, both directions (rfbproto.rst).

``pack_*`` functions build wire bytes.  ``parse_*`` functions read one message
from the start of a buffer and return ``(value, bytes_used)``, or ``None``
when the buffer does not yet hold the whole message; they never read past a
length they have not bounded first and raise a :class:`ProtocolError`
subclass (never ``IndexError`` or ``struct.error``) on malformed input.  The
state machines in :mod:`.server` and :mod:`.client` are built from these.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import LimitExceededError, ProtocolError, UnsupportedError
from . import events as ev
from .constants import (
    MAX_CUT_TEXT,
    MAX_DESKTOP_NAME,
    MAX_ENCODINGS,
    MAX_REASON,
    ClientMsg,
    ServerMsg,
)
from .pixelformat import PixelFormat

Buffer = bytes | bytearray | memoryview

VERSION_LEN = 12
_VERSION_RE = re.compile(rb"RFB (\d{3})\.(\d{3})\n")

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_RECT = struct.Struct(">HHHHi")
_FBU_REQUEST = struct.Struct(">BBHHHH")
_KEY = struct.Struct(">BBxxI")
_POINTER = struct.Struct(">BBHH")
_XVP = struct.Struct(">BxBB")
_SERVER_INIT = struct.Struct(">HH16sI")
_COLOUR_MAP_HEAD = struct.Struct(">BxHH")
_SCREEN = struct.Struct(">IHHHHI")

#: ClientMsg numbers we also parse although they have no event (answered by the server).
SET_DESKTOP_SIZE = 251


# -- ProtocolVersion ----------------------------------------------------------


def pack_version(version: tuple[int, int]) -> bytes:
    return b"RFB %03d.%03d\n" % version


def parse_version(data: Buffer, who: str) -> tuple[int, int]:
    """The (major, minor) numbers of a 12-byte ProtocolVersion, as sent."""
    m = _VERSION_RE.fullmatch(bytes(data[:VERSION_LEN]))
    if m is None:
        raise ProtocolError(f"{who} sent a malformed ProtocolVersion {bytes(data[:VERSION_LEN])!r}")
    return int(m.group(1)), int(m.group(2))


def effective_version(major: int, minor: int, who: str) -> tuple[int, int]:
    """The handshake a peer announcing ``major.minor`` implements.

    Only 3.3, 3.7 and 3.8 are published; rfbproto.rst says every other 3.x
    (Apple's 3.889 included) is to be treated as 3.3, since such peers do not
    implement the later handshakes.  A future major version must accept 3.8.
    """
    if major < 3:
        raise UnsupportedError(f"{who} speaks RFB {major}.{minor}; 3.3 or later is needed")
    if major > 3:
        return (3, 8)
    if minor in (7, 8):
        return (3, minor)
    if minor < 3:
        raise UnsupportedError(f"{who} speaks RFB {major}.{minor}; 3.3 or later is needed")
    return (3, 3)


# -- security handshake -------------------------------------------------------


def pack_security_types(types: Sequence[int]) -> bytes:
    """3.7+: the list of security types the server offers."""
    return bytes([len(types), *types])


def pack_security_type_33(security_type: int) -> bytes:
    """3.3: the server decides the security type (a u32)."""
    return _U32.pack(security_type)


def pack_reason(reason: str) -> bytes:
    raw = reason.encode("utf-8", "replace")[:MAX_REASON]
    return _U32.pack(len(raw)) + raw


def pack_security_result(ok: bool, reason: str, version: tuple[int, int]) -> bytes:
    """SecurityResult; only 3.8 carries a reason string on failure."""
    if ok:
        return _U32.pack(0)
    return _U32.pack(1) + (pack_reason(reason) if version >= (3, 8) else b"")


def parse_u8(data: Buffer, pos: int = 0) -> int | None:
    return data[pos] if len(data) > pos else None


def parse_u32(data: Buffer, pos: int = 0) -> int | None:
    if len(data) < pos + 4:
        return None
    return int(_U32.unpack_from(data, pos)[0])


def parse_reason(data: Buffer, pos: int = 0) -> tuple[str, int] | None:
    """A u32-length-prefixed reason string (bounded by MAX_REASON)."""
    n = parse_u32(data, pos)
    if n is None:
        return None
    if n > MAX_REASON:
        raise LimitExceededError(f"reason string of {n} bytes (limit {MAX_REASON})")
    if len(data) < pos + 4 + n:
        return None
    return bytes(data[pos + 4:pos + 4 + n]).decode("utf-8", "replace"), 4 + n


# -- initialisation -----------------------------------------------------------


def pack_server_init(width: int, height: int, pf: PixelFormat, name: str) -> bytes:
    raw = name.encode("utf-8", "replace")[:MAX_DESKTOP_NAME]
    return _SERVER_INIT.pack(width, height, pf.pack(), len(raw)) + raw


@dataclass(frozen=True)
class ServerInitFields:
    width: int
    height: int
    pixel_format: PixelFormat  # not validated: the client may replace it
    name: str


def raw_pixel_format(data: Buffer) -> PixelFormat:
    """A PixelFormat read without validation (``validate()`` before converting with it)."""
    f = struct.unpack_from(">BBBBHHHBBB", data, 0)
    return PixelFormat(f[0], f[1], bool(f[2]), bool(f[3]), f[4], f[5], f[6], f[7], f[8], f[9])


def parse_server_init(data: Buffer) -> tuple[ServerInitFields, int] | None:
    if len(data) < _SERVER_INIT.size:
        return None
    width, height, _pf, name_len = _SERVER_INIT.unpack_from(data, 0)
    if name_len > MAX_DESKTOP_NAME:
        raise LimitExceededError(f"desktop name of {name_len} bytes (limit {MAX_DESKTOP_NAME})")
    end = _SERVER_INIT.size + name_len
    if len(data) < end:
        return None
    name = bytes(data[_SERVER_INIT.size:end]).decode("utf-8", "replace")
    return ServerInitFields(width, height, raw_pixel_format(data[4:20]), name), end


# -- client to server ---------------------------------------------------------


def pack_set_pixel_format(pf: PixelFormat) -> bytes:
    return bytes([ClientMsg.SET_PIXEL_FORMAT, 0, 0, 0]) + pf.pack()


def pack_set_encodings(encodings: Sequence[int]) -> bytes:
    return bytes([ClientMsg.SET_ENCODINGS, 0]) + _U16.pack(len(encodings)) + struct.pack(
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
    return bytes([ClientMsg.CLIENT_CUT_TEXT, 0, 0, 0]) + _U32.pack(len(raw)) + raw


def pack_client_xvp(code: int, version: int = 1) -> bytes:
    return _XVP.pack(ClientMsg.XVP, version, code)


def _parse_cut_text(data: Buffer, what: str, state: object) -> tuple[str, int] | None:
    """Text and size of a Client/ServerCutText at ``data[0]``, None if incomplete."""
    if len(data) < 8:
        return None
    length = _U32.unpack_from(data, 4)[0]
    if length > MAX_CUT_TEXT:
        # includes the negative lengths of the extended clipboard we never announced
        raise LimitExceededError(
            f"{what} of {length} bytes in state {state} (limit {MAX_CUT_TEXT})")
    if len(data) < 8 + length:
        return None
    return bytes(data[8:8 + length]).decode("latin-1"), 8 + length


def _parse_xvp(data: Buffer) -> tuple[int, int] | None:
    """(version, code) of an XVP message at ``data[0]``, None if incomplete."""
    if len(data) < _XVP.size:
        return None
    _, version, code = _XVP.unpack_from(data, 0)
    return version, code


def parse_client_message(
    data: Buffer, state: str
) -> tuple[ev.ServerEvent | SetDesktopSizeRequest, int] | None:
    """One client-to-server message at ``data[0]``: (event, bytes used) or None."""
    if not data:
        return None
    kind = data[0]
    n = len(data)
    if kind == ClientMsg.SET_PIXEL_FORMAT:
        if n < 20:
            return None
        pf = raw_pixel_format(data[4:20])
        try:
            pf.validate()
        except UnsupportedError as exc:
            raise UnsupportedError(f"SetPixelFormat in state {state}: {exc}") from None
        return ev.SetPixelFormat(pf), 20
    if kind == ClientMsg.SET_ENCODINGS:
        if n < 4:
            return None
        count = _U16.unpack_from(data, 2)[0]
        if count > MAX_ENCODINGS:
            raise LimitExceededError(
                f"SetEncodings with {count} encodings in state {state} (limit {MAX_ENCODINGS})"
            )
        end = 4 + 4 * count
        if n < end:
            return None
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
    if kind == SET_DESKTOP_SIZE:
        if n < 8:
            return None
        w, h, screens = struct.unpack_from(">HHB", data, 2)
        end = 8 + 16 * screens
        if n < end:
            return None
        return SetDesktopSizeRequest(w, h, screens), end
    raise UnsupportedError(f"unknown client message type {kind} in state {state}")


@dataclass(frozen=True)
class SetDesktopSizeRequest:
    """SetDesktopSize (251), sent by clients once we announce ExtendedDesktopSize;
    the server refuses it itself (the console size is the VM's, not the viewer's)."""

    width: int
    height: int
    screens: int


# -- server to client ---------------------------------------------------------


def pack_framebuffer_update_header(nrects: int) -> bytes:
    return bytes([ServerMsg.FRAMEBUFFER_UPDATE, 0]) + _U16.pack(nrects)


def pack_rect_header(x: int, y: int, w: int, h: int, encoding: int) -> bytes:
    return _RECT.pack(x, y, w, h, encoding)


def pack_extended_desktop_size(
    reason: int, status: int, width: int, height: int
) -> bytes:
    """Rect header and payload of ExtendedDesktopSize with one screen covering all."""
    return (
        pack_rect_header(reason, status, width, height, -308)
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
    return bytes([ServerMsg.SERVER_CUT_TEXT, 0, 0, 0]) + _U32.pack(len(raw)) + raw


def pack_server_xvp(code: int, version: int = 1) -> bytes:
    return _XVP.pack(ServerMsg.XVP, version, code)


@dataclass(frozen=True)
class FramebufferUpdateStart:
    """Header of a FramebufferUpdate: the rectangles follow (0xFFFF with LastRect)."""

    nrects: int


@dataclass(frozen=True)
class RectHeader:
    x: int
    y: int
    width: int
    height: int
    encoding: int


RECT_HEADER_LEN = _RECT.size


def parse_rect_header(data: Buffer, pos: int = 0) -> RectHeader | None:
    if len(data) < pos + _RECT.size:
        return None
    return RectHeader(*_RECT.unpack_from(data, pos))


def parse_server_message(
    data: Buffer, state: str
) -> tuple[ev.ClientEvent | FramebufferUpdateStart, int] | None:
    """One server-to-client message (only the header of a FramebufferUpdate)."""
    if not data:
        return None
    kind = data[0]
    n = len(data)
    if kind == ServerMsg.FRAMEBUFFER_UPDATE:
        if n < 4:
            return None
        return FramebufferUpdateStart(_U16.unpack_from(data, 2)[0]), 4
    if kind == ServerMsg.SET_COLOUR_MAP_ENTRIES:
        if n < _COLOUR_MAP_HEAD.size:
            return None
        _, first, count = _COLOUR_MAP_HEAD.unpack_from(data, 0)
        end = _COLOUR_MAP_HEAD.size + 6 * count
        if first + count > 65536:
            raise ProtocolError(f"SetColourMapEntries beyond entry 65535 in state {state}")
        if n < end:
            return None
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
