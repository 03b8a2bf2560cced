"""Who may use the gateway: web sessions, signed cookies, CSRF, login throttling, WS tokens.

The gateway keeps no user database.  A successful XenAPI ``login_with_password`` against
the configured host is the proof of identity, and the resulting XAPI session is kept
(one per sign-in) so every action runs with that user's own rights (RBAC stays on the
host).  Everything here is in memory, keyed by random identifiers, signed with a key
that lives only as long as the process: restarting the gateway signs everybody out,
which is the safe default for a console gateway.

Nothing in this module does network I/O; time is passed in (``now``) so tests can move
it without sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .host import HostConsole, HostSession

COOKIE_NAME = "xcpconsole_session"
TOKEN_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()



def _same(ours: str, theirs: str) -> bool:
    """Constant-time equality of a secret of ours and a string from the network, which
    may hold any character (``hmac.compare_digest`` raises on non-ASCII ``str``)."""
    return hmac.compare_digest(ours.encode(), theirs.encode("utf-8", "surrogateescape"))

class Signer:
    """HMAC-SHA256 over short strings with a random per-process key."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def sign(self, value: str) -> str:
        mac = hmac.new(self._key, value.encode(), hashlib.sha256).digest()
        return f"{value}.{_b64(mac)}"

    def unsign(self, signed: str) -> str | None:
        if not signed.isascii():  # ours always are; aiohttp hands bad UTF-8 on as surrogates
            return None
        value, sep, _mac = signed.rpartition(".")
        if not sep or not value:
            return None
        return value if _same(self.sign(value), signed) else None

    def login_form_token(self, now: float) -> str:
        """CSRF token for the login form (no session exists yet): a signed timestamp."""
        return self.sign(f"login-{int(now)}")

    def check_login_form_token(self, token: str, now: float, max_age: float = 3600) -> bool:
        value = self.unsign(token)
        if value is None or not value.startswith("login-"):
            return False
        try:
            issued = int(value[6:])
        except ValueError:
            return False
        return 0 <= now - issued <= max_age


@dataclass(eq=False)
class WebSession:
    """One sign-in: the user's own XAPI session plus what the pages need."""

    sid: str
    user: str
    xapi: HostSession = field(repr=False)
    csrf: str = field(repr=False)
    created: float
    last_seen: float
    consoles: int = 0  # open console WebSockets
    visible_vms: set[str] = field(default_factory=set)  # VM uuids this user has listed
    #: (vm uuid, protocol) -> (HTTP status, message) of the last console that failed to
    #: open: a WebSocket cannot carry it to the page, the next token request does
    console_errors: dict[tuple[str, str], tuple[int | None, str]] = field(
        default_factory=dict)

    def check_csrf(self, token: str | None) -> bool:
        return bool(token) and _same(self.csrf, token or "")


class SessionStore:
    """Web sessions with idle and absolute expiry and a per-user cap (oldest evicted)."""

    def __init__(self, *, idle: float = 1800, lifetime: float = 12 * 3600,
                 max_per_user: int = 5) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self.max_per_user = max_per_user
        self._sessions: dict[str, WebSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[WebSession]:
        return iter(list(self._sessions.values()))

    def create(self, user: str, xapi: HostSession, now: float
               ) -> tuple[WebSession, list[WebSession]]:
        """New session; returns it and the sessions evicted to respect ``max_per_user``."""
        mine = sorted((s for s in self._sessions.values() if s.user == user),
                      key=lambda s: s.last_seen)
        evicted = mine[: max(0, len(mine) - self.max_per_user + 1)]
        for old in evicted:
            del self._sessions[old.sid]
        sess = WebSession(secrets.token_urlsafe(TOKEN_BYTES), user, xapi,
                          secrets.token_urlsafe(TOKEN_BYTES), now, now)
        self._sessions[sess.sid] = sess
        return sess, evicted

    def get(self, sid: str, now: float) -> WebSession | None:
        sess = self._sessions.get(sid)
        if sess is None or self._expired(sess, now):
            return None
        sess.last_seen = now
        return sess

    def remove(self, sid: str) -> WebSession | None:
        return self._sessions.pop(sid, None)

    def expire(self, now: float) -> list[WebSession]:
        """Remove and return expired sessions (the caller logs their XAPI sessions out)."""
        gone = [s for s in self._sessions.values() if self._expired(s, now) and s.consoles == 0]
        for s in gone:
            del self._sessions[s.sid]
        return gone

    def _expired(self, sess: WebSession, now: float) -> bool:
        if now - sess.created > self.lifetime:
            return True
        return sess.consoles == 0 and now - sess.last_seen > self.idle


@dataclass(frozen=True)
class ConsoleGrant:
    """What a one-time WebSocket token allows: this session, this VM, this protocol."""

    sid: str
    user: str
    vm_uuid: str
    protocol: str
    expires: float
    #: looked up at issue time (saves a call)
    console: HostConsole | None = field(default=None, repr=False)


class TokenStore:
    """Single-use, short-lived tokens that open one console WebSocket each."""

    def __init__(self, *, ttl: float = 30.0, max_tokens: int = 10_000) -> None:
        self.ttl = ttl
        self.max_tokens = max_tokens
        self._grants: dict[str, ConsoleGrant] = {}

    def __len__(self) -> int:
        return len(self._grants)

    def issue(self, sess: WebSession, vm_uuid: str, protocol: str, now: float,
              console: HostConsole | None = None) -> str:
        if len(self._grants) >= self.max_tokens:
            self.prune(now)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._grants[token] = ConsoleGrant(sess.sid, sess.user, vm_uuid, protocol,
                                           now + self.ttl, console)
        return token

    def redeem(self, token: str, now: float) -> ConsoleGrant | None:
        """Consume ``token``; ``None`` if unknown, already used or expired."""
        grant = self._grants.pop(token, None)
        if grant is None or now > grant.expires:
            return None
        return grant

    def revoke_session(self, sid: str) -> None:
        for token, grant in list(self._grants.items()):
            if grant.sid == sid:
                del self._grants[token]

    def prune(self, now: float) -> None:
        for token, grant in list(self._grants.items()):
            if now > grant.expires:
                del self._grants[token]


def origin_allowed(origin: str | None, expected: str, extra: tuple[str, ...] = ()) -> bool:
    """Exact match of the Origin header with our own origin (or a configured one)."""
    if not origin:
        return False
    origin = origin.rstrip("/").lower()
    return origin == expected.lower() or origin in (o.rstrip("/").lower() for o in extra)


def host_allowed(host: str | None, allowed: tuple[str, ...], origins: tuple[str, ...] = ()
                 ) -> bool:
    """May a request with this ``Host`` header be answered?  (DNS rebinding: a page of
    ``evil.example`` whose name now points at the gateway is "same origin" with it, so the
    Origin check alone does not stop it; its Host header still says ``evil.example``.)

    Accepted: an IP literal or ``localhost`` (no DNS name to rebind), a name given with
    ``--allowed-host``, or the host of an ``--allowed-origin``; and no Host at all
    (HTTP/1.0 health checks: browsers, the only victims of rebinding, always send one)."""
    if not host:
        return True
    name = _host_name(host)
    if name is None:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    names = {n.lower().rstrip(".") for n in allowed}
    names.update(h for o in origins if (h := urlsplit(o).hostname))
    return name in names


def _host_name(host: str) -> str | None:
    """The name of a ``Host`` header value, lower case, without port or brackets."""
    try:
        name = urlsplit("//" + host).hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None
