"""The simulated host's HTTPS front door: XenAPI RPC and ``/console``.

``h11`` parses request heads and bodies (bounded, with timeouts); replies
are written byte for byte the way xapi's ``http_svr.ml`` writes them
(status line in the request's version, then ``Content-Length``,
``Connection``, ``Cache-Control`` and the handler's headers), because clients
such as the official SDK, socat scripts and Java viewers were written
against those bytes.  Every failure of one connection ends that connection
only; the server keeps serving the others.
"""

from __future__ import annotations

import asyncio
import html
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11

from ..errors import ProtocolError
from .xapi import RequestParseError, XenApiDispatcher

log = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class HttpLimits:
    """Bounds on what one client may make the server hold or wait for."""

    max_head: int = 16 * 1024
    max_body: int = 1024 * 1024
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 120.0
    max_connections: int = 256


@dataclass
class HttpRequest:
    method: str
    target: str
    path: str
    query: list[tuple[str, str]]
    version: str  # "1.0" or "1.1"
    headers: list[tuple[str, str]]  # names lower-case
    body: bytes = b""
    close: bool = False
    cookies: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def query_param(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None

    @property
    def reply_version(self) -> str:
        """xapi answers errors in the request's version: 1.0 for 1.0, else 1.1."""
        return "1.0" if self.version == "1.0" else "1.1"


# -- reply bytes ---------------------------------------------------------------------

def response_bytes(
    version: str, code: int, reason: str, headers: list[tuple[str, str]], body: bytes | None
) -> bytes:
    """A response head in xapi's order: Content-Length first, then the given headers."""
    lines = [f"HTTP/{version} {code} {reason}"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def error_html(
    code: int, reason: str, body: str, *, version: str = "1.1",
    extra_headers: list[tuple[str, str]] | None = None,
) -> bytes:
    """xapi's ``response_error_html``: text/html, ``Connection: close``, no caching."""
    headers = [
        ("Content-Type", "text/html"),
        ("Connection", "close"),
        ("Cache-Control", "no-cache, no-store"),
        *(extra_headers or []),
    ]
    return response_bytes(version, code, reason, headers, body.encode())


def internal_error(extra: str | None, *, version: str = "1.1") -> bytes:
    info = f"<h1> Additional information </h1>{extra}" if extra is not None else ""
    body = (
        "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; "
        "please wait a while and try again. If the problem persists, please contact your "
        f"support representative.{info}</body></html>"
    )
    return error_html(500, "Internal Error", body, version=version)


def unauthorised(realm: str, *, version: str) -> bytes:
    body = (
        "<html><body><h1>HTTP 401 unauthorised</h1>Please check your credentials and retry."
        "</body></html>"
    )
    return error_html(
        401, "Unauthorised", body, version=version,
        extra_headers=[("WWW-Authenticate", f'Basic realm="{realm}"')],
    )


def forbidden(*, version: str = "1.1") -> bytes:
    body = (
        "<html><body><h1>HTTP 403 forbidden</h1>Access to the requested resource is "
        "forbidden.</body></html>"
    )
    return error_html(403, "Forbidden", body, version=version)


def request_timeout() -> bytes:
    body = (
        "<html><body><h1>HTTP 408 request timeout</h1>Timed out waiting for the request."
        "</body></html>"
    )
    return error_html(408, "Request Timeout", body)


def header_too_large() -> bytes:
    body = (
        "<html><body><h1>HTTP 431 request header fields too large</h1>Exceeded the maximum "
        "header size.</body></html>"
    )
    return error_html(431, "Request Header Fields Too Large", body)


def method_not_implemented(method: str, *, version: str) -> bytes:
    body = (
        "<html><body><h1>HTTP 501 Method Not Implemented</h1>"
        f"<p>{html.escape(method)} not supported.<br /></p></body></html>"
    )
    return error_html(501, "Method not implemented", body, version=version)


def headers_only(code: int, reason: str) -> bytes:
    """xapi's bare ``http_404_missing``-style replies: always 1.1, no body."""
    return response_bytes(
        "1.1", code, reason, [("Connection", "close"), ("Cache-Control", "no-cache, no-store")],
        None,
    )


# -- the connection loop ------------------------------------------------------------

ConsoleHandler = Callable[
    [HttpRequest, asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]
]


class _Timeout(Exception):
    def __init__(self, got_bytes: bool) -> None:
        self.got_bytes = got_bytes


class _TooLarge(Exception):
    pass


class HttpFrontEnd:
    """Serves one TLS connection after another: RPC with keep-alive, ``/console`` tunnels."""

    def __init__(
        self, limits: HttpLimits, rpc: XenApiDispatcher, console: ConsoleHandler
    ) -> None:
        self.limits = limits
        self.rpc = rpc
        self.console = console
        self._slots = asyncio.Semaphore(limits.max_connections)
        self.connections: set[asyncio.Task[None]] = set()

    async def handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        try:
            if self._slots.locked():
                writer.write(error_html(
                    503, "Service Unavailable",
                    "<html><body><h1>HTTP 503 service unavailable</h1></body></html>",
                ))
                return
            async with self._slots:
                await self._serve(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        except Exception:  # one broken connection must never stop the server
            log.exception("connection handler failed")
        finally:
            if task is not None:
                self.connections.discard(task)
            await _close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        leftover = b""
        first = True
        while True:
            try:
                req, leftover = await self._read_request(reader, leftover, first)
            except _Timeout as exc:
                if exc.got_bytes or first:
                    writer.write(request_timeout())
                return
            except _TooLarge:
                writer.write(header_too_large())
                return
            except h11.RemoteProtocolError:
                writer.write(internal_error("The HTTP headers could not be parsed."))
                return
            except RequestParseError as exc:
                writer.write(internal_error(html.escape(str(exc))))
                return
            if req is None:
                return
            first = False
            if await self._dispatch(req, reader, writer, leftover):
                await writer.drain()
                return
            await writer.drain()

    async def _dispatch(
        self, req: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        leftover: bytes,
    ) -> bool:
        """Handle one request; True when the connection must close afterwards."""
        if req.method in ("CONNECT", "GET") and req.path.startswith("/console"):
            await self.console(req, reader, writer, leftover)
            return True
        if req.method == "POST":
            try:
                if req.path.startswith("/json"):
                    body = await self.rpc.handle_jsonrpc(req.body)
                    ctype = "application/json"
                else:
                    body = await self.rpc.handle_xmlrpc(req.body)
                    ctype = "text/xml"
            except RequestParseError as exc:
                writer.write(internal_error(html.escape(str(exc)), version=req.reply_version))
                return True
            headers = [
                ("Connection", "close" if req.close else "keep-alive"),
                ("Cache-Control", "no-cache, no-store"),
                ("Content-Type", ctype),
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Headers", "X-Requested-With"),
            ]
            writer.write(response_bytes(req.reply_version, 200, "OK", headers, body))
            return req.close
        if req.method in ("GET", "HEAD", "PUT", "OPTIONS", "CONNECT"):
            writer.write(forbidden())
            return True
        writer.write(method_not_implemented(req.method, version=req.reply_version))
        return True

    async def _read_request(
        self, reader: asyncio.StreamReader, leftover: bytes, first: bool
    ) -> tuple[HttpRequest | None, bytes]:
        """Parse one request (head + bounded body); ``None`` on a clean EOF between requests."""
        limits = self.limits
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head)
        raw = bytearray(leftover)
        if leftover:  # b"" would mean EOF to h11
            conn.receive_data(leftover)
        loop = asyncio.get_running_loop()
        wait = limits.head_timeout if first else limits.idle_timeout
        deadline = loop.time() + wait
        request: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431:
                    raise _TooLarge() from exc
                if request is None and b"Missing mandatory Host" in str(exc).encode():
                    # xapi accepts HTTP/1.1 without Host; h11 does not, so lend it one.
                    conn = _with_host(bytes(raw), limits.max_head)
                    continue
                raise
            if event is h11.NEED_DATA:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise _Timeout(bool(raw))
                try:
                    data = await asyncio.wait_for(reader.read(_READ_SIZE), remaining)
                except TimeoutError:
                    raise _Timeout(bool(raw)) from None
                if not data:
                    if not raw:
                        return None, b""
                    conn.receive_data(b"")
                    continue
                if request is None:
                    raw += data
                    if len(raw) > limits.max_head + _READ_SIZE:
                        raise _TooLarge()
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
                length = _content_length(event)
                if length is not None and length > limits.max_body:
                    raise RequestParseError("request body too large")
                deadline = loop.time() + limits.body_timeout
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > limits.max_body:
                    raise RequestParseError("request body too large")
            elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                assert request is not None
                return _to_request(request, bytes(body)), conn.trailing_data[0]
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""


def _with_host(raw: bytes, max_head: int) -> h11.Connection:
    end = raw.find(b"\n")
    patched = raw[: end + 1] + b"Host: \r\n" + raw[end + 1 :]
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
    conn.receive_data(patched)
    return conn


def _content_length(event: h11.Request) -> int | None:
    for name, value in event.headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _to_request(event: h11.Request, body: bytes) -> HttpRequest:
    target = event.target.decode("latin-1")
    parts = urllib.parse.urlsplit(target)
    version = event.http_version.decode("ascii")
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers]
    close = version == "1.0"
    cookies: dict[str, str] = {}
    for name, value in headers:
        if name == "connection":
            if value.lower() == "close":
                close = True
            elif value.lower() == "keep-alive":
                close = False
        elif name == "cookie":
            for item in value.split(";"):
                key, sep, val = item.strip().partition("=")
                if sep and key not in cookies:
                    cookies[key] = val
    return HttpRequest(
        method=event.method.decode("ascii", "replace").upper(),
        target=target,
        path=urllib.parse.unquote(parts.path),
        query=urllib.parse.parse_qsl(parts.query, keep_blank_values=True),
        version=version,
        headers=headers,
        body=body,
        close=close,
        cookies=cookies,
    )


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 2.0)
    except (ConnectionError, OSError, TimeoutError, ProtocolError):
        pass
    except Exception:  # ssl shutdown errors come in many types
        pass
