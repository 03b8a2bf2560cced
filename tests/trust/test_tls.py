"""TLS trust: pins, known hosts (TOFU), changed certificates, system CAs, --insecure.

Real TLS servers with certificates made by ``cryptography``; the official
XenAPI SDK over our transport.  The key property: with an untrusted
certificate the server receives *zero* bytes (no password, no session id).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import XenAPI

from tlspeer import CertFiles, TlsPeer, make_cert
from xcpconsole.address import format_hostport
from xcpconsole.cli.common import warn_on_stderr
from xcpconsole.errors import TrustError
from xcpconsole.settings import HostSettings
from xcpconsole.trust import (
    KnownHosts,
    Source,
    TrustStore,
    check_certificate,
    connect_tls_sync,
    create_tls_connection,
    open_tls,
)
from xcpconsole.xapi.transport import TrustedTransport


@pytest.fixture
def certs(tmp_path: Path) -> tuple[CertFiles, CertFiles]:
    return make_cert(tmp_path, "host-a")[0], make_cert(tmp_path, "host-b")[0]


@pytest.fixture
def peer(certs: tuple[CertFiles, CertFiles]) -> Iterator[TlsPeer]:
    p = TlsPeer(certs[0], reply=b"HTTP/1.1 200 OK\r\n\r\n")
    yield p
    p.close()


@pytest.fixture(autouse=True)
def fresh_insecure_warnings() -> None:
    """The warning is shown once per host:port and process; each test starts afresh."""
    import xcpconsole.trust.tls as tls

    tls._warned_insecure.clear()


def settings_for(port: int, tmp_path: Path, **kw: object) -> HostSettings:
    return HostSettings(url=f"https://127.0.0.1:{port}", user="root", password="s3cret-pw",
                        known_hosts=tmp_path / "kh" / "known_hosts", **kw)  # type: ignore[arg-type]


def test_pin_match_and_mismatch(certs: tuple[CertFiles, CertFiles], tmp_path: Path) -> None:
    a, b = certs
    der_a = Path(a.cert).read_bytes()
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(der_a).public_bytes(serialization.Encoding.DER)
    pinned = "127.0.0.1:1"  # the pin names the host of the settings' URL
    check_certificate(der, settings_for(1, tmp_path, fingerprint=a.fingerprint), pinned)
    with pytest.raises(TrustError) as info:
        check_certificate(der, settings_for(1, tmp_path, fingerprint=b.fingerprint), pinned)
    assert a.fingerprint in str(info.value) and b.fingerprint in str(info.value)
    assert "does not match the pinned fingerprint" in str(info.value)


def test_a_pin_names_one_host_but_its_certificate_is_trusted_anywhere(
        certs: tuple[CertFiles, CertFiles], tmp_path: Path) -> None:
    """A pool member has its own certificate: the master's pin must not refuse it as a
    mismatch (the master vouches for it instead); the pinned certificate itself, met
    under another address, is the same host."""
    a, b = certs
    der_a, der_b = _der(a.cert), _der(b.cert)
    s = settings_for(1, tmp_path, fingerprint=a.fingerprint)
    check_certificate(der_a, s, "h.example:443")  # the pinned host by another name
    with pytest.raises(TrustError) as info:
        check_certificate(der_b, s, "member:443")  # nothing vouches for this one
    assert "not signed by a trusted CA and is not known" in str(info.value)
    vouched = TrustStore()
    vouched.add("member:443", b.fingerprint, Source.master("127.0.0.1:1"))
    check_certificate(der_b, s, "member:443", vouched=vouched)
    with pytest.raises(TrustError) as info:
        check_certificate(der_a, settings_for(1, tmp_path), "member:443", vouched=vouched)
    assert "not the one the pool master lists" in str(info.value)
    assert a.fingerprint in str(info.value) and b.fingerprint in str(info.value)
    # a redirected login keeps the pin on the host it was given for
    moved = replace(s, url="https://10.0.0.9:443", pinned_for="127.0.0.1:1")
    assert moved.pin_key == "127.0.0.1:1"
    with pytest.raises(TrustError, match="does not match the pinned"):
        check_certificate(der_b, moved, "127.0.0.1:1")


def test_wrong_pin_sends_nothing_sync(peer: TlsPeer, certs: tuple[CertFiles, CertFiles],
                                      tmp_path: Path) -> None:
    s = settings_for(peer.port, tmp_path, fingerprint=certs[1].fingerprint)
    with pytest.raises(TrustError, match="does not match the pinned"):
        connect_tls_sync("127.0.0.1", peer.port, s, timeout=5)
    sdk = XenAPI.Session(s.url, transport=TrustedTransport(s, 5))
    with pytest.raises(TrustError):
        sdk.xenapi.login_with_password("root", "s3cret-pw", "1.0", "test")
    peer.close()
    assert peer.received and all(r == b"" for r in peer.received)


async def test_wrong_pin_sends_nothing_async(peer: TlsPeer, certs: tuple[CertFiles, CertFiles],
                                             tmp_path: Path) -> None:
    s = settings_for(peer.port, tmp_path, fingerprint=certs[1].fingerprint)
    with pytest.raises(TrustError):
        await create_tls_connection(asyncio.Protocol, "127.0.0.1", peer.port, s, timeout=5)
    ok = settings_for(peer.port, tmp_path, fingerprint=certs[0].fingerprint.lower())
    transport, _ = await create_tls_connection(asyncio.Protocol, "127.0.0.1", peer.port, ok,
                                               timeout=5)
    transport.write(b"PING\r\n\r\n")
    await asyncio.sleep(0.2)
    transport.close()
    await asyncio.to_thread(peer.close)
    assert b"PING\r\n\r\n" in peer.received and peer.received.count(b"") >= 1


async def test_open_tls_streams_after_the_check(peer: TlsPeer, certs: tuple[CertFiles, CertFiles],
                                                tmp_path: Path) -> None:
    bad = settings_for(peer.port, tmp_path, fingerprint=certs[1].fingerprint)
    with pytest.raises(TrustError, match="does not match the pinned"):
        await open_tls("127.0.0.1", peer.port, bad, timeout=5)
    ok = settings_for(peer.port, tmp_path, fingerprint=certs[0].fingerprint)
    reader, writer = await open_tls("127.0.0.1", peer.port, ok, timeout=5)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    assert await asyncio.wait_for(reader.readline(), 5) == b"HTTP/1.1 200 OK\r\n"
    writer.close()
    await asyncio.to_thread(peer.close)
    assert peer.received.count(b"") >= 1


def test_unknown_host_refused_when_not_interactive(
        peer: TlsPeer, certs: tuple[CertFiles, CertFiles], tmp_path: Path) -> None:
    s = settings_for(peer.port, tmp_path)
    with pytest.raises(TrustError) as info:
        connect_tls_sync("127.0.0.1", peer.port, s, timeout=5)
    text = str(info.value)
    assert f"--fingerprint {certs[0].fingerprint}" in text
    assert f"XCP_FINGERPRINT={certs[0].fingerprint}" in text
    assert not s.known_hosts.exists()
    peer.close()
    assert all(r == b"" for r in peer.received)


async def test_unknown_host_refused_async(peer: TlsPeer, certs: tuple[CertFiles, CertFiles],
                                          tmp_path: Path) -> None:
    s = settings_for(peer.port, tmp_path)
    with pytest.raises(TrustError, match=f"--fingerprint {certs[0].fingerprint}"):
        await create_tls_connection(asyncio.Protocol, "127.0.0.1", peer.port, s, timeout=5)
    await asyncio.to_thread(peer.close)
    assert all(r == b"" for r in peer.received)


def test_interactive_without_a_question_refuses_like_a_script(
        peer: TlsPeer, certs: tuple[CertFiles, CertFiles], tmp_path: Path) -> None:
    """The library never reads the terminal: no ``confirm``, nobody to ask."""
    s = settings_for(peer.port, tmp_path, interactive=True)
    with pytest.raises(TrustError, match=f"XCP_FINGERPRINT={certs[0].fingerprint}"):
        connect_tls_sync("127.0.0.1", peer.port, s, timeout=5)
    assert not s.known_hosts.exists()


def test_tofu_remembers_then_changed_certificate_is_refused(
        certs: tuple[CertFiles, CertFiles], tmp_path: Path) -> None:
    a, b = certs
    first = TlsPeer(a)
    questions: list[str] = []
    try:
        s = settings_for(first.port, tmp_path, interactive=True,
                         confirm=lambda q: questions.append(q) or True)
        connect_tls_sync("127.0.0.1", first.port, s, timeout=5).close()
        assert len(questions) == 1 and a.fingerprint in questions[0]
        key = format_hostport("127.0.0.1", first.port)
        assert KnownHosts(s.known_hosts).lookup(key) == (a.fingerprint, 1)
        assert stat.S_IMODE(os.stat(s.known_hosts).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(s.known_hosts.parent).st_mode) == 0o700
        # known now: no question, even non-interactive
        quiet = settings_for(first.port, tmp_path)
        connect_tls_sync("127.0.0.1", first.port, quiet, timeout=5).close()
        assert len(questions) == 1
    finally:
        first.close()
    # same host:port, other certificate
    changed = settings_for(first.port, tmp_path, interactive=True, confirm=lambda q: True)
    with pytest.raises(TrustError) as info:
        der = _der(b.cert)
        check_certificate(der, changed, format_hostport("127.0.0.1", first.port))
    text = str(info.value)
    assert "CHANGED" in text and a.fingerprint in text and b.fingerprint in text


def test_tofu_declined(peer: TlsPeer, tmp_path: Path) -> None:
    s = settings_for(peer.port, tmp_path, interactive=True, confirm=lambda q: False)
    with pytest.raises(TrustError, match="not accepted"):
        connect_tls_sync("127.0.0.1", peer.port, s, timeout=5)
    assert not s.known_hosts.exists()


def test_tofu_asks_once_when_threads_race(certs: tuple[CertFiles, CertFiles],
                                          tmp_path: Path) -> None:
    """Two connections to an unknown host at once: one question, both accepted."""
    a = certs[0]
    der = _der(a.cert)
    asked: list[str] = []
    entered = threading.Event()
    release = threading.Event()

    def confirm(question: str) -> bool:
        asked.append(question)
        entered.set()
        release.wait(5)
        return True

    s = settings_for(1, tmp_path, interactive=True, confirm=confirm)
    errors: list[BaseException] = []

    def check() -> None:
        try:
            check_certificate(der, s, "h:1")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(2)]
    threads[0].start()
    assert entered.wait(5)
    threads[1].start()
    release.set()
    for t in threads:
        t.join(10)
    assert not errors and len(asked) == 1
    assert KnownHosts(s.known_hosts).lookup("h:1") == (a.fingerprint, 1)


def test_insecure_warns_every_time(peer: TlsPeer, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    s = settings_for(peer.port, tmp_path, insecure=True, warn=warn_on_stderr)
    connect_tls_sync("127.0.0.1", peer.port, s, timeout=5).close()
    err = capsys.readouterr().err
    assert "WARNING: --insecure" in err and "NOT checked" in err


def test_insecure_warning_once_per_host_to_the_callback(peer: TlsPeer, tmp_path: Path) -> None:
    shown: list[str] = []
    s = settings_for(peer.port, tmp_path, insecure=True, warn=shown.append)
    for _ in range(2):
        connect_tls_sync("127.0.0.1", peer.port, s, timeout=5).close()
    key = format_hostport("127.0.0.1", peer.port)
    assert shown == [f"--insecure: the certificate of {key} is NOT checked "
                     f"(SHA-256 {peer.files.fingerprint}); "
                     "anyone in the middle can read the password"]


def test_insecure_without_a_callback_logs_a_warning(peer: TlsPeer, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    s = settings_for(peer.port, tmp_path, insecure=True)
    with caplog.at_level(logging.WARNING, logger="xcpconsole.trust"):
        connect_tls_sync("127.0.0.1", peer.port, s, timeout=5).close()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "--insecure" in caplog.text and "NOT checked" in caplog.text


def test_system_ca_verified_host_needs_no_pin(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ca_files, ca_cert, ca_key = make_cert(tmp_path, "test-ca", is_ca=True)
    leaf, _, _ = make_cert(tmp_path, "leaf", ca=(ca_cert, ca_key))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_files.cert))
    p = TlsPeer(leaf)
    try:
        s = settings_for(p.port, tmp_path)  # not interactive, no pin
        connect_tls_sync("127.0.0.1", p.port, s, timeout=5).close()
        assert not s.known_hosts.exists()
    finally:
        p.close()


def test_pin_beats_the_system_cas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CA-valid certificate that is not the pinned one is still refused."""
    ca_files, ca_cert, ca_key = make_cert(tmp_path, "test-ca", is_ca=True)
    leaf, _, _ = make_cert(tmp_path, "leaf", ca=(ca_cert, ca_key))
    other = make_cert(tmp_path, "other")[0]
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_files.cert))
    p = TlsPeer(leaf)
    try:
        s = settings_for(p.port, tmp_path, fingerprint=other.fingerprint)
        with pytest.raises(TrustError, match="does not match the pinned"):
            connect_tls_sync("127.0.0.1", p.port, s, timeout=5)
    finally:
        p.close()
    assert all(r == b"" for r in p.received)


def test_ipv6_key_has_brackets(certs: tuple[CertFiles, CertFiles], tmp_path: Path) -> None:
    s = settings_for(1, tmp_path)
    with pytest.raises(TrustError, match=r"certificate of \[::1\]:8443 is not signed"):
        check_certificate(_der(certs[0].cert), s, format_hostport("::1", 8443))


def _der(pem_path: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificate(pem_path.read_bytes()).public_bytes(
        serialization.Encoding.DER)
