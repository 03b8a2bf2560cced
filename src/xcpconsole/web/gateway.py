"""The gateway's state, shared by every handler through ``request.app[GATEWAY]``.

One :class:`Gateway` per application: the configuration, the host backend, the one
injected clock (monotonic seconds; every expiry and the login form's token use it),
the in-memory stores of :mod:`.auth`, the thumbnail cache, the console counters and
the one-time sign-in links.  Its background tasks run in :func:`gateway_lifetime`
(a ``cleanup_ctx``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from .auth import (
    COOKIE_NAME,
    SessionStore,
    Signer,
    TokenStore,
    WebSession,
    host_allowed,
    origin_allowed,
)
from .backend import Backend
from .config import GatewayConfig
from .signin import SignInBudget
from .thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

#: how long open consoles get to send their close at shutdown
CLOSE_GRACE = 5.0


class OpenConsole(Protocol):
    """An open console (a :class:`.bridge.ConsoleBridge`), as shutdown sees it."""

    def going_away(self) -> None: ...


@dataclass
class Gateway:
    """State of one gateway application (everything in memory; a restart signs all out)."""

    config: GatewayConfig
    backend: Backend
    clock: Callable[[], float] = time.monotonic
    signer: Signer = field(default_factory=Signer)
    sessions: SessionStore = field(init=False)
    signins: SignInBudget = field(init=False)
    tokens: TokenStore = field(init=False)
    thumbnails: ThumbnailCache | None = field(init=False, default=None)
    consoles_total: int = 0
    consoles_by_user: dict[str, int] = field(default_factory=dict)
    open_consoles: set[OpenConsole] = field(default_factory=set)
    #: one-time sign-in links (``xcpconsole demo``): code -> (user, password, expiry)
    sign_in_codes: dict[str, tuple[str, str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        c = self.config
        self.sessions = SessionStore(idle=c.session_idle, lifetime=c.session_lifetime,
                                     max_per_user=c.max_logins_per_user)
        self.signins = SignInBudget(free=c.login_free_failures, base=c.login_backoff,
                                    per_address=c.signins_per_address,
                                    total=c.signins_in_flight)
        self.tokens = TokenStore(ttl=c.token_ttl)
        if c.thumbnails and self.backend.capture is not None:
            self.thumbnails = ThumbnailCache(self.backend.capture, max_age=c.thumbnail_max_age,
                                             clock=self.clock)

    @property
    def host_label(self) -> str:
        return self.config.host_settings.url

    def session_of(self, request: web.Request) -> WebSession | None:
        raw = request.cookies.get(COOKIE_NAME)
        sid = self.signer.unsign(raw) if raw else None
        return self.sessions.get(sid, self.clock()) if sid else None

    def host_ok(self, request: web.Request) -> bool:
        return host_allowed(request.headers.get("Host"), self.config.allowed_hosts,
                            self.config.allowed_origins)

    def origin_ok(self, request: web.Request) -> bool:
        own = f"{request.scheme}://{request.host}"
        return origin_allowed(request.headers.get("Origin"), own, self.config.allowed_origins)

    async def end_session(self, sess: WebSession) -> None:
        self.sessions.remove(sess.sid)
        self.tokens.revoke_session(sess.sid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sess.xapi.logout(), 10)
        log.info("signed out %s", sess.user)

    def count_console(self, sess: WebSession, delta: int) -> None:
        """A console WebSocket of ``sess`` opened (+1) or closed (-1)."""
        self.consoles_total += delta
        sess.consoles += delta
        n = self.consoles_by_user.get(sess.user, 0) + delta
        if n > 0:
            self.consoles_by_user[sess.user] = n
        else:
            self.consoles_by_user.pop(sess.user, None)

    def add_sign_in_link(self, user: str, password: str, ttl: float = 600.0) -> str:
        """A single-use path that signs its opener in as ``user`` (for ``xcpconsole demo``).

        The code is 256 random bits, valid for ``ttl`` seconds and one use; the password
        is still checked against the host when the link is opened.
        """
        code = secrets.token_urlsafe(32)
        self.sign_in_codes[code] = (user, password, self.clock() + ttl)
        return f"/login/link?code={code}"

    def redeem_sign_in_link(self, code: str) -> tuple[str, str] | None:
        """``(user, password)`` of an unused, unexpired link code; the code is spent."""
        entry = self.sign_in_codes.pop(code, None)
        if entry is None or entry[2] < self.clock():
            return None
        return entry[0], entry[1]

    async def reap(self) -> None:
        """Background: log out the XAPI sessions of expired sign-ins; drop stale tokens."""
        while True:
            await asyncio.sleep(min(30.0, self.config.session_idle / 2))
            now = self.clock()
            for sess in self.sessions.expire(now):
                await self.end_session(sess)
            self.tokens.prune(now)
            self.signins.prune(now)


GATEWAY = web.AppKey("gateway", Gateway)


async def close_consoles(app: web.Application) -> None:
    """``on_shutdown`` (before aiohttp cancels the handlers): every open console closes
    its WebSocket with 1001, so the pages know to reconnect, within ``CLOSE_GRACE``."""
    gw = app[GATEWAY]
    if not gw.open_consoles:
        return
    log.info("closing %d open consoles", len(gw.open_consoles))
    for console in list(gw.open_consoles):
        console.going_away()
    loop = asyncio.get_running_loop()
    until = loop.time() + CLOSE_GRACE
    while gw.open_consoles and loop.time() < until:
        await asyncio.sleep(0.05)


async def gateway_lifetime(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the reaper and thumbnail tasks; on shutdown, sign everybody out."""
    gw = app[GATEWAY]
    reaper = asyncio.create_task(gw.reap(), name="session-reaper")
    if gw.thumbnails is not None:
        gw.thumbnails.start()
    yield
    reaper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reaper
    if gw.thumbnails is not None:
        await gw.thumbnails.stop()
    for sess in list(gw.sessions):
        await gw.end_session(sess)
    if gw.backend.close is not None:
        gw.backend.close()
