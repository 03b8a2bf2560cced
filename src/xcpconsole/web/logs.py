"""What the gateway's logs say of hostile clients: one short line each, never a flood.

aiohttp logs every malformed request (a bad request line, an oversized header, bytes
that are not HTTP) with a traceback at ERROR: ~700 bytes per garbage request, which an
attacker turns into disk use.  :class:`MalformedRequests` makes that one INFO line
naming the peer and the parser's reason, and lets at most ``per_second`` of them through,
counting the rest in the next line that passes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["MalformedRequests", "install"]


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


def install() -> None:
    """Put the filter on aiohttp's server logger once (every app shares the logger)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequests) for f in logger.filters):
        logger.addFilter(MalformedRequests())
