"""What ``xcpconsole serve`` checks before it takes sign-ins: the host answers, and its
certificate passes the trust rules; and whether the listen address leaks passwords.

Without the check an unreachable host or an unpinned certificate shows only when an end
user signs in, who can do nothing about it.  The check needs no credentials: a TLS
handshake judged by :mod:`xcpconsole.trust` (the same rules as every sign-in), then one
``GET /`` whose status line proves an HTTP server (xapi, or the simulated host) answers
on that connection.  Any status will do: xapi answers ``/`` with its welcome page, the
simulated host with 403; neither needs a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress

from ..address import format_host, format_hostport
from ..errors import NetworkError, ProtocolError
from ..http1 import parse_status_line
from ..settings import HostSettings
from ..trust.tls import open_tls

__all__ = ["check_host", "is_loopback", "plain_http_warning"]

#: the status line is all the check reads; a longer first line is not an HTTP server
_MAX_STATUS_LINE = 1024


async def check_host(settings: HostSettings, timeout: float = 10.0) -> None:
    """Connect to the host as a sign-in would and ask for ``/``; return when it answered.

    TrustError (exit code 4) when its certificate is refused, NetworkError (1) when it
    cannot be reached or does not answer HTTP within ``timeout`` seconds per step.
    """
    host, port = settings.host, settings.port
    key = format_hostport(host, port)
    reader, writer = await open_tls(host, port, settings, timeout=timeout,
                                    limit=_MAX_STATUS_LINE)
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {format_host(host)}\r\n"
                     "User-Agent: xcpconsole-serve-check\r\nConnection: close\r\n\r\n"
                     .encode("ascii", "replace"))
        line = await asyncio.wait_for(_status_line(reader), timeout)
        parse_status_line(line.rstrip(b"\r\n"))
    except TimeoutError as exc:
        raise NetworkError(f"{key} accepted TLS but did not answer an HTTP request within "
                           f"{timeout:g} s") from exc
    except (ConnectionError, OSError) as exc:
        raise NetworkError(f"{key} closed the connection before answering: {exc}") from exc
    except ProtocolError as exc:
        raise NetworkError(f"{key} does not answer like a XenServer host: {exc}") from exc
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _status_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError("the connection closed before an HTTP status line") from exc
    except asyncio.LimitOverrunError as exc:
        raise ProtocolError("no HTTP status line in its first "
                            f"{_MAX_STATUS_LINE} bytes") from exc


def is_loopback(listen_host: str) -> bool:
    """Only this machine can connect to ``listen_host`` (a wildcard or a name is not)."""
    if listen_host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(listen_host.strip("[]")).is_loopback
    except ValueError:
        return False


#: what ``serve`` offers against it
SERVE_HTTPS_ADVICE = ("serve HTTPS with --tls-cert CERT.pem --tls-key KEY.pem, or listen on "
                      "127.0.0.1 behind a TLS reverse proxy (and give it --allowed-origin)")


def plain_http_warning(listen_host: str, listen_port: int, command: str,
                       advice: str = SERVE_HTTPS_ADVICE) -> str | None:
    """The warning for sign-ins over plain HTTP on an address other machines reach."""
    if is_loopback(listen_host):
        return None
    where = format_hostport(listen_host or "0.0.0.0", listen_port)
    return (f"{command}: WARNING: listening on {where} over plain HTTP: every sign-in sends a "
            f"host password across the network in clear text.\n"
            f"{command}: WARNING: {advice}.")
