"""Whom we trust with the password: TLS verification shared by XenAPI calls and tunnels.

XenServer hosts ship self-signed certificates, so "verify against the system
CAs" alone would push everyone to ``--insecure``.  We do what OpenSSH does:

1. ``--insecure``: no check, and a warning on stderr every time.
2. ``--fingerprint`` / ``XCP_FINGERPRINT``: the SHA-256 of the DER certificate must match.
3. A host in the known-hosts file: its remembered fingerprint must match; a
   changed certificate is refused loudly, with both fingerprints.
4. Otherwise the system CAs (and the host name) must vouch for it; if they do
   not, an interactive run shows the fingerprint and offers to remember it, a
   non-interactive run refuses and says how to pin it.

Checks happen right after the TLS handshake, before any byte (and so before the
password or a session id) is sent.  The same code serves the synchronous
XenAPI SDK (:class:`TrustedTransport`) and asyncio (:func:`open_tls`).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import socket
import ssl
import sys
import threading
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..errors import ConfigError, NetworkError, TrustError
from ..settings import HostSettings, normalise_fingerprint

__all__ = [
    "KnownHosts",
    "TrustedTransport",
    "check_certificate",
    "connect_tls_sync",
    "create_tls_connection",
    "fingerprint_of",
    "hostport",
    "make_ssl_context",
    "normalise_fingerprint",
    "open_tls",
]

P = TypeVar("P", bound=asyncio.BaseProtocol)

_prompt_lock = threading.Lock()
_warned_insecure: set[str] = set()


def fingerprint_of(der: bytes) -> str:
    """SHA-256 of a DER certificate as ``AB:CD:...``."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def hostport(host: str, port: int) -> str:
    """The key a host has in known_hosts: ``host:port`` (``[v6]:port``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class KnownHosts:
    """``~/.config/xcpconsole/known_hosts``: lines of ``HOST:PORT SHA256:AB:CD:...``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lookup(self, key: str) -> tuple[str, int] | None:
        """(fingerprint, line number) remembered for ``key``, or None."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read known hosts {self.path}: {exc}") from exc
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 2:
                raise ConfigError(f"{self.path}:{number}: want 'HOST:PORT SHA256:...'")
            if fields[0] == key:
                try:
                    return normalise_fingerprint(fields[1]), number
                except ConfigError as exc:
                    raise ConfigError(f"{self.path}:{number}: {exc}") from exc
        return None

    def add(self, key: str, fingerprint: str) -> None:
        """Append an entry; the directory is made private (0700) and the file 0600."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(f"{key} SHA256:{fingerprint}\n")


def _pin_for(settings: HostSettings, key: str) -> tuple[str, str] | None:
    """(expected fingerprint, where it comes from) for ``key``, or None (use system CAs)."""
    if settings.fingerprint:
        return normalise_fingerprint(settings.fingerprint), "--fingerprint"
    known = KnownHosts(settings.known_hosts).lookup(key)
    if known:
        return known[0], f"{settings.known_hosts}:{known[1]}"
    return None


def make_ssl_context(settings: HostSettings, host: str, port: int) -> ssl.SSLContext:
    """The context for the first handshake with ``host:port``.

    When the certificate is pinned (flag, known host) or ``--insecure`` is on, the
    context does not verify: :func:`check_certificate` must run after the
    handshake (``connect_tls_sync`` / ``open_tls`` do).  Otherwise it verifies
    against the system CAs and the host name.
    """
    if settings.insecure or _pin_for(settings, hostport(host, port)):
        return _unverified_context()
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _unverified_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _prompt(question: str) -> bool:
    tty = sys.stdin
    if tty is None or not tty.isatty():
        return False
    sys.stderr.write(question)
    sys.stderr.flush()
    answer = tty.readline()
    return answer.strip().lower() in ("y", "yes")


def check_certificate(der: bytes, settings: HostSettings, key: str) -> None:
    """Decide about a certificate the system CAs did not vouch for; TrustError if refused.

    ``key`` is :func:`hostport`.  Unknown hosts are offered for trust-on-first-use
    only when ``settings.interactive``; the answer is remembered in known_hosts.
    """
    got = fingerprint_of(der)
    if settings.insecure:
        if key not in _warned_insecure:
            _warned_insecure.add(key)
            print(f"xcpconsole: WARNING: --insecure: the certificate of {key} is NOT checked "
                  f"(SHA-256 {got}); anyone in the middle can read the password",
                  file=sys.stderr)
        return
    pin = _pin_for(settings, key)
    if pin is not None:
        want, source = pin
        if got == want:
            return
        if source == "--fingerprint":
            raise TrustError(
                f"the certificate of {key} does not match the pinned fingerprint:\n"
                f"  expected SHA256:{want}\n  got      SHA256:{got}\n"
                "Refusing to connect (wrong host, a new certificate, or someone in the middle).")
        raise TrustError(
            f"THE CERTIFICATE OF {key} HAS CHANGED!\n"
            f"  remembered SHA256:{want} ({source})\n  now        SHA256:{got}\n"
            "Someone may be intercepting the connection, or the host got a new certificate. "
            f"If you are sure it is legitimate, delete that line of {settings.known_hosts} "
            "or pin the new one with --fingerprint.")
    if settings.interactive:
        question = (
            f"The certificate of {key} is not signed by a CA this machine trusts.\n"
            f"  SHA-256 fingerprint: {got}\n"
            "Compare it with the host's (on the host: openssl x509 -noout -fingerprint "
            "-sha256 -in /etc/xensource/xapi-ssl.pem).\n"
            f"Trust it and remember it in {settings.known_hosts}? [y/N] ")
        with _prompt_lock:
            if KnownHosts(settings.known_hosts).lookup(key) is not None:
                return check_certificate(der, settings, key)  # another thread accepted it
            ask = settings.confirm or _prompt
            if ask(question):
                KnownHosts(settings.known_hosts).add(key, got)
                return None
        raise TrustError(f"the certificate of {key} was not accepted")
    raise TrustError(
        f"the certificate of {key} is not signed by a trusted CA and is not known "
        f"(SHA-256 {got}).\nIf that is the host's fingerprint, pin it: "
        f"--fingerprint {got}  or  XCP_FINGERPRINT={got}\n"
        "(or run once interactively to remember it in known_hosts).")


