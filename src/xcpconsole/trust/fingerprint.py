"""SHA-256 certificate fingerprints: how we compute them and how we read them.

Only :mod:`xcpconsole.errors` below it, so :mod:`xcpconsole.settings` can
normalise a ``--fingerprint`` without importing the rest of the trust package.
"""

from __future__ import annotations

import hashlib

from ..errors import ConfigError

__all__ = ["fingerprint_of", "normalise_fingerprint"]


def fingerprint_of(der: bytes) -> str:
    """SHA-256 of a DER certificate as ``AB:CD:...``."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def normalise_fingerprint(text: str) -> str:
    """SHA-256 in any usual spelling -> ``AB:CD:...`` (upper-case colon hex).

    Accepts colons or not, spaces, any case and an optional ``SHA256:`` prefix,
    so a fingerprint copied from ``openssl x509 -fingerprint`` or the sim works.
    """
    t = text.strip()
    if t[:7].upper() == "SHA256:":
        t = t[7:]
    elif t[:8].upper() == "SHA-256:":
        t = t[8:]
    hexdigits = t.replace(":", "").replace(" ", "").upper()
    if len(hexdigits) != 64 or any(c not in "0123456789ABCDEF" for c in hexdigits):
        raise ConfigError(
            f"fingerprint must be a SHA-256 in hex (64 digits, colons allowed), got {text!r}")
    return ":".join(hexdigits[i:i + 2] for i in range(0, 64, 2))
