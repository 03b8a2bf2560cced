"""A simulated pool (``xcpconsole sim --hosts N``) as a subprocess, and byte-level helpers.

``launch_pool(start_sim, 3)`` starts a pool through tests/conftest.py's ``start_sim``
(so it is stopped after the test); ``PoolProcess`` adds what ``sim.json`` says about
each host.  The fixture ``sim_pool`` (tests/sim/conftest.py) shares one 3-host pool
with a test module.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

IO_TIMEOUT = 30.0

OK_REPLY = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"


@dataclass
class PoolHost:
    """One entry of sim.json's ``hosts``."""

    name_label: str
    address: str
    url: str
    fingerprint: str

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port


@dataclass
class PoolProcess:
    """A running pool: the master's SimProcess (tests/conftest.py) and every host."""

    sim: Any  # tests/conftest.py's SimProcess (its url/port/fingerprint are the master's)
    hosts: list[PoolHost]
    info: dict[str, Any]

    @property
    def master(self) -> PoolHost:
        return self.hosts[0]

    @property
    def members(self) -> list[PoolHost]:
        return self.hosts[1:]

    def session(self, url: str | None = None):  # type: ignore[no-untyped-def]
        """An SDK session logged in on the master (or on ``url``)."""
        import XenAPI

        s = XenAPI.Session(url or self.master.url, ignore_ssl=True)
        s.xenapi.login_with_password(self.sim.user, self.sim.password, "2.21", "pool-tests")
        return s


def pool_of(sim: Any) -> PoolProcess:
    """What a started sim's ``sim.json`` says about its hosts."""
    info = json.loads((sim.state_dir / "sim.json").read_text())
    hosts = [PoolHost(h["name_label"], h["address"], h["url"], h["fingerprint"])
             for h in info["hosts"]]
    return PoolProcess(sim, hosts, info)


def launch_pool(start_sim: Callable[..., Any], *extra: str) -> PoolProcess:
    """Start a pool with ``start_sim`` (tests/conftest.py; stopped after the test)."""
    return pool_of(start_sim(*extra))


def tls_connect_to(address: str, port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((address, port), timeout=IO_TIMEOUT)
    return ctx.wrap_socket(raw)


def served_certificate(address: str, port: int) -> bytes:
    """The DER certificate a host actually serves."""
    with tls_connect_to(address, port) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der
    return der


def colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


def sha256_of(der: bytes) -> str:
    return colon_hex(hashlib.sha256(der).digest())


def read_exactly(sock: ssl.SSLSocket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_until(sock: ssl.SSLSocket, marker: bytes, limit: int = 1 << 20) -> bytes:
    data = b""
    while marker not in data and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def read_until_closed(sock: ssl.SSLSocket, limit: int = 1 << 22) -> bytes:
    """Everything until the peer closes (raises on timeout, so a tunnel left open fails)."""
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLError, ConnectionError):
            break
        if not chunk:
            break
        data += chunk
    return data


def connect_console(
    location: str, session_id: str, *, at: tuple[str, int] | None = None
) -> tuple[ssl.SSLSocket, bytes, bytes]:
    """CONNECT to a console ``location`` on the host it names (or on ``at``):
    (socket, reply head up to the blank line, bytes already read after it)."""
    parts = urlsplit(location)
    assert parts.hostname and parts.port
    sock = tls_connect_to(*(at or (parts.hostname, parts.port)))
    target = f"{parts.path}?{parts.query}&session_id={session_id}"
    sock.sendall(f"CONNECT {target} HTTP/1.0\r\n\r\n".encode())
    data = read_until(sock, b"\r\n\r\n")
    head, sep, rest = data.partition(b"\r\n\r\n")
    return sock, head + sep, rest
