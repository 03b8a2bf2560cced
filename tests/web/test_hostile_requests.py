"""Issue 11, findings 9, 10 and 13: hostile bytes in the cookie and the CSRF token, a
HEAD on a one-time link, and the security headers on every answer.

The requests are written byte for byte on a real socket to the gateway (aiohttp's
client would refuse to send non-ASCII header bytes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from xcpconsole.web.auth import COOKIE_NAME
from xcpconsole.web.gateway import GATEWAY

from .fakes import PASSWORD, VMS
from .test_gateway import Gw, make_gw  # noqa: F401 - a fixture

VM = VMS[0]


async def raw(gw: Gw, head: bytes, body: bytes = b"") -> tuple[int, bytes, bytes]:
    """Send one request as written; (status, head, body) of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.client.port)
    try:
        writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                     + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head_out, _, body_out = answer.partition(b"\r\n\r\n")
    return int(head_out.split(b" ", 2)[1]), head_out, body_out


def cookie_of(gw: Gw) -> str:
    return next(c.value for c in gw.client.session.cookie_jar if c.key == COOKIE_NAME)


HOSTILE = ["\u00e9t\u00e9", "\u202e\u0000x", "\udcff".encode("utf-8", "surrogatepass")
           .decode("latin-1"), "x" * 4000]


async def test_non_ascii_cookie_csrf_header_and_field_are_refused_not_500(
        make_gw: Callable[..., Any]) -> None:  # noqa: F811
    gw = await make_gw()
    assert (await gw.login()).status == 303
    sid = cookie_of(gw).encode()
    host = f"127.0.0.1:{gw.client.port}".encode()
    origin = gw.origin.encode()
    token_path = f"/vms/{VM.uuid}/console/vt100/token".encode()
    for text in HOSTILE:
        bad = text.encode("utf-8", "surrogatepass")
        # a cookie of any bytes: treated as no session (a NUL: the HTTP parser's 400)
        status, _, _ = await raw(gw, b"GET /api/vms HTTP/1.1\r\nHost: " + host +
                                 b"\r\nCookie: " + COOKIE_NAME.encode() + b"=" + bad + b"\r\n")
        assert status in (400, 401), text
        # a CSRF header of any bytes on a real session: refused as a bad token
        status, _, body = await raw(
            gw, b"POST " + token_path + b" HTTP/1.1\r\nHost: " + host + b"\r\nOrigin: " +
            origin + b"\r\nCookie: " + COOKIE_NAME.encode() + b"=" + sid +
            b"\r\nX-CSRF-Token: " + bad + b"\r\n")
        assert status in (400, 403), (text, body)
        # and the login form's csrf field
        form = b"username=alice&password=" + PASSWORD.encode() + b"&csrf=" + bad
        status, _, body = await raw(
            gw, b"POST /login HTTP/1.1\r\nHost: " + host + b"\r\nOrigin: " + origin +
            b"\r\nContent-Type: application/x-www-form-urlencoded\r\n", form)
        assert status == 400 and b"Traceback" not in body, (text, body)
    assert gw.host.login_attempts == 1  # only the real sign-in reached the host
    # the gateway still serves the signed-in user
    assert (await gw.client.get("/api/vms")).status == 200


async def test_head_does_not_spend_a_one_time_link(make_gw: Callable[..., Any]) -> None:  # noqa: F811
    gw = await make_gw()
    link = gw.client.app[GATEWAY].add_sign_in_link("alice", PASSWORD, ttl=60)
    for _ in range(3):  # a link previewer checks it
        assert (await gw.client.head(link, allow_redirects=False)).status == 200
    assert gw.host.login_attempts == 0
    resp = await gw.client.get(link, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/vms"


async def test_security_headers_on_refusals_and_no_store_on_json(
        make_gw: Callable[..., Any]) -> None:  # noqa: F811
    gw = await make_gw()
    answers = [await gw.client.post("/login", data={}, headers={"Origin": "http://evil"}),
               await gw.client.get("/nowhere"),
               await gw.client.get("/api/vms")]
    assert [a.status for a in answers] == [403, 404, 401]
    for resp in answers:
        assert "frame-ancestors 'none'" in resp.headers.get("Content-Security-Policy", ""), \
            resp.status
        assert resp.headers.get("X-Content-Type-Options") == "nosniff"
    await gw.login()
    listed = await gw.client.get("/api/vms")
    assert listed.status == 200 and listed.headers["Cache-Control"] == "no-store"


async def test_dns_rebinding_host_names_are_refused(make_gw: Callable[..., Any]) -> None:  # noqa: F811
    """Finding 11: a rebound name passes the Origin check (same origin), not the Host one."""
    gw = await make_gw(allowed_hosts=("gw.example.org",))
    port = gw.client.port
    for host, status in [(f"evil.example:{port}", 421), ("evil.example", 421),
                         (f"GW.example.org:{port}", 200), (f"127.0.0.1:{port}", 200),
                         (f"localhost:{port}", 200), (f"[::1]:{port}", 200),
                         (f"127.0.0.1.evil.example:{port}", 421), ("a b:1", 421)]:
        got, head, _ = await raw(gw, b"GET /login HTTP/1.1\r\nHost: " + host.encode() +
                                 b"\r\n")
        assert got == status, (host, head)
        if got == 421:
            assert b"frame-ancestors 'none'" in head
    # a rebound page's sign-in: its Origin matches its Host, so only the Host check stops it
    evil = f"http://evil.example:{port}"
    got, _, _ = await raw(gw, b"POST /login HTTP/1.1\r\nHost: evil.example:%d\r\nOrigin: "
                          % port + evil.encode() + b"\r\n", b"username=alice")
    assert got == 421 and gw.host.login_attempts == 0
    # an origin the operator allowed brings its host name with it
    other = await make_gw(allowed_origins=("https://console.example.net",))
    got, _, _ = await raw(other, b"GET /login HTTP/1.1\r\nHost: console.example.net\r\n")
    assert got == 200


async def test_cookie_is_secure_behind_a_tls_terminating_proxy(
        make_gw: Callable[..., Any]) -> None:  # noqa: F811
    """Finding 13: behind a reverse proxy that ends TLS the gateway sees plain HTTP; the
    browser's https Origin (an allowed one) still makes the session cookie Secure."""
    gw = await make_gw(allowed_origins=("https://consoles.example.com",))
    resp = await gw.login(origin="https://consoles.example.com")
    assert resp.status == 303 and "Secure" in resp.headers["Set-Cookie"]
    plain = await make_gw()
    resp = await plain.login()
    assert resp.status == 303 and "Secure" not in resp.headers["Set-Cookie"]
