"""The RFB handshake as pure functions on bytes: one rule for every reader.

ProtocolVersion, the security types, a failure reason, SecurityResult and ServerInit
are read by the client (:mod:`.client`), the server (:mod:`.server`) and the relay
framer (:mod:`.framer`).  Which versions count, which security step follows which
and how long a reason or desktop name may be is decided here, once.

``pack_*`` build wire bytes.  ``parse_*`` read one message from the start of a buffer
and return ``(value, bytes_used)``, or None while the buffer does not hold all of it
(``parse_version`` needs exactly :data:`VERSION_LEN` bytes).  ``*_length`` functions
read only a fixed-size head and return the length of the whole message, so that a
reader which passes payloads through (the framer) can apply the same bounds without
buffering them.  Malformed or oversized input raises a :class:`ProtocolError`
subclass, never ``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import LimitExceededError, UnsupportedError
from .constants import MAX_DESKTOP_NAME, MAX_REASON, SecurityResult, SecurityType
from .pixelformat import PixelFormat

Buffer = bytes | bytearray | memoryview

VERSION_LEN = 12
SECURITY_TYPE_33_LEN = 4
SECURITY_RESULT_LEN = 4
REASON_HEAD_LEN = 4
#: width, height, pixel format and name length; the name follows
SERVER_INIT_HEAD_LEN = 24

_VERSION_RE = re.compile(rb"RFB (\d{3})\.(\d{3})\n")
_U32 = struct.Struct(">I")
_SERVER_INIT = struct.Struct(">HH16sI")


# -- ProtocolVersion ----------------------------------------------------------


def pack_version(version: tuple[int, int]) -> bytes:
    return b"RFB %03d.%03d\n" % version


def parse_version(data: Buffer, who: str) -> tuple[int, int]:
    """The (major, minor) numbers of a 12-byte ProtocolVersion, as sent.

    Anything but ``RFB xxx.yyy\\n`` is a peer that does not speak RFB at all (an HTTP
    or SSH server, say), hence UnsupportedError.
    """
    head = bytes(data[:VERSION_LEN])
    m = _VERSION_RE.fullmatch(head)
    if m is None:
        raise UnsupportedError(f"{who} sent a malformed ProtocolVersion {head!r}: not RFB")
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


# -- security -----------------------------------------------------------------


def pack_security_types(types: Sequence[int]) -> bytes:
    """3.7+: the list of security types the server offers (empty: refused, a reason follows)."""
    return bytes([len(types), *types])


def parse_security_types(data: Buffer) -> tuple[tuple[int, ...], int] | None:
    """3.7+: the offered security types; ``()`` means the server refused and a reason
    (:func:`parse_reason`) follows."""
    if not data:
        return None
    count = data[0]
    if len(data) < 1 + count:
        return None
    return tuple(data[1:1 + count]), 1 + count


def pack_security_type_33(security_type: int) -> bytes:
    """3.3: the server decides the security type (a u32)."""
    return _U32.pack(security_type)


def parse_security_type_33(data: Buffer) -> tuple[int, int] | None:
    """3.3: the security type the server chose; ``INVALID`` means refused, a reason follows."""
    if len(data) < SECURITY_TYPE_33_LEN:
        return None
    return int(_U32.unpack_from(data, 0)[0]), SECURITY_TYPE_33_LEN


def pack_reason(reason: str) -> bytes:
    raw = reason.encode("utf-8", "replace")[:MAX_REASON]
    return _U32.pack(len(raw)) + raw


def reason_length(data: Buffer, pos: int = 0) -> int | None:
    """Bytes of the u32-length-prefixed reason string at ``data[pos]`` (bounded by MAX_REASON),
    head included; None before the 4-byte head is there."""
    if len(data) < pos + REASON_HEAD_LEN:
        return None
    n = int(_U32.unpack_from(data, pos)[0])
    if n > MAX_REASON:
        raise LimitExceededError(f"reason string of {n} bytes (limit {MAX_REASON})")
    return REASON_HEAD_LEN + n


def parse_reason(data: Buffer, pos: int = 0) -> tuple[str, int] | None:
    """A u32-length-prefixed reason string (bounded by MAX_REASON)."""
    total = reason_length(data, pos)
    if total is None or len(data) < pos + total:
        return None
    text = bytes(data[pos + REASON_HEAD_LEN:pos + total]).decode("utf-8", "replace")
    return text, total


def expects_security_result(version: tuple[int, int], security_type: int) -> bool:
    """Whether a SecurityResult follows the security step: always after VNC
    authentication, and after None only from 3.8 on."""
    return security_type == SecurityType.VNC_AUTH or version >= (3, 8)


def failure_has_reason(version: tuple[int, int]) -> bool:
    """Whether a failed SecurityResult carries a reason string (3.8 only)."""
    return version >= (3, 8)


def pack_security_result(ok: bool, reason: str, version: tuple[int, int]) -> bytes:
    """SecurityResult; only 3.8 carries a reason string on failure."""
    if ok:
        return _U32.pack(SecurityResult.OK)
    return _U32.pack(SecurityResult.FAILED) + (
        pack_reason(reason) if failure_has_reason(version) else b"")


def parse_security_result(data: Buffer) -> tuple[bool, int] | None:
    """Whether the SecurityResult says OK (any non-zero word is a failure; in 3.8 a
    reason follows it)."""
    if len(data) < SECURITY_RESULT_LEN:
        return None
    return _U32.unpack_from(data, 0)[0] == SecurityResult.OK, SECURITY_RESULT_LEN


# -- initialisation -----------------------------------------------------------


@dataclass(frozen=True)
class ServerInitFields:
    width: int
    height: int
    pixel_format: PixelFormat  # not validated: the client may replace it
    name: str


def pack_server_init(width: int, height: int, pf: PixelFormat, name: str) -> bytes:
    raw = name.encode("utf-8", "replace")[:MAX_DESKTOP_NAME]
    return _SERVER_INIT.pack(width, height, pf.pack(), len(raw)) + raw


def server_init_length(data: Buffer) -> int | None:
    """Bytes of the whole ServerInit (the desktop name bounded by MAX_DESKTOP_NAME); None
    before its :data:`SERVER_INIT_HEAD_LEN`-byte head is there."""
    if len(data) < SERVER_INIT_HEAD_LEN:
        return None
    name_len = int(_U32.unpack_from(data, SERVER_INIT_HEAD_LEN - 4)[0])
    if name_len > MAX_DESKTOP_NAME:
        raise LimitExceededError(f"desktop name of {name_len} bytes (limit {MAX_DESKTOP_NAME})")
    return SERVER_INIT_HEAD_LEN + name_len


def parse_server_init(data: Buffer) -> tuple[ServerInitFields, int] | None:
    end = server_init_length(data)
    if end is None or len(data) < end:
        return None
    width, height, pf, _name_len = _SERVER_INIT.unpack_from(data, 0)
    name = bytes(data[SERVER_INIT_HEAD_LEN:end]).decode("utf-8", "replace")
    return ServerInitFields(width, height, PixelFormat.unpack(pf, validate=False), name), end
