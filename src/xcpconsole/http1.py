"""Sans-I/O parser of the reply head to ``CONNECT /console`` (bounded, hostile-input safe).

The host answers a console CONNECT with an HTTP/1.x status line and headers,
then (on 200) starts relaying raw console bytes on the same connection.  So
the parser must stop exactly at the blank line and hand back what follows
(``leftover``): those are the first RFB / terminal bytes.  h11 would do, but it
wants to own the connection after a 200 to CONNECT; this is smaller and keeps
the bound explicit.  Also used by the simulated host's tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import LimitExceededError, ProtocolError

DEFAULT_MAX_HEAD = 16 * 1024
MAX_HEADERS = 100


@dataclass(frozen=True)
class ConnectReply:
    """A parsed reply head; ``leftover`` are the bytes that came after it."""

    version: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    leftover: bytes = field(default=b"", repr=False)

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        low = name.lower()
        for key, value in self.headers:
            if key.lower() == low:
                return value
        return None


def _ascii(line: bytes, what: str) -> str:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"non-ASCII byte in HTTP reply {what}") from exc
    if any(ord(c) < 32 and c != "\t" for c in text) or "\x7f" in text:
        raise ProtocolError(f"control character in HTTP reply {what}")
    return text


def parse_status_line(line: bytes) -> tuple[str, int, str]:
    """``HTTP/1.1 200 OK`` -> ("HTTP/1.1", 200, "OK"); ProtocolError otherwise."""
    text = _ascii(line, "status line")
    version, _, rest = text.partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise ProtocolError(f"not an HTTP/1.x reply: {text[:60]!r}")
    if len(code) != 3 or not code.isdigit():
        raise ProtocolError(f"bad HTTP status code in {text[:60]!r}")
    return version, int(code), reason.strip()


class ConnectReplyParser:
    """Feed bytes until the head is complete; then :meth:`feed` returns the reply.

    ``max_head`` bounds the head (status line + headers + blank line); a peer
    that sends more without a blank line gets :class:`LimitExceededError`.
    Accepts ``\\r\\n`` and bare ``\\n`` line ends, as lenient clients do.
    """

    def __init__(self, max_head: int = DEFAULT_MAX_HEAD) -> None:
        self.max_head = max_head
        self._buf = bytearray()
        self._reply: ConnectReply | None = None

    @property
    def done(self) -> bool:
        return self._reply is not None

    def feed(self, data: bytes) -> ConnectReply | None:
        """Add bytes (``b""`` means EOF); the reply once the blank line arrived, else None."""
        if self._reply is not None:
            raise ProtocolError("reply head already parsed; bytes after it are console data")
        if not data:
            shown = bytes(self._buf[:40])
            raise ProtocolError(
                "connection closed before the end of the HTTP reply head"
                + (f" (got {shown!r}...)" if shown else " (no reply at all)"))
        start = max(0, len(self._buf) - 3)
        self._buf += data
        end = self._head_end(start)
        if end is None:
            if len(self._buf) > self.max_head:
                raise LimitExceededError(
                    f"HTTP reply head longer than {self.max_head} bytes")
            return None
        if end > self.max_head:
            raise LimitExceededError(f"HTTP reply head longer than {self.max_head} bytes")
        head, leftover = bytes(self._buf[:end]), bytes(self._buf[end:])
        self._buf.clear()
        self._reply = self._parse(head, leftover)
        return self._reply

    def _head_end(self, start: int) -> int | None:
        """Index just past the blank line (CRLFCRLF or LFLF), scanning from ``start``."""
        buf = self._buf
        i = buf.find(b"\n", start)
        while i != -1:
            if buf[i + 1:i + 2] == b"\n":
                return i + 2
            if buf[i + 1:i + 3] == b"\r\n":
                return i + 3
            i = buf.find(b"\n", i + 1)
        return None

    @staticmethod
    def _parse(head: bytes, leftover: bytes) -> ConnectReply:
        lines = head.split(b"\n")
        lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
        while lines and not lines[-1]:
            lines.pop()
        if not lines:
            raise ProtocolError("empty HTTP reply head")
        version, status, reason = parse_status_line(lines[0])
        headers: list[tuple[str, str]] = []
        for raw in lines[1:]:
            if len(headers) >= MAX_HEADERS:
                raise LimitExceededError(f"more than {MAX_HEADERS} headers in HTTP reply")
            text = _ascii(raw, "header")
            name, sep, value = text.partition(":")
            if not sep or not name or name != name.strip() or " " in name:
                raise ProtocolError(f"malformed HTTP header line {text[:60]!r}")
            headers.append((name, value.strip()))
        return ConnectReply(version, status, reason, tuple(headers), leftover)
