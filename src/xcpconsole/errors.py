"""The one exception hierarchy of xcpconsole.

Every error a user can cause (bad input, wrong password, unreachable host,
hostile bytes from a peer) is an :class:`XcpConsoleError`; the CLI prints its
message and exits non-zero without a traceback.  Messages never contain
session ids or passwords.
"""

from __future__ import annotations

import re

_SECRET_RE = re.compile(r"OpaqueRef:[0-9a-fA-F-]{8,}")


def redact(text: str) -> str:
    """Replace every OpaqueRef in ``text`` (session ids look like that) by a short marker."""
    return _SECRET_RE.sub(lambda m: "OpaqueRef:" + m.group(0)[10:14] + "…", text)


class XcpConsoleError(Exception):
    """Base class of every error raised by xcpconsole."""

    exit_code = 1


class ProtocolError(XcpConsoleError):
    """A peer sent bytes that break the protocol (RFB, HTTP head, WebSocket...)."""


class LimitExceededError(ProtocolError):
    """A peer asked for more than a configured bound (size, count, memory)."""


class UnsupportedError(ProtocolError):
    """A peer asked for a version, security type or encoding we do not implement."""


class UsageError(XcpConsoleError):
    """The caller used an API out of order or with impossible arguments (e.g. asked a
    protocol machine for an update before its handshake ended): our fault, not the peer's,
    hence deliberately not a :class:`ProtocolError`."""

    exit_code = 2


class AuthError(XcpConsoleError):
    """Credentials were refused (XenAPI login, VNC password, web login)."""

    exit_code = 3


class SessionEndedError(AuthError):
    """The host ended the XenAPI session and refused the saved credentials when we logged
    in again (the password changed, the account was locked or removed).  The session does
    not try them again: under PAM or AD rules each try counts towards a lock-out."""


class TrustError(XcpConsoleError):
    """A TLS certificate could not be trusted (unknown, changed or wrong fingerprint)."""

    exit_code = 4


class TunnelError(XcpConsoleError):
    """The host refused or broke the /console tunnel."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConsoleForbiddenError(TunnelError):
    """The host's role-based access control refused the console (HTTP 403): the user may
    see the VM but not open its console (a read-only role)."""

    exit_code = 3


class XapiError(XcpConsoleError):
    """A XenAPI call failed; ``code`` and ``params`` are the host's ErrorDescription."""

    def __init__(self, code: str, params: list[str] | None = None, message: str | None = None):
        self.code = code
        self.params = list(params or [])
        shown = [redact(p) for p in self.params]
        super().__init__(message or (f"{code} {shown}" if shown else code))


class NotFoundError(XcpConsoleError):
    """A VM, console or profile named by the user does not exist."""


class AmbiguousError(XcpConsoleError):
    """A name matches more than one object; the message lists the candidates."""


class ConfigError(XcpConsoleError):
    """Settings are missing or invalid (profile file, flags, environment)."""

    exit_code = 2


class NetworkError(XcpConsoleError):
    """A network peer could not be reached or went away (timeouts included)."""
