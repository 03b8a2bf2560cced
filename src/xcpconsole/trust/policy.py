"""Whom we trust with the password: the decision, and nothing but the decision.

XenServer hosts ship self-signed certificates, so "verify against the system
CAs" alone would push everyone to ``--insecure``.  We do what OpenSSH does:

1. ``--insecure``: no check, and a warning every time.
2. A fingerprint trusted for the ``host:port`` (``--fingerprint``, a known_hosts
   line, an answer given in this run, or the trusted pool master's record of
   that host): the certificate must be one of them; otherwise it is refused,
   loudly and with both fingerprints when a remembered one changed.
3. Otherwise the system CAs (and the host name) must vouch for it; if they do
   not, an interactive run asks (trust on first use), a non-interactive run
   refuses and says how to pin it.

Pure: no sockets, no files, no terminal.  The adapters (:mod:`.tls`) gather
what is trusted, call :func:`decide` and carry out the answer, so every branch
is tested here with plain values.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from .fingerprint import normalise_fingerprint

__all__ = [
    "Accept",
    "Ask",
    "Decision",
    "Origin",
    "Refuse",
    "Source",
    "TrustStore",
    "decide",
    "uses_system_cas",
]


class Origin(enum.Enum):
    """How a fingerprint came to be trusted."""

    PIN = "pin"                  # --fingerprint / XCP_FINGERPRINT / a profile
    KNOWN_HOSTS = "known_hosts"  # a line of the known_hosts file
    TOFU = "tofu"                # the user said yes in this run
    MASTER = "master"            # the trusted pool master's record of this host


@dataclass(frozen=True)
class Source:
    """Where a trusted fingerprint was learned; ``str()`` is what messages show."""

    origin: Origin
    where: str = ""  # the flag, the known_hosts file, or the master's host:port
    line: int = 0    # the known_hosts line

    @classmethod
    def pin(cls, flag: str = "--fingerprint") -> Source:
        return cls(Origin.PIN, flag)

    @classmethod
    def known_hosts(cls, path: str, line: int) -> Source:
        return cls(Origin.KNOWN_HOSTS, path, line)

    @classmethod
    def tofu(cls, path: str) -> Source:
        return cls(Origin.TOFU, path)

    @classmethod
    def master(cls, master: str) -> Source:
        return cls(Origin.MASTER, master)

    def __str__(self) -> str:
        if self.origin is Origin.KNOWN_HOSTS:
            return f"{self.where}:{self.line}"
        if self.origin is Origin.TOFU:
            return f"accepted in this run, {self.where}"
        if self.origin is Origin.MASTER:
            return f"listed by the pool master {self.where}"
        return self.where


class TrustStore:
    """Trusted fingerprints per ``host:port``, each with the :class:`Source` it came from.

    Flags, known_hosts and (in a pool) the master's host records feed it; a host
    may have several trusted certificates.  The first source of a fingerprint
    is kept, so feed the strongest first.
    """

    def __init__(self) -> None:
        self._by_key: dict[str, dict[str, Source]] = {}

    def add(self, key: str, fingerprint: str, source: Source) -> None:
        """Trust ``fingerprint`` (any usual spelling; ConfigError if it is not one) for ``key``."""
        self._by_key.setdefault(key, {}).setdefault(normalise_fingerprint(fingerprint), source)

    def trusted(self, key: str) -> Mapping[str, Source]:
        """fingerprint -> source for ``key`` (empty when nothing is known)."""
        return dict(self._by_key.get(key, {}))

    def __contains__(self, key: object) -> bool:
        return bool(self._by_key.get(key)) if isinstance(key, str) else False

    def __repr__(self) -> str:
        return f"TrustStore({self._by_key!r})"


@dataclass(frozen=True)
class Accept:
    """Go ahead; ``warning`` (``--insecure``) must be shown to the user."""

    warning: str | None = None


@dataclass(frozen=True)
class Refuse:
    """Do not send a byte; ``message`` tells the user why and what to do."""

    message: str


@dataclass(frozen=True)
class Ask:
    """Trust on first use: ask ``question``; on yes remember ``fingerprint``, else refuse."""

    question: str
    fingerprint: str
    declined: str


Decision = Accept | Refuse | Ask


def uses_system_cas(store: TrustStore, key: str, *, insecure: bool) -> bool:
    """Whether the first handshake should verify against the system CAs.

    Not when ``--insecure`` is on or a fingerprint is trusted for ``key``: then
    :func:`decide` is the only judge (a pinned host may have no CA-valid certificate).
    """
    return not insecure and key not in store


def decide(store: TrustStore, key: str, fingerprint: str, *, insecure: bool,
           ca_verified: bool, interactive: bool, remember_in: str) -> Decision:
    """Accept, refuse or ask about the certificate ``fingerprint`` that ``key`` presented.

    ``ca_verified``: the system CAs vouched for it; ``interactive``: someone can
    be asked; ``remember_in``: the known_hosts file a yes is written to.
    """
    if insecure:
        return Accept(f"--insecure: the certificate of {key} is NOT checked "
                      f"(SHA-256 {fingerprint}); anyone in the middle can read the password")
    trusted = store.trusted(key)
    if trusted:
        if fingerprint in trusted:
            return Accept()
        return Refuse(_mismatch(key, fingerprint, trusted))
    if ca_verified:
        return Accept()
    if interactive:
        return Ask(
            question=(
                f"The certificate of {key} is not signed by a CA this machine trusts.\n"
                f"  SHA-256 fingerprint: {fingerprint}\n"
                "Compare it with the host's (on the host: openssl x509 -noout -fingerprint "
                "-sha256 -in /etc/xensource/xapi-ssl.pem).\n"
                f"Trust it and remember it in {remember_in}? [y/N] "),
            fingerprint=fingerprint,
            declined=f"the certificate of {key} was not accepted")
    return Refuse(
        f"the certificate of {key} is not signed by a trusted CA and is not known "
        f"(SHA-256 {fingerprint}).\nIf that is the host's fingerprint, pin it: "
        f"--fingerprint {fingerprint}  or  XCP_FINGERPRINT={fingerprint}\n"
        "(or run once interactively to remember it in known_hosts).")


def _mismatch(key: str, got: str, trusted: Mapping[str, Source]) -> str:
    """The refusal for a certificate that is none of the trusted ones, by the strongest source."""
    def of(*origins: Origin) -> list[tuple[str, Source]]:
        return [(fp, src) for fp, src in trusted.items() if src.origin in origins]

    pins = of(Origin.PIN)
    if pins:
        return (f"the certificate of {key} does not match the pinned fingerprint:\n"
                + "".join(f"  expected SHA256:{fp}\n" for fp, _ in pins)
                + f"  got      SHA256:{got}\n"
                "Refusing to connect (wrong host, a new certificate, or someone in the middle).")
    remembered = of(Origin.KNOWN_HOSTS, Origin.TOFU)
    if remembered:
        files = ", ".join(dict.fromkeys(src.where for _, src in remembered))
        lines = "that line" if len(remembered) == 1 else "those lines"
        return (f"THE CERTIFICATE OF {key} HAS CHANGED!\n"
                + "".join(f"  remembered SHA256:{fp} ({src})\n" for fp, src in remembered)
                + f"  now        SHA256:{got}\n"
                "Someone may be intercepting the connection, or the host got a new certificate. "
                f"If you are sure it is legitimate, delete {lines} of {files} "
                "or pin the new one with --fingerprint.")
    return (f"the certificate of {key} is not the one the pool master lists for it:\n"
            + "".join(f"  expected SHA256:{fp} ({src})\n" for fp, src in of(Origin.MASTER))
            + f"  got      SHA256:{got}\n"
            "Refusing to connect (a certificate the master does not know of, "
            "or someone in the middle).")
