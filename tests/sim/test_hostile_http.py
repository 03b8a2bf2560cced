"""Hostile clients get bounded treatment and never stop the server serving others."""

from __future__ import annotations

import contextlib
import socket

from .conftest import exchange, read_until_close, split_reply, tls_connect


def _still_serving(sim) -> None:  # type: ignore[no-untyped-def]
    s = sim.session()
    assert s.xenapi.VM.get_all()
    s.xenapi.session.logout()


def test_huge_head_is_431_or_closed(sim_host) -> None:  # type: ignore[no-untyped-def]
    request = b"POST / HTTP/1.1\r\nHost: x\r\n" + b"X-Junk: " + b"a" * 200_000 + b"\r\n\r\n"
    with tls_connect(sim_host.port) as sock:
        with contextlib.suppress(ConnectionError, OSError):
            sock.sendall(request)  # the server may close before reading it all
        reply = read_until_close(sock)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    _still_serving(sim_host)


def test_garbage_and_unknown_methods(sim_host) -> None:  # type: ignore[no-untyped-def]
    reply = exchange(sim_host.port, b"\x00\x01GARBAGE\r\n\r\n")
    status, _, body = split_reply(reply)
    assert status == "HTTP/1.1 500 Internal Error"
    assert b"The HTTP headers could not be parsed." in body
    reply = exchange(sim_host.port, b"BREW /console HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 501 Method not implemented\r\n")
    assert b"<p>BREW not supported.<br /></p>" in reply
    reply = exchange(sim_host.port, b"CONNECT /elsewhere HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    reply = exchange(sim_host.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n<bad>")
    assert reply.startswith(b"HTTP/1.1 500 Internal Error\r\n")
    _still_serving(sim_host)


def test_oversized_body_refused(sim_host) -> None:  # type: ignore[no-untyped-def]
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n<?xml"
    reply = exchange(sim_host.port, request)
    assert reply.startswith(b"HTTP/1.1 500 Internal Error\r\n")
    _still_serving(sim_host)


def test_plain_http_on_tls_port(sim_host) -> None:  # type: ignore[no-untyped-def]
    with socket.create_connection(("127.0.0.1", sim_host.port), timeout=30) as raw:
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            while raw.recv(4096):
                pass
        except ConnectionError:
            pass
    _still_serving(sim_host)


def test_slowloris_times_out_while_others_are_served(start_sim) -> None:  # type: ignore[no-untyped-def]
    sim = start_sim("--header-timeout", "1")
    with tls_connect(sim.port) as slow:
        slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
        _still_serving(sim)  # served while the slow client hangs
        reply = read_until_close(slow)
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    _still_serving(sim)
