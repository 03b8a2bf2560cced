"""TLS connections whose certificate passed :mod:`.policy`: blocking and asyncio.

Thin adapters: they gather what is trusted (the pinned fingerprint, else the
known_hosts line, plus what the caller vouches for: in a pool, the master's record of
each member's certificate), run the handshake, ask the policy, and carry out its
answer (warn, refuse, or ask the caller's ``confirm`` and remember a yes).  Checks
happen right after the handshake, before any byte (and so before the password
or a session id) is sent.  The library never prints or reads the terminal:
questions go to ``settings.confirm``, warnings to ``settings.warn`` (or the
``xcpconsole.trust`` logger when there is none).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from ..address import format_hostport
from ..errors import NetworkError, TrustError
from .fingerprint import fingerprint_of, normalise_fingerprint
from .known_hosts import KnownHosts
from .policy import Accept, Refuse, Source, TrustStore, decide, uses_system_cas

__all__ = [
    "TrustSettings",
    "check_certificate",
    "connect_tls_sync",
    "create_tls_connection",
    "make_ssl_context",
    "open_tls",
    "trust_store_for",
    "unverified_context",
]

P = TypeVar("P", bound=asyncio.BaseProtocol)

log = logging.getLogger("xcpconsole.trust")

_prompt_lock = threading.Lock()
_warned_insecure: set[str] = set()


class TrustSettings(Protocol):
    """What the adapters read from the caller's settings (a ``HostSettings`` fits)."""

    @property
    def fingerprint(self) -> str | None: ...
    @property
    def pin_key(self) -> str: ...
    @property
    def insecure(self) -> bool: ...
    @property
    def known_hosts(self) -> Path: ...
    @property
    def interactive(self) -> bool: ...
    @property
    def confirm(self) -> Callable[[str], bool] | None: ...
    @property
    def warn(self) -> Callable[[str], None] | None: ...


def trust_store_for(settings: TrustSettings, key: str,
                    vouched: TrustStore | None = None) -> TrustStore:
    """What is trusted for ``key``: the pinned fingerprint (when it pins ``key``), else
    its known_hosts line; and what ``vouched`` (the pool master) says about ``key``.

    A pin replaces known_hosts (a stale line cannot override the flag); the
    file is read at each check, so an answer given in another thread counts.
    """
    store = TrustStore()
    if settings.fingerprint and key == settings.pin_key:
        store.add(key, settings.fingerprint, Source.pin())
    else:
        known = KnownHosts(settings.known_hosts).lookup(key)
        if known:
            store.add(key, known[0], Source.known_hosts(str(settings.known_hosts), known[1]))
    if vouched is not None:
        for fingerprint, source in vouched.trusted(key).items():
            store.add(key, fingerprint, source)
    return store


def _is_pinned_elsewhere(settings: TrustSettings, key: str, got: str) -> bool:
    """The pinned certificate presented by another address than the one pinned (the
    same host reached by another name or IP): a certificate is the host's identity."""
    return bool(settings.fingerprint) and key != settings.pin_key and \
        normalise_fingerprint(settings.fingerprint or "") == got


