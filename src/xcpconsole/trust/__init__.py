"""Whom we trust with the password: certificate policy, known_hosts, trusted TLS.

Below :mod:`xcpconsole.xapi` and :mod:`xcpconsole.net`, which both connect
through it.  :mod:`.policy` decides (pure), :mod:`.known_hosts` remembers,
:mod:`.tls` connects (blocking and asyncio) and carries the decision out.
"""

from .fingerprint import fingerprint_of, normalise_fingerprint
from .known_hosts import KnownHosts
from .policy import Accept, Ask, Decision, Origin, Refuse, Source, TrustStore, decide
from .tls import (
    TrustSettings,
    check_certificate,
    connect_tls_sync,
    create_tls_connection,
    make_ssl_context,
    open_tls,
    trust_store_for,
    unverified_context,
)

__all__ = [
    "Accept",
    "Ask",
    "Decision",
    "KnownHosts",
    "Origin",
    "Refuse",
    "Source",
    "TrustSettings",
    "TrustStore",
    "check_certificate",
    "connect_tls_sync",
    "create_tls_connection",
    "decide",
    "fingerprint_of",
    "make_ssl_context",
    "normalise_fingerprint",
    "open_tls",
    "trust_store_for",
    "unverified_context",
]
