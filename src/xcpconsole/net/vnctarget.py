"""VNC addresses as people write them: ``vnc://HOST:PORT``, ``HOST:DISPLAY``, ``HOST::PORT``,
``unix:/path`` — and telling them apart from VM names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..address import format_hostport
from ..errors import XcpConsoleError

_DEFAULT_VNC_PORT = 5900


@dataclass(frozen=True)
class VncAddress:
    """Where a VNC server listens: a TCP host and port, or a unix socket path."""

    host: str | None = None
    port: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        return f"vnc://{format_hostport(self.host or '', self.port or 0)}"


_TARGET_RE = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.%]+)\]|(?P<host>[A-Za-z0-9._-]*))(?P<sep>::?)?(?P<num>\d+)?")


def parse_target(text: str) -> VncAddress:
    """Parse ``vnc://HOST[:PORT]``, ``unix:/path``, ``HOST::PORT`` or ``HOST:DISPLAY``.

    As in vncviewer, a single colon takes a display number (port 5900+N) and a double
    colon a port; the ``vnc://`` form takes the port itself.
    """
    if text.startswith("unix:"):
        path = text[5:]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise NotATargetError(f"empty unix socket path in {text!r}")
        return VncAddress(path=path)
    url = text.startswith("vnc://")
    rest = text[6:].rstrip("/") if url else text
    m = _TARGET_RE.fullmatch(rest)
    if m is None or (m.group("sep") and m.group("num") is None):
        raise NotATargetError(f"not a VNC address: {text!r}")
    host = m.group("v6") or m.group("host") or "127.0.0.1"
    sep, num = m.group("sep"), m.group("num")
    if url and sep == "::":
        raise NotATargetError(f"use vnc://HOST:PORT (one colon) in {text!r}")
    if num is None:
        if not url:
            raise NotATargetError(f"not a VNC address: {text!r} (HOST:DISPLAY or HOST::PORT)")
        port = _DEFAULT_VNC_PORT
    elif url or sep == "::":
        port = int(num)
    else:
        port = _DEFAULT_VNC_PORT + int(num)
    if not 0 < port < 65536:
        raise NotATargetError(f"port {port} out of range in {text!r}")
    return VncAddress(host=host, port=port)


def looks_like_target(text: str) -> bool:
    """True if ``text`` is a VNC address rather than a VM name or uuid."""
    try:
        parse_target(text)
    except NotATargetError:
        return False
    return text.startswith(("vnc://", "unix:")) or ":" in text


class NotATargetError(XcpConsoleError):
    """A string is not a VNC address."""

    exit_code = 2
