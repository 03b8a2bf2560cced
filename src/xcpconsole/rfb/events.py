"""Events emitted by the sans-I/O RFB state machines.

A :class:`~xcpconsole.rfb.server.ServerConnection` emits what a *client* sent
(the first group, :data:`EventFromClient`); a :class:`~xcpconsole.rfb.client.ClientConnection`
emits what a *server* sent (the second group, :data:`EventFromServer`).
``ConnectionClosed`` is in both.
All events are frozen dataclasses so they can be compared in tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .pixelformat import PixelFormat

# -- both sides ---------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionClosed:
    """The peer closed the connection (``receive_data(b"")``)."""


# -- server side: what a client sent -----------------------------------------


@dataclass(frozen=True)
class ClientHandshakeDone:
    """ClientInit arrived; ServerInit is already queued, the session is running."""

    shared: bool


@dataclass(frozen=True)
class AuthFailed:
    """The client failed VNC Authentication; the failure result is queued and the
    connection is CLOSED (send what is queued, then close the socket)."""

    reason: str


@dataclass(frozen=True)
class SetPixelFormat:
    pixel_format: PixelFormat


@dataclass(frozen=True)
class SetEncodings:
    encodings: tuple[int, ...]


@dataclass(frozen=True)
class FramebufferUpdateRequest:
    incremental: bool
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class KeyEvent:
    down: bool
    keysym: int


@dataclass(frozen=True)
class PointerEvent:
    button_mask: int
    x: int
    y: int


@dataclass(frozen=True)
class ClientCutText:
    text: str


@dataclass(frozen=True)
class XvpRequest:
    """XVP client message: ``code`` is an XvpCode (SHUTDOWN, REBOOT or RESET)."""

    version: int
    code: int


# -- client side: what a server sent -----------------------------------------


@dataclass(frozen=True)
class ServerInitReceived:
    """The handshake is over; SetPixelFormat and SetEncodings are already queued."""

    width: int
    height: int
    pixel_format: PixelFormat
    name: str
    version: tuple[int, int]
    security_type: int


@dataclass(frozen=True)
class RectInfo:
    """One rectangle of a FramebufferUpdate; ``wire_bytes`` counts header + payload,
    ``jpeg`` says a Tight rectangle came as JPEG (lossy)."""

    x: int
    y: int
    width: int
    height: int
    encoding: int
    wire_bytes: int
    jpeg: bool = False


@dataclass(frozen=True)
class FramebufferUpdated:
    """A whole FramebufferUpdate was applied to the client's frame buffer."""

    rects: tuple[RectInfo, ...]


@dataclass(frozen=True)
class DesktopResized:
    """The frame buffer was reallocated (DesktopSize / ExtendedDesktopSize); it is black
    until the server sends pixels."""

    width: int
    height: int


@dataclass(frozen=True, eq=False)
class CursorShape:
    """Cursor pseudo-encoding: ``rgba`` is a ``(height, width, 4)`` uint8 array
    (alpha 0 or 255 from the server's bit mask)."""

    hotspot_x: int
    hotspot_y: int
    width: int
    height: int
    rgba: Any = field(repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CursorShape):
            return NotImplemented
        return (
            (self.hotspot_x, self.hotspot_y, self.width, self.height)
            == (other.hotspot_x, other.hotspot_y, other.width, other.height)
            and self.rgba.shape == other.rgba.shape
            and bool((self.rgba == other.rgba).all())
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Bell:
    pass


@dataclass(frozen=True)
class ServerCutText:
    text: str


@dataclass(frozen=True)
class ColourMapEntries:
    """SetColourMapEntries: ``colours`` are the wire's 16-bit (r, g, b) values."""

    first: int
    colours: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class XvpMessage:
    """XVP server message: ``code`` XvpCode.INIT (supported) or XvpCode.FAIL."""

    version: int
    code: int


#: What a client sent: the events a :class:`~xcpconsole.rfb.server.ServerConnection` emits.
EventFromClient = (
    ClientHandshakeDone | AuthFailed | SetPixelFormat | SetEncodings | FramebufferUpdateRequest
    | KeyEvent | PointerEvent | ClientCutText | XvpRequest | ConnectionClosed
)
#: What a server sent: the events a :class:`~xcpconsole.rfb.client.ClientConnection` emits.
EventFromServer = (
    ServerInitReceived | FramebufferUpdated | DesktopResized | CursorShape | Bell
    | ServerCutText | ColourMapEntries | XvpMessage | ConnectionClosed
)
Event = EventFromClient | EventFromServer
