"""Numbers of the RFB protocol (rfbproto.rst), the bounds we apply, and our defaults.

Every message type, encoding and code used anywhere in xcpconsole has its name
here; other modules never write the bare number.
"""

from __future__ import annotations

from enum import IntEnum

#: The versions rfbproto.rst publishes; a ServerConnection offers one of them.
PUBLISHED_VERSIONS: tuple[tuple[int, int], ...] = ((3, 3), (3, 7), (3, 8))


class SecurityType(IntEnum):
    INVALID = 0
    NONE = 1
    VNC_AUTH = 2


class SecurityResult(IntEnum):
    OK = 0
    FAILED = 1


class ClientInitFlag(IntEnum):
    """ClientInit's one byte: may other clients stay connected (any non-zero is shared)?"""

    EXCLUSIVE = 0
    SHARED = 1


class ClientMsg(IntEnum):
    SET_PIXEL_FORMAT = 0
    SET_ENCODINGS = 2
    FRAMEBUFFER_UPDATE_REQUEST = 3
    KEY_EVENT = 4
    POINTER_EVENT = 5
    CLIENT_CUT_TEXT = 6
    XVP = 250
    SET_DESKTOP_SIZE = 251
    QEMU = 255  # followed by a QemuClientMsg subtype


class QemuClientMsg(IntEnum):
    """Subtypes of the QEMU client message (``ClientMsg.QEMU``)."""

    EXTENDED_KEY_EVENT = 0


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
    JPEG_QUALITY_0 = -32  # -32..-23: Tight JPEG quality levels 0..9
    JPEG_QUALITY_9 = -23
    COMPRESS_LEVEL_0 = -256  # -256..-247: compression levels 0..9
    COMPRESS_LEVEL_9 = -247
    DESKTOP_SIZE = -223
    LAST_RECT = -224
    CURSOR = -239
    QEMU_EXTENDED_KEY_EVENT = -258
    QEMU_LED_STATE = -261
    DESKTOP_NAME = -307
    EXTENDED_DESKTOP_SIZE = -308
    XVP = -309


#: Tight JPEG quality pseudo-encodings, quality 0 first.
JPEG_QUALITY_ENCODINGS = range(Encoding.JPEG_QUALITY_0, Encoding.JPEG_QUALITY_9 + 1)
#: Compression-level pseudo-encodings, level 0 first.
COMPRESS_LEVEL_ENCODINGS = range(Encoding.COMPRESS_LEVEL_0, Encoding.COMPRESS_LEVEL_9 + 1)


def jpeg_quality(level: int) -> int:
    """The pseudo-encoding asking for Tight JPEG quality ``level`` (0-9)."""
    if not 0 <= level <= 9:
        raise ValueError(f"JPEG quality {level} is not 0-9")
    return Encoding.JPEG_QUALITY_0 + level


def compress_level(level: int) -> int:
    """The pseudo-encoding asking for compression ``level`` (0-9)."""
    if not 0 <= level <= 9:
        raise ValueError(f"compression level {level} is not 0-9")
    return Encoding.COMPRESS_LEVEL_0 + level


def jpeg_quality_of(encoding: int) -> int | None:
    """The JPEG quality a pseudo-encoding asks for, None if it is not one of those."""
    return encoding - Encoding.JPEG_QUALITY_0 if encoding in JPEG_QUALITY_ENCODINGS else None


def compress_level_of(encoding: int) -> int | None:
    """The compression level a pseudo-encoding asks for, None if it is not one of those."""
    return encoding - Encoding.COMPRESS_LEVEL_0 if encoding in COMPRESS_LEVEL_ENCODINGS else None


class XvpCode(IntEnum):
    FAIL = 0
    INIT = 1
    SHUTDOWN = 2
    REBOOT = 3
    RESET = 4


#: The XVP extension's only version.
XVP_VERSION = 1


class DesktopSizeReason(IntEnum):
    """ExtendedDesktopSize: why the size changed (carried in the rectangle's x)."""

    SERVER = 0
    CLIENT = 1
    OTHER_CLIENT = 2


class DesktopSizeStatus(IntEnum):
    """ExtendedDesktopSize: the answer to a SetDesktopSize (carried in the rectangle's y)."""

    OK = 0
    PROHIBITED = 1
    OUT_OF_RESOURCES = 2
    INVALID_LAYOUT = 3


# -- inside rectangles (plain ints: decoders test them per tile) ----------------

#: Hextile: bits of a tile's sub-encoding byte.
HEXTILE_RAW = 1
HEXTILE_BACKGROUND_SPECIFIED = 2
HEXTILE_FOREGROUND_SPECIFIED = 4
HEXTILE_ANY_SUBRECTS = 8
HEXTILE_SUBRECTS_COLOURED = 16
#: Hextile tiles are this many pixels square (smaller at the right and bottom edges).
HEXTILE_TILE = 16

#: Tight: the high nibble of the compression-control byte (below 8: basic compression,
#: whose bit 2 says a filter id follows; the low nibble resets zlib streams).
TIGHT_FILL = 0x8
TIGHT_JPEG = 0x9
TIGHT_PNG = 0xA
TIGHT_EXPLICIT_FILTER = 0x4
TIGHT_FILTER_COPY = 0
TIGHT_FILTER_PALETTE = 1
TIGHT_FILTER_GRADIENT = 2
#: Tight data shorter than this is sent without zlib (and without a compact length).
TIGHT_MIN_TO_COMPRESS = 12


# -- what a client asks for by default ----------------------------------------

#: Pixel encodings a client prefers, best first.  The server uses the first one it
#: implements, so the order is the choice: CopyRect first because it is free when a
#: window moves; Tight (lossless unless a JPEG quality is asked for) compresses best and
#: decodes in big zlib + NumPy strokes; ZRLE is what QEMU, Xvnc and our simulated host
#: all speak and is nearly as compact; Hextile and Zlib for older servers (vncterm);
#: RRE before Raw, which every server has.
PREFERRED_ENCODINGS: tuple[Encoding, ...] = (
    Encoding.COPYRECT, Encoding.TIGHT, Encoding.ZRLE, Encoding.HEXTILE, Encoding.ZLIB,
    Encoding.RRE, Encoding.RAW,
)
#: Pseudo-encodings a client announces by default: screen size changes and Tight's
#: open-ended rectangle count.  Not Cursor: servers then leave the pointer out of the
#: frame buffer, and screenshots should show what a person sees.  Not
#: ExtendedDesktopSize (DesktopSize tells us the same for one screen) nor XVP (power
#: actions are asked for through XenAPI); callers that want them append them.
DEFAULT_PSEUDO_ENCODINGS: tuple[Encoding, ...] = (Encoding.DESKTOP_SIZE, Encoding.LAST_RECT)
#: The SetEncodings list of a client that was given none: the one default everywhere.
DEFAULT_ENCODINGS: tuple[Encoding, ...] = PREFERRED_ENCODINGS + DEFAULT_PSEUDO_ENCODINGS


# Bounds applied to everything read off the wire.
MAX_DESKTOP_NAME = 4096
MAX_CUT_TEXT = 1 << 20
MAX_ENCODINGS = 1024
MAX_REASON = 4096
MAX_FRAMEBUFFER_PIXELS = 8192 * 8192
MAX_DIMENSION = 16384
