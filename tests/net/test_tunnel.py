"""The /console tunnel: real replies from the simulated host, hostile replies from a fake.

The fake (``tlspeer.TlsPeer``) answers with chosen bytes; a stub session stands
in for XapiSession (the tunnel only needs settings, session_id and relogin).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tlspeer import CertFiles, TlsPeer, make_cert
from xcpconsole.errors import NetworkError, TunnelError
from xcpconsole.net.tunnel import console_target, open_tunnel
from xcpconsole.settings import HostSettings
from xcpconsole.xapi import ConsoleInfo, XapiSession

SID = "OpaqueRef:5e55a0b1-0000-4000-8000-00000000abcd"


@dataclass
class StubSession:
    settings: HostSettings
    session_id: str = SID
    relogins: list[int] = field(default_factory=list)

    async def relogin(self) -> None:
        self.relogins.append(1)


@pytest.fixture
def cert(tmp_path: Path) -> CertFiles:
    return make_cert(tmp_path, "fake-host")[0]


@pytest.fixture
def fake(cert: CertFiles) -> Iterator[list[TlsPeer]]:
    peers: list[TlsPeer] = []
    yield peers
    for p in peers:
        p.close()


def start(fake: list[TlsPeer], cert: CertFiles, reply: object) -> tuple[TlsPeer, StubSession,
                                                                       ConsoleInfo]:
    peer = TlsPeer(cert, reply=reply)  # type: ignore[arg-type]
    fake.append(peer)
    settings = HostSettings(url=f"https://127.0.0.1:{peer.port}", user="root", password="pw",
                            fingerprint=cert.fingerprint)
    console = ConsoleInfo("OpaqueRef:c0", "cuuid", "OpaqueRef:v0", "vuuid", "vm", "rfb",
                          f"https://127.0.0.1:{peer.port}/console?ref=OpaqueRef:c0")
    return peer, StubSession(settings), console


async def test_request_bytes_and_leftover_kept(fake: list[TlsPeer], cert: CertFiles) -> None:
    head = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"
    peer, session, console = start(fake, cert, head + b"RFB 003.008\nmore-bytes")
    reader, writer = await open_tunnel(session, console, timeout=5)  # type: ignore[arg-type]
    got = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert got == b"RFB 003.008\nmore-bytes"
    await asyncio.to_thread(peer.close)
    assert peer.received == [
        f"CONNECT /console?ref=OpaqueRef:c0&session_id={SID} HTTP/1.0\r\n\r\n".encode()]


@pytest.mark.parametrize(("status", "words"), [
    (500, "not running"), (404, "no console server"), (403, "may not"), (503, "already in use")])
async def test_error_statuses(fake: list[TlsPeer], cert: CertFiles, status: int,
                              words: str) -> None:
    reply = (f"HTTP/1.0 {status} Whatever\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n"
             "<html><body>x</body></html>").encode()
    _, session, console = start(fake, cert, reply)
    with pytest.raises(TunnelError, match=words) as info:
        await open_tunnel(session, console, timeout=5)  # type: ignore[arg-type]
    assert info.value.status == status and SID not in str(info.value)
    assert session.relogins == []


async def test_401_relogs_in_once_then_fails(fake: list[TlsPeer], cert: CertFiles) -> None:
    reply = b"HTTP/1.0 401 Unauthorised\r\nWWW-Authenticate: Basic realm=\"x\"\r\n\r\n"
    peer, session, console = start(fake, cert, reply)
    with pytest.raises(TunnelError, match="refused the session") as info:
        await open_tunnel(session, console, timeout=5)  # type: ignore[arg-type]
    assert info.value.status == 401 and session.relogins == [1]
    await asyncio.to_thread(peer.close)
    assert len(peer.received) == 2


@pytest.mark.parametrize("reply", [
    b"garbage garbage\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n",  # then EOF
    b"",  # closed without a word
])
async def test_hostile_or_broken_replies(fake: list[TlsPeer], cert: CertFiles,
                                         reply: bytes) -> None:
    _, session, console = start(fake, cert, reply)
    with pytest.raises(TunnelError):
        await open_tunnel(session, console, timeout=5)  # type: ignore[arg-type]


async def test_silent_host_times_out(fake: list[TlsPeer], cert: CertFiles) -> None:
    _, session, console = start(fake, cert, lambda head: time.sleep(3) or b"")
    with pytest.raises(NetworkError, match="no reply"):
        await open_tunnel(session, console, timeout=0.5)  # type: ignore[arg-type]


def test_console_target() -> None:
    assert console_target("https://10.0.0.5/console?ref=OpaqueRef:x") == (
        "10.0.0.5", 443, "/console?ref=OpaqueRef:x")
    assert console_target("https://h/console?uuid=u", ("h", 8443)) == ("h", 8443,
                                                                       "/console?uuid=u")
    assert console_target("https://other/console?uuid=u", ("h", 8443))[1] == 443
    for bad in ("http://h/console", "https:///console", "https://h/con sole?x",
                "https://h/console?ref=a\r\nX: y", "https://h:99999/console", "ftp://h/"):
        with pytest.raises(TunnelError):
            console_target(bad)


async def test_real_consoles_of_the_sim(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = HostSettings(url=sim_host.url, user=sim_host.user, password=sim_host.password,
                            fingerprint=sim_host.fingerprint, known_hosts=tmp_path / "kh")
    async with await XapiSession.login(settings) as xapi:
        for vm, greeting in (("win-hvm", b"RFB 003.008\n"), ("debian-pv", b"RFB 003.003\n")):
            reader, writer = await open_tunnel(xapi, await xapi.find_console(vm), timeout=5)
            assert await asyncio.wait_for(reader.readexactly(12), 5) == greeting
            writer.close()
        stale = await xapi.find_console("win-hvm")
        gone = ConsoleInfo(**{**stale.__dict__, "location": stale.location.replace(
            stale.ref, "OpaqueRef:00000000-0000-4000-8000-000000000000")})
        with pytest.raises(TunnelError) as info:
            await open_tunnel(xapi, gone, timeout=5)
        assert info.value.status == 500
