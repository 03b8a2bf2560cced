"""Numbers of the RFB protocol (rfbproto.rst)."""

from __future__ import annotations

from enum import IntEnum

PROTOCOL_VERSIONS = {b"RFB 003.003\n": (3, 3), b"RFB 003.007\n": (3, 7), b"RFB 003.008\n": (3, 8)}


class SecurityType(IntEnum):
    INVALID = 0
    NONE = 1
    VNC_AUTH = 2


class ClientMsg(IntEnum):
    SET_PIXEL_FORMAT = 0
    SET_ENCODINGS = 2
    FRAMEBUFFER_UPDATE_REQUEST = 3
    KEY_EVENT = 4
    POINTER_EVENT = 5
    CLIENT_CUT_TEXT = 6
    XVP = 250


class ServerMsg(IntEnum):
    FRAMEBUFFER_UPDATE = 0
    SET_COLOUR_MAP_ENTRIES = 1
    BELL = 2
    SERVER_CUT_TEXT = 3
    XVP = 250


class Encoding(IntEnum):
    RAW = 0
    COPYRECT = 1
    RRE = 2
    HEXTILE = 5
    ZLIB = 6
    TIGHT = 7
    ZRLE = 16
    # pseudo-encodings
    JPEG_QUALITY_0 = -32  # -32..-23: Tight JPEG quality levels
    COMPRESS_LEVEL_0 = -256  # -256..-247: compression levels
    DESKTOP_SIZE = -223
    LAST_RECT = -224
    CURSOR = -239
    EXTENDED_DESKTOP_SIZE = -308
    XVP = -309


class XvpCode(IntEnum):
    FAIL = 0
    INIT = 1
    SHUTDOWN = 2
    REBOOT = 3
    RESET = 4


# Bounds applied to everything read off the wire.
MAX_DESKTOP_NAME = 4096
MAX_CUT_TEXT = 1 << 20
MAX_ENCODINGS = 1024
MAX_REASON = 4096
MAX_FRAMEBUFFER_PIXELS = 8192 * 8192
MAX_DIMENSION = 16384