def make_ssl_context(settings: TrustSettings, host: str, port: int,
                     vouched: TrustStore | None = None) -> ssl.SSLContext:
    """The context for the first handshake with ``host:port``.

    When the certificate is pinned (flag, known host) or ``--insecure`` is on, the
    context does not verify: :func:`check_certificate` must run after the
    handshake (``connect_tls_sync`` / ``open_tls`` do).  Otherwise it verifies
    against the system CAs and the host name.
    """
    key = format_hostport(host, port)
    if not uses_system_cas(trust_store_for(settings, key, vouched), key,
                           insecure=settings.insecure):
        return unverified_context()
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def unverified_context() -> ssl.SSLContext:
    """A TLS 1.2+ client context that checks nothing: the policy judges afterwards."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def check_certificate(der: bytes, settings: TrustSettings, key: str, *,
                      ca_verified: bool = False, vouched: TrustStore | None = None) -> None:
    """Carry out the policy's decision about the certificate ``key`` presented.

    ``key`` is ``host:port`` (``[v6]:port``).  TrustError if refused.  An unknown
    host is offered for trust-on-first-use only when ``settings.interactive``
    and ``settings.confirm`` is given; a yes is remembered in known_hosts.
    """
    got = fingerprint_of(der)
    if not settings.insecure and _is_pinned_elsewhere(settings, key, got):
        return
    decision = decide(trust_store_for(settings, key, vouched), key, got,
                      insecure=settings.insecure,
                      ca_verified=ca_verified,
                      interactive=settings.interactive and settings.confirm is not None,
                      remember_in=str(settings.known_hosts))
    if isinstance(decision, Accept):
        if decision.warning and key not in _warned_insecure:
            _warned_insecure.add(key)
            _warn(settings, decision.warning)
        return
    if isinstance(decision, Refuse):
        raise TrustError(decision.message)
    known = KnownHosts(settings.known_hosts)
    with _prompt_lock:
        if known.lookup(key) is not None:
            # another thread accepted it
            return check_certificate(der, settings, key, vouched=vouched)
        if settings.confirm is not None and settings.confirm(decision.question):
            known.add(key, decision.fingerprint)
            return None
    raise TrustError(decision.declined)


def _warn(settings: TrustSettings, message: str) -> None:
    if settings.warn is not None:
        settings.warn(message)
    else:
        log.warning("%s", message)


class _TrustedHandshake:
    """Try the CA-verified context; when the CAs do not vouch, retry unverified.

    Written once for both adapters: which context to use, when to fall back,
    and the policy check once the handshake is done.
    """

    def __init__(self, host: str, port: int, settings: TrustSettings,
                 vouched: TrustStore | None) -> None:
        self.key = format_hostport(host, port)
        self.settings = settings
        self.vouched = vouched
        self.context = make_ssl_context(settings, host, port, vouched)
        self._fell_back = False

    def fall_back(self, exc: ssl.SSLCertVerificationError) -> None:
        """The CAs refused the certificate: the next attempt is unverified (once)."""
        if self._fell_back:
            raise exc
        self._fell_back = True
        self.context = unverified_context()

    def admit(self, der: bytes | None) -> None:
        """The policy's verdict on the peer certificate; TrustError if refused."""
        if not der:
            raise TrustError("the host presented no certificate")
        check_certificate(der, self.settings, self.key, vouched=self.vouched,
                          ca_verified=self.context.verify_mode != ssl.CERT_NONE)


def connect_tls_sync(host: str, port: int, settings: TrustSettings,
                     timeout: float = 30.0, vouched: TrustStore | None = None) -> ssl.SSLSocket:
    """A blocking TLS socket to ``host:port`` whose certificate passed the trust rules."""
    handshake = _TrustedHandshake(host, port, settings, vouched)
    while True:
        try:
            raw = socket.create_connection((host, port), timeout)
        except OSError as exc:
            raise NetworkError(
                f"cannot connect to {handshake.key}: {exc.strerror or exc}") from exc
        try:
            tls = handshake.context.wrap_socket(raw, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            handshake.fall_back(exc)
            continue
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise NetworkError(f"TLS handshake with {handshake.key} failed: {exc}") from exc
        try:
            handshake.admit(tls.getpeercert(binary_form=True))
        except BaseException:
            tls.close()
            raise
        return tls


async def create_tls_connection(
        protocol_factory: Callable[[], P], host: str, port: int, settings: TrustSettings, *,
        timeout: float = 10.0, vouched: TrustStore | None = None
) -> tuple[asyncio.Transport, P]:
    """``loop.create_connection`` over TLS to ``host:port`` with the certificate checked.

    Returns before anything is written, so the caller's first bytes (a session
    id) only go to a host that passed :func:`check_certificate`.  ``vouched``: what a
    trusted party (the pool master) says this host's certificate is.
    """
    loop = asyncio.get_running_loop()
    handshake = _TrustedHandshake(host, port, settings, vouched)
    while True:
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(protocol_factory, host, port, ssl=handshake.context,
                                       server_hostname=host, ssl_handshake_timeout=timeout),
                timeout)
        except ssl.SSLCertVerificationError as exc:
            handshake.fall_back(exc)
            continue
        except TimeoutError as exc:
            raise NetworkError(f"timed out connecting to {handshake.key}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise NetworkError(f"cannot connect to {handshake.key}: {exc}") from exc
        try:
            tls = transport.get_extra_info("ssl_object")
            handshake.admit(tls.getpeercert(binary_form=True) if tls is not None else None)
        except BaseException:
            transport.abort()
            raise
        return transport, protocol


async def open_tls(host: str, port: int, settings: TrustSettings, *, timeout: float = 10.0,
                   limit: int = 2 ** 16) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio streams over TLS to ``host:port``, certificate checked like the SDK's."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    transport, protocol = await create_tls_connection(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), host, port, settings,
        timeout=timeout)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
