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
from xcpconsole.address import format_hostport
from xcpconsole.errors import NetworkError, TunnelError
from xcpconsole.net.tunnel import console_target, open_tunnel
from xcpconsole.settings import HostSettings
from xcpconsole.trust import Source, TrustStore
from xcpconsole.xapi import ConsoleInfo, XapiSession

SID = "OpaqueRef:5e55a0b1-0000-4000-8000-00000000abcd"


@dataclass
class StubSession:
    settings: HostSettings
    session_id: str = SID
    relogins: list[int] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    #: what find_console answers (None: the console did not move)
    moved_to: ConsoleInfo | None = None
    console: ConsoleInfo | None = None

    async def relogin(self) -> None:
        self.relogins.append(1)

    async def vouched_for(self, host: str, port: int, *, refresh: bool = False) -> TrustStore:
        """The 'master' vouches for the test certificate at any other host:port."""
        store = TrustStore()
        store.add(format_hostport(host, port), self.vouch, Source.master("stub master"))
        return store

    vouch: str = ""

    async def find_console(self, vm: str, protocol: str = "rfb") -> ConsoleInfo:
        self.lookups.append(vm)
        found = self.moved_to or self.console
        assert found is not None
        return found


@pytest.fixture
def cert(tmp_path: Path) -> CertFiles:
    return make_cert(tmp_path, "fake-host")[0]


@pytest.fixture
def fake(cert: CertFiles) -> Iterator[list[TlsPeer]]:
    peers: list[TlsPeer] = []
    yield peers
    for p in peers:
        p.close()


def start(fake: list[TlsPeer], cert: CertFiles, reply: object, *, close_notify: bool = False
          ) -> tuple[TlsPeer, StubSession, ConsoleInfo]:
    peer = TlsPeer(cert, reply=reply, close_notify=close_notify)  # type: ignore[arg-type]
    fake.append(peer)
    settings = HostSettings(url=f"https://127.0.0.1:{peer.port}", user="root", password="pw",
                            fingerprint=cert.fingerprint)
    console = ConsoleInfo("OpaqueRef:c0", "cuuid", "OpaqueRef:v0", "vuuid", "vm", "rfb",
                          f"https://127.0.0.1:{peer.port}/console?ref=OpaqueRef:c0")
    return peer, StubSession(settings, console=console, vouch=cert.fingerprint), console


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
    (500, "not running"), (404, "no console server"), (403, "not open its console"),
    (503, "already in use")])
async def test_error_statuses(fake: list[TlsPeer], cert: CertFiles, status: int,
                              words: str) -> None:
    reply = (f"HTTP/1.0 {status} Whatever\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n"
             "<html><body>x</body></html>").encode()
    _, session, console = start(fake, cert, reply)
    with pytest.raises(TunnelError, match=words) as info:
        await open_tunnel(session, console, timeout=5)  # type: ignore[arg-type]
    assert info.value.status == status and SID not in str(info.value)
    assert session.relogins == []
    # a 500 means "not running here": the console is looked up again, once
    assert session.lookups == (["vuuid"] if status == 500 else [])


async def test_503_names_who_holds_the_console(fake: list[TlsPeer], cert: CertFiles) -> None:
    body = ("<html><body><h1>Connection Limit Exceeded</h1><p>User 'ops &amp; co' is "
            "currently connected to this console.</p></body></html>")
    reply = (f"HTTP/1.1 503 Connection Limit Exceeded\r\nContent-Length: {len(body)}\r\n"
             f"Connection: close\r\n\r\n{body}").encode()
    _, session, console = start(fake, cert, reply)
    with pytest.raises(TunnelError, match="ops & co is using this console") as info:
        await open_tunnel(session, console, timeout=5)  # type: ignore[arg-type]
    assert info.value.status == 503


async def test_500_follows_the_vm_to_its_new_location(fake: list[TlsPeer],
                                                     cert: CertFiles) -> None:
    gone = b"HTTP/1.1 500 Internal Error\r\nConnection: close\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\n\r\nRFB 003.003\n"
    _old, session, console = start(fake, cert, gone)
    new = TlsPeer(cert, reply=ok)
    fake.append(new)
    session.moved_to = ConsoleInfo("OpaqueRef:c1", "cuuid2", "OpaqueRef:v0", "vuuid", "vm",
                                   "rfb", f"https://127.0.0.1:{new.port}/console?ref=OpaqueRef:c1")
    notices: list[str] = []
    reader, writer = await open_tunnel(session, console, timeout=5,  # type: ignore[arg-type]
                                       notice=notices.append)
    assert await asyncio.wait_for(reader.readexactly(12), 5) == b"RFB 003.003\n"
    writer.close()
    assert session.lookups == ["vuuid"]
    assert notices and "no longer running on 127.0.0.1" in notices[0]
    await asyncio.to_thread(new.close)
    assert new.received == [
        f"CONNECT /console?ref=OpaqueRef:c1&session_id={SID} HTTP/1.0\r\n\r\n".encode()]


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
        stale_ref = ConsoleInfo(**{**stale.__dict__, "location": stale.location.replace(
            stale.ref, "OpaqueRef:00000000-0000-4000-8000-000000000000")})
        # a stale location (the VM rebooted or moved) is looked up again and followed
        notices: list[str] = []
        reader, writer = await open_tunnel(xapi, stale_ref, timeout=5, notice=notices.append)
        assert await asyncio.wait_for(reader.readexactly(12), 5) == b"RFB 003.008\n"
        writer.close()
        assert len(notices) == 1 and "no longer running" in notices[0]
        # ... but a console whose VM is gone ends in a 500 TunnelError
        gone = ConsoleInfo(**{**stale_ref.__dict__,
                              "vm_uuid": "00000000-0000-4000-8000-000000000000"})
        with pytest.raises(TunnelError) as info:
            await open_tunnel(xapi, gone, timeout=5)
        assert info.value.status == 500


@pytest.mark.parametrize("close_notify", [True, False])
@pytest.mark.parametrize("tail", [b"", b"RFB 003.008\n"])
async def test_host_closing_right_after_200_is_seen(fake: list[TlsPeer], cert: CertFiles,
                                                    tail: bytes, close_notify: bool) -> None:
    """What xapi does when the console's backend is gone: ``200 OK``, then close.  The
    close must reach whoever reads the tunnel, every time (it was lost in a race)."""
    _, session, console = start(fake, cert, b"HTTP/1.1 200 OK\r\n\r\n" + tail,
                                close_notify=close_notify)
    for _ in range(25):
        reader, writer = await open_tunnel(session, console, timeout=5)  # type: ignore[arg-type]
        try:
            assert await asyncio.wait_for(reader.read(), 5) == tail
        finally:
            writer.close()


async def test_proxied_viewer_closed_when_host_closes_after_200(fake: list[TlsPeer],
                                                                cert: CertFiles) -> None:
    """The proxy's viewers see that close too (they hung before)."""
    from xcpconsole.net.proxy import ConsoleProxy

    _, session, console = start(fake, cert, b"HTTP/1.1 200 OK\r\n\r\nRFB 003.008\n",
                                close_notify=True)
    proxy = ConsoleProxy(session, console, report=lambda _m: None)  # type: ignore[arg-type]
    _, port = await proxy.start("127.0.0.1", 0)
    try:
        for _ in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                assert await asyncio.wait_for(reader.read(), 5) == b"RFB 003.008\n"
            finally:
                writer.close()
    finally:
        await proxy.close()
