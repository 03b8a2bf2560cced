"""Server side of RFB as a sans-I/O state machine (used by the simulated host).

How to use it (the adapter owns the socket, this object owns the protocol)::

    conn = ServerConnection(width=720, height=400, name="vm", version=(3, 3))
    sock.send(conn.data_to_send())             # the server speaks first
    while True:
        conn.receive_data(sock.recv(65536))    # b"" at EOF
        while (event := conn.next_event()) is not None:
            match event:
                case ClientHandshakeDone():    # ServerInit already queued
                    ...
                case FramebufferUpdateRequest(incremental=inc):
                    conn.send_update(fb, [(0, 0, 720, 400)] if not inc else dirty)
                case KeyEvent(down=down, keysym=k): ...
                case SetEncodings() if conn.supports(Encoding.XVP):
                    conn.send_xvp(XvpCode.INIT)
                case AuthFailed() | ConnectionClosed(): ...
        sock.send(conn.data_to_send())

``next_event`` may raise a :class:`~xcpconsole.errors.ProtocolError` subclass on
hostile input; the connection is then in ``ServerState.ERROR`` for good (more
input is refused with a ProtocolError saying why): send what ``data_to_send()``
still holds (a SecurityResult reason, for instance) and close.  Sending before the
handshake ended, or a frame buffer or copy that does not fit the session, raises
:class:`~xcpconsole.errors.UsageError` (the caller's fault) and changes nothing.
Updates are only sent when you call ``send_update``; ``pending_request``
remembers the client's outstanding FramebufferUpdateRequest (merged) until then.
Clients announcing the ExtendedDesktopSize pseudo-encoding may send SetDesktopSize;
it is answered "prohibited" here without an event (the console's size is the VM's).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from enum import Enum

from ..errors import ProtocolError, UnsupportedError, UsageError
from . import events as ev
from . import handshake as hs
from . import messages as msg
from .auth import CHALLENGE_LEN, check_vnc_auth, make_challenge
from .constants import (
    MAX_DIMENSION,
    PUBLISHED_VERSIONS,
    DesktopSizeReason,
    DesktopSizeStatus,
    Encoding,
    SecurityType,
)
from .encoders import copyrect, hextile, raw
from .encoders.copyrect import CopyRegion
from .encoders.zrle import ZrleEncoder
from .pixelformat import BGR233, BGRX32, RGB, PixelFormat

__all__ = ["CopyRegion", "ServerConnection", "ServerState"]

#: Stop parsing after this many buffered bytes without a complete message (none is that long).
_MAX_PENDING = 1 << 22


class ServerState(Enum):
    VERSION = "VERSION"
    SECURITY = "SECURITY"
    AUTH = "AUTH"
    CLIENT_INIT = "CLIENT_INIT"
    NORMAL = "NORMAL"
    CLOSED = "CLOSED"  # the client closed, or failed VNC authentication
    ERROR = "ERROR"  # something raised while reading the client's bytes; final


class ServerConnection:
    """One RFB server session, from ProtocolVersion to the normal message flow."""

    def __init__(self, *, width: int, height: int, name: str,
                 pixel_format: PixelFormat = BGRX32, version: tuple[int, int] = (3, 8),
                 password: str | None = None) -> None:
        if version not in PUBLISHED_VERSIONS:
            raise UnsupportedError(f"cannot offer RFB {version[0]}.{version[1]}")
        if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
            raise UsageError(f"frame buffer size {width}x{height} out of range")
        pixel_format.validate()
        self.width = width
        self.height = height
        self.name = name
        self.pixel_format = pixel_format
        self.offered_version = version
        #: the version both sides use, known once the client answered
        self.version = version
        self.state = ServerState.VERSION
        #: what moved the machine to ERROR
        self.error: BaseException | None = None
        self.client_pixel_format: PixelFormat = pixel_format
        self.client_encodings: tuple[int, ...] = ()
        self.pending_request: ev.FramebufferUpdateRequest | None = None
        self._password = password
        self._security = SecurityType.VNC_AUTH if password is not None else SecurityType.NONE
        self._challenge = b""
        self._in = bytearray()
        self._out = bytearray()
        self._events: deque[ev.EventFromClient] = deque()
        self._zrle = ZrleEncoder()
        self._encode_pf = pixel_format  # true-colour format pixels are encoded in
        self._out += hs.pack_version(version)

    # -- I/O ------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client (``b""`` means the client closed)."""
        if self.state is ServerState.ERROR:
            raise self._already_failed()
        if self.state is ServerState.CLOSED:
            return
        if not data:
            self.state = ServerState.CLOSED
            self._events.append(ev.ConnectionClosed())
            return
        self._in += data

    def next_event(self) -> ev.EventFromClient | None:
        """The next event, or None when more bytes are needed."""
        if self.state is ServerState.ERROR:
            raise self._already_failed()
        try:
            while not self._events and self.state is not ServerState.CLOSED and self._step():
                pass
        except Exception as exc:
            self.error = exc
            self.state = ServerState.ERROR
            raise
        return self._events.popleft() if self._events else None

    def _already_failed(self) -> ProtocolError:
        return ProtocolError(f"the RFB connection already failed: {self.error}")

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def supports(self, encoding: int) -> bool:
        """Whether the client announced ``encoding`` in its last SetEncodings."""
        return encoding in self.client_encodings

    # -- parsing --------------------------------------------------------------
    def _step(self) -> bool:
        """Consume one message from the input; False if it is incomplete."""
        state = self.state
        buf = self._in
        used: int
        if state is ServerState.VERSION:
            if len(buf) < hs.VERSION_LEN:
                return False
            self._on_version(buf)
            used = hs.VERSION_LEN
        elif state is ServerState.SECURITY:
            if not buf:
                return False
            self._on_security_choice(buf[0])
            used = 1
        elif state is ServerState.AUTH:
            if len(buf) < CHALLENGE_LEN:
                return False
            self._on_auth_response(bytes(buf[:CHALLENGE_LEN]))
            used = CHALLENGE_LEN
        elif state is ServerState.CLIENT_INIT:
            if not buf:
                return False
            self._out += hs.pack_server_init(self.width, self.height, self.pixel_format,
                                             self.name)
            self.state = ServerState.NORMAL
            self._events.append(ev.ClientHandshakeDone(shared=buf[0] != 0))
            used = 1
        else:
            with memoryview(buf) as view:
                parsed = msg.parse_client_message(view, state.value)
            if parsed is None:
                if len(buf) > _MAX_PENDING:
                    raise ProtocolError(f"incomplete client message of over {_MAX_PENDING} bytes")
                return False
            event, used = parsed
            self._on_message(event)
        del buf[:used]
        return True

    def _on_version(self, data: bytearray) -> None:
        major, minor = hs.parse_version(data, "client")
        answered = hs.effective_version(major, minor, "client")
        if answered > self.offered_version:
            raise UnsupportedError(
                f"client answered RFB {major}.{minor:03d} to our "
                f"{self.offered_version[0]}.{self.offered_version[1]:03d} in state VERSION"
            )
        self.version = answered
        if answered == (3, 3):
            self._out += hs.pack_security_type_33(self._security)
            self._after_security_choice()
        else:
            self._out += hs.pack_security_types([self._security])
            self.state = ServerState.SECURITY

    def _on_security_choice(self, chosen: int) -> None:
        if chosen != self._security:
            if hs.failure_has_reason(self.version):  # 3.3 and 3.7 just close
                self._out += hs.pack_security_result(False, "security type not offered",
                                                     self.version)
            raise UnsupportedError(
                f"client chose security type {chosen}, we offered {int(self._security)} "
                "(state SECURITY)"
            )
        self._after_security_choice()

    def _after_security_choice(self) -> None:
        if self._security == SecurityType.VNC_AUTH:
            self._challenge = make_challenge()
            self._out += self._challenge
            self.state = ServerState.AUTH
        else:
            if hs.expects_security_result(self.version, self._security):
                self._out += hs.pack_security_result(True, "", self.version)
            self.state = ServerState.CLIENT_INIT

    def _on_auth_response(self, response: bytes) -> None:
        assert self._password is not None
        if check_vnc_auth(self._password, self._challenge, response):
            self._out += hs.pack_security_result(True, "", self.version)
            self.state = ServerState.CLIENT_INIT
            return
        reason = "authentication failed"
        self._out += hs.pack_security_result(False, reason, self.version)
        self.state = ServerState.CLOSED
        self._events.append(ev.AuthFailed(reason))

    def _on_message(self, event: ev.EventFromClient | msg.SetDesktopSizeRequest) -> None:
        if isinstance(event, msg.SetDesktopSizeRequest):
            if self.supports(Encoding.EXTENDED_DESKTOP_SIZE):
                self._out += msg.pack_framebuffer_update_header(1)
                self._out += msg.pack_extended_desktop_size(
                    DesktopSizeReason.CLIENT, DesktopSizeStatus.PROHIBITED,
                    self.width, self.height)
            return
        if isinstance(event, ev.SetPixelFormat):
            self._set_client_format(event.pixel_format)
        elif isinstance(event, ev.SetEncodings):
            self.client_encodings = event.encodings
        elif isinstance(event, ev.FramebufferUpdateRequest):
            self._merge_request(event)
        self._events.append(event)

    def _set_client_format(self, pf: PixelFormat) -> None:
        self.client_pixel_format = pf
        if pf.true_colour:
            self._encode_pf = pf
            return
        # An 8 bpp colour-map client: install a 3-3-2 colour map and encode for it.
        self._encode_pf = BGR233
        colours = []
        for i in range(256):
            r, g, b = i & 7, (i >> 3) & 7, (i >> 6) & 3
            colours.append((r * 65535 // 7, g * 65535 // 7, b * 65535 // 3))
        self._out += msg.pack_set_colour_map_entries(0, colours)

    def _merge_request(self, req: ev.FramebufferUpdateRequest) -> None:
        old = self.pending_request
        if old is None:
            self.pending_request = req
            return
        x0, y0 = min(old.x, req.x), min(old.y, req.y)
        x1 = max(old.x + old.width, req.x + req.width)
        y1 = max(old.y + old.height, req.y + req.height)
        self.pending_request = ev.FramebufferUpdateRequest(
            old.incremental and req.incremental, x0, y0, x1 - x0, y1 - y0
        )

    # -- sending --------------------------------------------------------------
    def _require_normal(self, what: str) -> None:
        if self.state is ServerState.NORMAL:
            return
        if self.state is ServerState.ERROR:
            raise self._already_failed()
        raise UsageError(f"cannot send {what} in state {self.state.value}")

    def best_encoding(self) -> int:
        """The encoding ``send_update`` uses: the first of ZRLE, Hextile and Raw in the
        client's SetEncodings (rfbproto: the list is in the client's order of preference;
        TigerVNC puts its PreferredEncoding first), Raw if it names none of them."""
        for enc in self.client_encodings:
            if enc in (Encoding.ZRLE, Encoding.HEXTILE, Encoding.RAW):
                return enc
        return int(Encoding.RAW)

    def send_update(self, fb: RGB, regions: Sequence[tuple[int, int, int, int]],
                    copies: Sequence[CopyRegion] = ()) -> None:
        """Queue one FramebufferUpdate: CopyRects for ``copies`` (or the copied pixels
        when the client lacks CopyRect), then ``regions`` (x, y, w, h) of ``fb``.

        Regions are clipped to the frame buffer; empty ones are dropped.
        """
        self._require_normal("FramebufferUpdate")
        if fb.shape[:2] != (self.height, self.width):
            raise UsageError(
                f"frame buffer is {fb.shape[1]}x{fb.shape[0]}, "
                f"the session {self.width}x{self.height}"
            )
        rects: list[bytes] = []
        regions = list(regions)
        can_copy = self.supports(Encoding.COPYRECT)
        for c in copies:
            clipped = self._clip(c.x, c.y, c.width, c.height)
            src = self._clip(c.src_x, c.src_y, c.width, c.height)
            if clipped != (c.x, c.y, c.width, c.height) or src != (
                c.src_x, c.src_y, c.width, c.height
            ):
                raise UsageError(f"copy {c} leaves the {self.width}x{self.height} frame buffer")
            if c.width == 0 or c.height == 0:
                continue
            if can_copy:
                rects.append(msg.pack_rect_header(c.x, c.y, c.width, c.height, Encoding.COPYRECT)
                             + copyrect.encode(c.src_x, c.src_y))
            else:
                regions.insert(0, (c.x, c.y, c.width, c.height))
        enc = self.best_encoding()
        pf = self._encode_pf
        for region in regions:
            x, y, w, h = self._clip(*region)
            if w == 0 or h == 0:
                continue
            pixels = fb[y:y + h, x:x + w]
            if enc == Encoding.ZRLE:
                payload = self._zrle.encode(pixels, pf)
            elif enc == Encoding.HEXTILE:
                payload = hextile.encode(pixels, pf)
            else:
                payload = raw.encode(pixels, pf)
            rects.append(msg.pack_rect_header(x, y, w, h, enc) + payload)
        self._out += msg.pack_framebuffer_update_header(len(rects))
        for r in rects:
            self._out += r
        self.pending_request = None

    def _clip(self, x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self.width, x + w), min(self.height, y + h)
        return x0, y0, max(0, x1 - x0), max(0, y1 - y0)

    def send_desktop_size(self, fb_width: int, fb_height: int) -> None:
        """Resize the session; tells the client if it announced ExtendedDesktopSize or
        DesktopSize (otherwise the client keeps its old size: reconnecting is its only way)."""
        self._require_normal("DesktopSize")
        if not (0 < fb_width <= MAX_DIMENSION and 0 < fb_height <= MAX_DIMENSION):
            raise UsageError(f"frame buffer size {fb_width}x{fb_height} out of range")
        self.width, self.height = fb_width, fb_height
        if self.supports(Encoding.EXTENDED_DESKTOP_SIZE):
            self._out += msg.pack_framebuffer_update_header(1)
            self._out += msg.pack_extended_desktop_size(
                DesktopSizeReason.SERVER, DesktopSizeStatus.OK, fb_width, fb_height)
        elif self.supports(Encoding.DESKTOP_SIZE):
            self._out += msg.pack_framebuffer_update_header(1)
            self._out += msg.pack_rect_header(0, 0, fb_width, fb_height, Encoding.DESKTOP_SIZE)

    def send_bell(self) -> None:
        self._require_normal("Bell")
        self._out += msg.pack_bell()

    def send_cut_text(self, text: str) -> None:
        self._require_normal("ServerCutText")
        self._out += msg.pack_server_cut_text(text)

    def send_xvp(self, code: int) -> None:
        """XVP server message: XvpCode.INIT announces support, XvpCode.FAIL refuses a
        request."""
        self._require_normal("XVP")
        self._out += msg.pack_server_xvp(code)

