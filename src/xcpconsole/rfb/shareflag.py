"""Sans-I/O rewriter that makes a relayed viewer's session shared (its ClientInit flag).

Why: TigerVNC's ``vncviewer`` asks for an exclusive session (ClientInit shared-flag 0)
unless run with ``-Shared``, and QEMU (``share=allow-exclusive``, as on a real host)
then disconnects every other client of the console — the browser console, a
``screenshot``, a colleague.  ``xcpconsole proxy`` therefore changes that one byte to 1
(unless ``--exclusive``): feed the viewer's bytes to :meth:`ShareFlagRewriter.client_data`
and the server's to :meth:`~ShareFlagRewriter.server_data`, forward what they return.

To find ClientInit it follows the handshake, reading it with :mod:`.handshake`:

- the viewer's ProtocolVersion; the handshake in effect is the lower of the two peers'
  (each read by :func:`~.handshake.effective_version`, so 3.5 or Apple's 3.889 is 3.3);
- the security type: in 3.3 the server's u32, in 3.7 / 3.8 the viewer's one-byte choice
  among the types the server listed;
- with VNC authentication, the viewer's 16-byte response;
- the viewer's next byte is ClientInit (it is sent only after a successful
  SecurityResult, whichever version, and nothing else comes before it).

The server's bytes are only watched (its first bytes, up to its list of security types,
are kept) and returned as they are.  The viewer's bytes are returned as they are too,
except the one chunk that holds an exclusive ClientInit, which is copied once with that
byte set.  Once ClientInit has passed, or the rewriter gave up, both methods return
their argument itself: no copy and no parsing, so the relay runs at full speed.

It never ends a connection.  Bytes it cannot follow make it give up and pass everything
through untouched, and :attr:`~ShareFlagRewriter.gave_up` says why: a peer that does not
speak RFB (the proxy also relays other byte streams), a security type with a
sub-protocol of its own (VeNCrypt, TLS...: ClientInit would be encrypted), a refusal, a
viewer speaking out of turn.  The server then judges the viewer's bytes exactly as
without the proxy.  Nothing is raised, and the memory it keeps is bounded (a few hundred
bytes of the server's greeting, the viewer's version).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from ..errors import ProtocolError
from . import handshake as hs
from .auth import CHALLENGE_LEN
from .constants import ClientInitFlag, SecurityType

__all__ = ["ShareFlagRewriter", "ShareFlagState"]

#: The most of the server's greeting the rewriter needs: its version and (3.7+) a count
#: byte and up to 255 security types (3.3: a u32, fewer bytes).
_SERVER_HEAD_MAX = hs.VERSION_LEN + 1 + 255
_SHARED_BYTE = bytes((ClientInitFlag.SHARED,))


class ShareFlagState(Enum):
    VERSION = "VERSION"  # reading the viewer's ProtocolVersion
    SECURITY = "SECURITY"  # the security type: the viewer's choice (3.7+) or the server's (3.3)
    AUTH = "AUTH"  # the viewer's VNC authentication response
    CLIENT_INIT = "CLIENT_INIT"  # the viewer's next byte is ClientInit
    DONE = "DONE"  # ClientInit has passed (shared): everything passes through
    GAVE_UP = "GAVE_UP"  # bytes it cannot follow: everything passes through untouched


class ShareFlagRewriter:
    """Rewrites one viewer's ClientInit to shared; the relay's filter for both directions."""

    def __init__(self) -> None:
        self.state = ShareFlagState.VERSION
        #: the viewer's own ClientInit flag (None before it arrived)
        self.viewer_shared: bool | None = None
        #: whether the viewer asked for an exclusive session and was made shared
        self.rewritten = False
        #: why it stopped following the handshake (then it passed everything untouched)
        self.gave_up: str | None = None
        #: the handshake in effect, once both versions are known
        self.version: tuple[int, int] | None = None
        self.security_type: int | None = None
        self._finished = False
        self._server_head = bytearray()
        self._server_version: tuple[int, int] | None = None
        self._viewer_version = bytearray()
        self._auth_left = CHALLENGE_LEN
        self._steps: dict[ShareFlagState, Callable[[bytes, int], int]] = {
            ShareFlagState.VERSION: self._on_version,
            ShareFlagState.SECURITY: self._on_security,
            ShareFlagState.AUTH: self._on_auth,
        }

    @property
    def finished(self) -> bool:
        """ClientInit has passed or it gave up: from now on both directions pass as they are."""
        return self._finished

    # -- the relay's filters ------------------------------------------------------------
    def server_data(self, data: bytes) -> bytes:
        """Server -> viewer bytes: always returned unchanged (the very object)."""
        if not self._finished and len(self._server_head) < _SERVER_HEAD_MAX:
            self._watch_server(data)
        return data

    def client_data(self, data: bytes) -> bytes:
        """Viewer -> server bytes, with an exclusive ClientInit made shared."""
        if self._finished:
            return data
        pos, end = 0, len(data)
        while pos < end and not self._finished:
            if self.state is ShareFlagState.CLIENT_INIT:
                return self._on_client_init(data, pos)
            pos = self._steps[self.state](data, pos)
        return data

    # -- server direction -----------------------------------------------------------
    def _watch_server(self, data: bytes) -> None:
        head = self._server_head
        had = len(head)
        head += data[:_SERVER_HEAD_MAX - had]
        if had < hs.VERSION_LEN <= len(head):
            try:
                major, minor = hs.parse_version(head, "server")
                self._server_version = hs.effective_version(major, minor, "server")
            except ProtocolError as exc:
                self._give_up(str(exc))

    # -- viewer direction: one method per state, each returns the new position ----------
    def _on_version(self, data: bytes, pos: int) -> int:
        taken = data[pos:pos + hs.VERSION_LEN - len(self._viewer_version)]
        self._viewer_version += taken
        pos += len(taken)
        if len(self._viewer_version) == hs.VERSION_LEN:
            try:
                major, minor = hs.parse_version(self._viewer_version, "viewer")
                viewer = hs.effective_version(major, minor, "viewer")
            except ProtocolError as exc:
                self._give_up(str(exc))
                return pos
            if self._server_version is None:
                self._give_up("the viewer sent its ProtocolVersion before the server's")
                return pos
            self.version = min(viewer, self._server_version)
            self.state = ShareFlagState.SECURITY
        return pos

    def _on_security(self, data: bytes, pos: int) -> int:
        """Called once the viewer sends its first byte after its version."""
        assert self.version is not None
        offered = bytes(self._server_head[hs.VERSION_LEN:])  # at most 256 bytes, once
        if self.version == (3, 3):  # the server chose; the viewer's byte is not consumed
            parsed33 = hs.parse_security_type_33(offered)
            if parsed33 is None:
                self._give_up("the viewer spoke before the server chose a security type")
                return pos
            self._security_chosen(parsed33[0])
            return pos
        parsed = hs.parse_security_types(offered)
        if parsed is None:
            self._give_up("the viewer chose a security type before the server offered any")
            return pos
        choice = data[pos]
        if not parsed[0]:
            self._give_up("the server refused the connection")
        elif choice not in parsed[0]:
            self._give_up(f"the viewer chose security type {choice}, not among the offered "
                          f"{list(parsed[0])}")
        else:
            self._security_chosen(choice)
        return pos + 1

    def _security_chosen(self, security_type: int) -> None:
        self.security_type = security_type
        if security_type == SecurityType.NONE:
            self.state = ShareFlagState.CLIENT_INIT
        elif security_type == SecurityType.VNC_AUTH:
            self.state = ShareFlagState.AUTH
        elif security_type == SecurityType.INVALID:
            self._give_up("the server refused the connection")
        else:
            self._give_up(f"security type {security_type} has its own sub-protocol; "
                          "its ClientInit cannot be found")

    def _on_auth(self, data: bytes, pos: int) -> int:
        n = min(self._auth_left, len(data) - pos)
        self._auth_left -= n
        if self._auth_left == 0:
            self.state = ShareFlagState.CLIENT_INIT
        return pos + n

    def _on_client_init(self, data: bytes, pos: int) -> bytes:
        flag = data[pos]
        self.viewer_shared = flag != ClientInitFlag.EXCLUSIVE
        self._finish(ShareFlagState.DONE)
        if self.viewer_shared:
            return data
        self.rewritten = True
        return b"".join((data[:pos], _SHARED_BYTE, data[pos + 1:]))

    def _give_up(self, why: str) -> None:
        self.gave_up = f"{why} (state {self.state.value})"
        self._finish(ShareFlagState.GAVE_UP)

    def _finish(self, state: ShareFlagState) -> None:
        self.state = state
        self._finished = True
        self._server_head = bytearray()
        self._viewer_version = bytearray()
