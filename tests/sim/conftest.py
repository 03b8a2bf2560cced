"""Helpers for talking to the simulated host at the byte level (raw TLS sockets)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

import pytest

IO_TIMEOUT = 30.0  # generous: a bound against hangs, never asserted on


def tls_connect(port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    return ctx.wrap_socket(raw)


def read_exactly(sock: ssl.SSLSocket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_until_close(sock: ssl.SSLSocket, limit: int = 1 << 20) -> bytes:
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


def exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` on a fresh TLS connection and read until the server closes."""
    with tls_connect(port) as sock:
        sock.sendall(request)
        return read_until_close(sock)


def split_reply(reply: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return lines[0], headers, body


@pytest.fixture
def consoles_by_vm(sim_host) -> Callable[[], dict[str, list[dict]]]:  # type: ignore[no-untyped-def]
    """Current console records keyed by VM name_label (read with the official SDK)."""

    def read() -> dict[str, list[dict]]:
        s = sim_host.session()
        try:
            vms = s.xenapi.VM.get_all_records()
            out: dict[str, list[dict]] = {}
            for ref, rec in s.xenapi.console.get_all_records().items():
                out.setdefault(vms[rec["VM"]]["name_label"], []).append(dict(rec, ref=ref))
            return out
        finally:
            s.xenapi.session.logout()

    return read


@pytest.fixture(scope="module")
def sim_pool(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One simulated 3-host pool (``--hosts 3``, default pool inventory) per test module,
    as a ``simpool.PoolProcess``.  Tests must leave the master and pool options as found."""
    from simproc import launch_sim

    from .simpool import pool_of

    sim = launch_sim(tmp_path_factory.mktemp("pool"), "--hosts", "3")
    try:
        yield pool_of(sim)
    finally:
        sim.stop()