def _peer_der(sock: ssl.SSLSocket | ssl.SSLObject) -> bytes:
    der = sock.getpeercert(binary_form=True)
    if not der:
        raise TrustError("the host presented no certificate")
    return der


def connect_tls_sync(host: str, port: int, settings: HostSettings,
                     timeout: float = 30.0) -> ssl.SSLSocket:
    """A blocking TLS socket to ``host:port`` whose certificate passed the trust rules."""
    key = hostport(host, port)
    ctx = make_ssl_context(settings, host, port)
    for attempt in (1, 2):
        try:
            raw = socket.create_connection((host, port), timeout)
        except OSError as exc:
            raise NetworkError(f"cannot connect to {key}: {exc.strerror or exc}") from exc
        try:
            tls = ctx.wrap_socket(raw, server_hostname=host)
        except ssl.SSLCertVerificationError:
            raw.close()
            if attempt == 2:
                raise
            ctx = _unverified_context()
            continue
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise NetworkError(f"TLS handshake with {key} failed: {exc}") from exc
        if ctx.verify_mode == ssl.CERT_NONE:
            try:
                check_certificate(_peer_der(tls), settings, key)
            except BaseException:
                tls.close()
                raise
        return tls
    raise AssertionError("unreachable")


async def create_tls_connection(
        protocol_factory: Callable[[], P], host: str, port: int, settings: HostSettings, *,
        timeout: float = 10.0) -> tuple[asyncio.Transport, P]:
    """``loop.create_connection`` over TLS to ``host:port`` with the certificate checked.

    Returns before anything is written, so the caller's first bytes (a session
    id) only go to a host that passed :func:`check_certificate` or the CAs.
    """
    loop = asyncio.get_running_loop()
    key = hostport(host, port)
    ctx = make_ssl_context(settings, host, port)
    for attempt in (1, 2):
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(protocol_factory, host, port, ssl=ctx,
                                       server_hostname=host, ssl_handshake_timeout=timeout),
                timeout)
        except ssl.SSLCertVerificationError:
            if attempt == 2:
                raise
            ctx = _unverified_context()
            continue
        except TimeoutError as exc:
            raise NetworkError(f"timed out connecting to {key}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise NetworkError(f"cannot connect to {key}: {exc}") from exc
        if ctx.verify_mode == ssl.CERT_NONE:
            try:
                check_certificate(_peer_der(transport.get_extra_info("ssl_object")),
                                  settings, key)
            except BaseException:
                transport.abort()
                raise
        return transport, protocol
    raise AssertionError("unreachable")


async def open_tls(host: str, port: int, settings: HostSettings, *, timeout: float = 10.0,
                   limit: int = 2 ** 16) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio streams over TLS to ``host:port``, certificate checked like the SDK's."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    transport, protocol = await create_tls_connection(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), host, port, settings,
        timeout=timeout)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class _TrustedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS for xmlrpc.client whose socket comes from :func:`connect_tls_sync`."""

    def __init__(self, host: str, port: int, settings: HostSettings, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=_unverified_context())
        self._settings = settings

    def connect(self) -> None:
        self.sock = connect_tls_sync(self.host, self.port, self._settings,
                                     timeout=float(self.timeout or 30.0))
        # http.client's own connect() sets this; without it Nagle and delayed ACKs add
        # ~40 ms to every XenAPI call (measured: 44 ms -> 3 ms per get_all_records).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class TrustedTransport(xmlrpc.client.SafeTransport):
    """XML-RPC transport for ``XenAPI.Session(uri, transport=...)`` with our trust rules."""

    def __init__(self, settings: HostSettings, timeout: float = 60.0) -> None:
        super().__init__()
        self._settings = settings
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPSConnection:
        if self._connection and host == self._connection[0]:
            cached = self._connection[1]
            assert isinstance(cached, http.client.HTTPSConnection)
            return cached
        chost, self._extra_headers, _x509 = self.get_host_info(host)
        parts = urlsplit("//" + chost)
        if not parts.hostname:
            raise ConfigError(f"bad XenAPI address {chost!r}")
        conn = _TrustedHTTPSConnection(parts.hostname, parts.port or 443, self._settings,
                                       self._timeout)
        self._connection = host, conn
        return conn
