"""``vm_console_idle_timeout``: what counts as console activity, and the timer.

xapi (``ocaml/xapi/console.ml`` ``Console_idle_monitor``, the parser in
``rfb_client_msgtype_parser.ml``) parses the client->server bytes of a CONNECT
tunnel with a deliberately small RFB parser:

- the handshake must be exactly ``RFB 003.003\\n`` followed by a ClientInit byte
  of 0 or 1 (RFB 3.3 with no security: nothing else is sent in between);
- then the messages SetPixelFormat (0, 20 bytes), SetEncodings (2, 4 + 4n),
  FramebufferUpdateRequest (3, 10), KeyEvent (4, 8), PointerEvent (5, 6),
  ClientCutText (6, 8 + length) and any QEMU client message (255, taken as 12
  bytes whatever its sub-type);
- any other message type, or a handshake that is not that, is a parse error,
  after which the parser is off for good: the tunnel is never timed out.

Only KeyEvent, PointerEvent and QEMU messages count as activity; the timer starts
when the tunnel does and restarts at each activity; when it runs out both sides are
shut.  As in xapi, a read (here: one :meth:`IdleParser.receive_data` call) that
ends in a parse error counts for nothing, even if it held a KeyEvent before the
bad bytes.

:class:`IdleParser` is sans-I/O (bytes in, a :class:`Feed` verdict out);
:class:`IdleWatch` is the asyncio part the ``/console`` relay uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import struct
from collections.abc import Callable

from ..rfb.constants import ClientMsg

VERSION_33 = b"RFB 003.003\n"
#: xapi's QEMU client message length: type, sub-type and 10 bytes, whatever the sub-type
QEMU_MESSAGE_LENGTH = 12

#: message type -> bytes to read before its length is known (its fixed-length header)
_HEADER: dict[int, int] = {
    ClientMsg.SET_PIXEL_FORMAT: 1,
    ClientMsg.SET_ENCODINGS: 4,  # type, padding, u16 number of encodings
    ClientMsg.FRAMEBUFFER_UPDATE_REQUEST: 1,
    ClientMsg.KEY_EVENT: 1,
    ClientMsg.POINTER_EVENT: 1,
    ClientMsg.CLIENT_CUT_TEXT: 8,  # type, 3 padding, s32 length
    ClientMsg.QEMU: 1,
}
_FIXED_LENGTH: dict[int, int] = {
    ClientMsg.SET_PIXEL_FORMAT: 20,
    ClientMsg.FRAMEBUFFER_UPDATE_REQUEST: 10,
    ClientMsg.KEY_EVENT: 8,
    ClientMsg.POINTER_EVENT: 6,
    ClientMsg.QEMU: QEMU_MESSAGE_LENGTH,
}
_ACTIVE = frozenset({ClientMsg.KEY_EVENT, ClientMsg.POINTER_EVENT, ClientMsg.QEMU})


class Feed(enum.Enum):
    """What one chunk of client bytes meant to the idle monitor."""

    QUIET = "quiet"  # parsed, no key, pointer or QEMU message completed
    ACTIVE = "active"  # at least one of them completed: the timer restarts
    OFF = "off"  # the parser failed now or before: never time this tunnel out


class _Phase(enum.Enum):
    VERSION = "version"
    CLIENT_INIT = "client-init"
    MESSAGES = "messages"
    OFF = "off"


class IdleParser:
    """The client->server RFB parser of xapi's idle monitor (see the module doc).

    It keeps at most a message header (8 bytes) or the 12-byte version; message
    bodies, however long (ClientCutText announces up to 2 GiB), are skipped, never
    buffered.
    """

    def __init__(self) -> None:
        self._phase = _Phase.VERSION
        self._head = bytearray()  # bytes of the version or of the current message header
        self._skip = 0  # body bytes of the current message still to pass over
        self._pending: int | None = None  # type of the message whose body is being skipped
        self._version_ok = False
        self.why_off = ""

    @property
    def off(self) -> bool:
        return self._phase is _Phase.OFF

    def receive_data(self, data: bytes) -> Feed:
        """Parse one chunk of client bytes (one read of the tunnel)."""
        if self._phase is _Phase.OFF:
            return Feed.OFF
        active = False
        view = memoryview(data)
        pos = 0
        try:
            while pos < len(view):
                pos, done = self._step(view, pos)
                if done is not None and done in _ACTIVE:
                    active = True
        except _ParseError as exc:
            self._phase = _Phase.OFF
            self._head.clear()
            self.why_off = str(exc)
            return Feed.OFF
        return Feed.ACTIVE if active else Feed.QUIET

    def _step(self, view: memoryview, pos: int) -> tuple[int, int | None]:
        """Consume bytes from ``pos``; returns the new position and the type of a
        message completed by them, if one was."""
        if self._skip:
            take = min(self._skip, len(view) - pos)
            self._skip -= take
            pos += take
            if self._skip:
                return pos, None
            done, self._pending = self._pending, None
            return pos, done
        if self._phase is _Phase.VERSION:
            pos = self._fill(view, pos, len(VERSION_33))
            if len(self._head) == len(VERSION_33):
                # xapi reads the version and the ClientInit byte before judging both
                self._version_ok = bytes(self._head) == VERSION_33
                self._head.clear()
                self._phase = _Phase.CLIENT_INIT
            return pos, None
        if self._phase is _Phase.CLIENT_INIT:
            if not self._version_ok:
                raise _ParseError("BadHandshake: not an RFB 003.003 client")
            if view[pos] not in (0, 1):
                raise _ParseError("BadHandshake: ClientInit shared-flag is not 0 or 1")
            self._phase = _Phase.MESSAGES
            return pos + 1, None
        return self._message(view, pos)

    def _message(self, view: memoryview, pos: int) -> tuple[int, int | None]:
        kind = self._head[0] if self._head else view[pos]
        header = _HEADER.get(kind)
        if header is None:
            raise _ParseError(f"UnsupportedMsg: {kind:02x}")
        pos = self._fill(view, pos, header)
        if len(self._head) < header:
            return pos, None
        head = bytes(self._head)
        self._head.clear()
        if kind == ClientMsg.SET_ENCODINGS:
            length = 4 + 4 * struct.unpack_from(">H", head, 2)[0]
        elif kind == ClientMsg.CLIENT_CUT_TEXT:
            (text,) = struct.unpack_from(">i", head, 4)
            if text < 0:
                raise _ParseError("ClientCutText with a negative length")
            length = 8 + text
        else:
            length = _FIXED_LENGTH[kind]
        self._skip = length - header
        if self._skip:
            self._pending = kind
            return pos, None
        return pos, kind

    def _fill(self, view: memoryview, pos: int, size: int) -> int:
        take = min(size - len(self._head), len(view) - pos)
        self._head += view[pos:pos + take]
        return pos + take


class _ParseError(Exception):
    pass


class IdleWatch:
    """Applies an idle timeout to one relay: :meth:`feed` is the client->backend
    filter (it returns its input unchanged), :meth:`run` the timer task that calls
    ``on_idle`` once the timeout passed without activity.  The timer stops for good
    when the parser turns off."""

    def __init__(self, timeout: float, on_idle: Callable[[], None], *,
                 clock: Callable[[], float] | None = None) -> None:
        self.timeout = timeout
        self.parser = IdleParser()
        self._on_idle = on_idle
        self._clock = clock or asyncio.get_running_loop().time
        self.deadline = self._clock() + timeout
        self.timed_out = False
        self._changed = asyncio.Event()

    def feed(self, data: bytes) -> bytes:
        verdict = self.parser.receive_data(data)
        if verdict is Feed.ACTIVE:
            self.deadline = self._clock() + self.timeout
        elif verdict is Feed.OFF:
            self._changed.set()
        return data

    async def run(self) -> None:
        while not self.parser.off:
            remaining = self.deadline - self._clock()
            if remaining <= 0:
                self.timed_out = True
                self._on_idle()
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
