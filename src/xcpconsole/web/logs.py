"""What the gateway's logs say of hostile clients: one short line each, never a flood.

aiohttp logs every malformed request (a bad request line, an oversized header, bytes
that are not HTTP) with a traceback at ERROR: ~700 bytes per garbage request, which an
attacker turns into disk use.  :class:`MalformedRequests` makes that one INFO line
naming the peer and the parser's reason, and lets at most ``per_second`` of them through,
counting the rest in the next line that passes.  When the process is out of file
descriptors, asyncio logs each failed ``accept()`` with a traceback, thousands a
second; :class:`AcceptFailures` makes that one WARNING line every ``every`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["AcceptFailures", "MalformedRequests", "install"]


class MalformedRequests(logging.Filter):
    def __init__(self, per_second: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.per_second = per_second
        self._clock = clock
        self._window = -1
        self._passed = 0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True  # our own bugs keep their traceback
        window = int(self._clock())
        if window != self._window:
            self._window, self._passed = window, 0
        if self._passed >= self.per_second:
            self._dropped += 1
            return False
        self._passed += 1
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        reason = str(getattr(exc, "message", "") or type(exc).__name__)[:120]
        more = f" ({self._dropped} more not logged)" if self._dropped else ""
        self._dropped = 0
        record.msg, record.args = "malformed request from %s: %s%s", (peer, reason, more)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class AcceptFailures(logging.Filter):
    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        super().__init__()
        self.every = every
        self._clock = clock
        self._last = -every
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "socket.accept() out of system resource" not in str(record.msg):
            return True
        now = self._clock()
        if now - self._last < self.every:
            self._dropped += 1
            return False
        self._last = now
        exc = record.exc_info[1] if record.exc_info else None
        more = f"; {self._dropped} more since the last line" if self._dropped else ""
        self._dropped = 0
        record.msg = "cannot accept connections: %s (out of file descriptors?)%s"
        record.args = (exc or "accept failed", more)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install() -> None:
    """Put the filters on aiohttp's and asyncio's loggers once (every app shares them)."""
    for name, kind in (("aiohttp.server", MalformedRequests), ("asyncio", AcceptFailures)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
