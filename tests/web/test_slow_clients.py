"""Slowloris and friends against a real ``xcpconsole serve`` (finding 2 of the hardening
issue): half-sent requests from one address or many cannot take the gateway down.

The gateway runs with a small open-files limit (``prlimit``), as a busy one would meet
it; the attackers use other loopback addresses (127.0.0.2...) than the real user.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from .conftest import GatewayProcess, SimProcess, launch_gateway

HALF = b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # never finished


def attackers(gw: GatewayProcess, sources: list[str], each: int) -> list[socket.socket]:
    port = urlsplit(gw.url).port
    out = []
    for source in sources:
        for _ in range(each):
            s = socket.socket()
            s.bind((source, 0))
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
                s.sendall(HALF)
            except OSError:
                s.close()
                continue
            out.append(s)
    return out


def answer(s: socket.socket, timeout: float) -> bytes | None:
    """What the gateway sent before closing (b"" closed silently, None: still open)."""
    s.settimeout(timeout)
    got = b""
    try:
        while chunk := s.recv(4096):
            got += chunk
    except TimeoutError:
        return got or None
    except OSError:
        pass
    return got


def login_page_status(gw: GatewayProcess) -> int:
    try:
        with urllib.request.urlopen(gw.url + "/login", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_slowloris_from_one_address_and_from_many(sim_host: SimProcess, tmp_path: Path) -> None:
    gw = launch_gateway(sim_host, tmp_path, "--head-timeout", "2",
                        "--max-connections-per-address", "40", "--max-connections", "1000",
                        wrap=("prlimit", "--nofile=300:300"))
    socks: list[socket.socket] = []
    try:
        # one address: past its 40 connections each gets one 503 line at once
        socks = attackers(gw, ["127.0.0.2"], 300)
        refused = [a for a in (answer(s, 0.5) for s in socks[40:]) if a is not None]
        assert len(refused) >= 200 and all(a.startswith(b"HTTP/1.1 503") for a in refused)
        assert login_page_status(gw) == 200  # the real user is not affected
        # the 40 admitted ones are cut at the head timeout
        assert all(answer(s, 10) is not None for s in socks[:40])
        for s in socks:
            s.close()
        # many addresses: the total cap (the open-files limit holds (300 - 64) / 2) holds
        socks = attackers(gw, [f"127.0.0.{n}" for n in range(2, 12)], 20)
        answers = [answer(s, 0.5) for s in socks]
        assert sum(a is not None and a.startswith(b"HTTP/1.1 503") for a in answers) >= 50
        deadline = time.monotonic() + 10  # once the head timeout cut them, all is well
        while login_page_status(gw) != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert login_page_status(gw) == 200
        log = gw.log.read_text(errors="replace")
        assert "Traceback" not in log and len(log) < 20_000, log[-2000:]
    finally:
        for s in socks:
            s.close()
        gw.stop()


def test_a_dripped_body_gets_408(sim_host: SimProcess, tmp_path: Path) -> None:
    gw = launch_gateway(sim_host, tmp_path, "--body-timeout", "1")
    try:
        port = urlsplit(gw.url).port
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: " % port
                      + gw.url.encode() + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: 1000\r\n\r\nusername=a")
            got = answer(s, 10)
        assert got is not None and got.startswith(b"HTTP/1.1 408"), got
        assert login_page_status(gw) == 200
    finally:
        gw.stop()
