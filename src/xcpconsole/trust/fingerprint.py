"""SHA-256 certificate fingerprints: how we compute them and how we read them.

Only :mod:`xcpconsole.errors` below it, so :mod:`xcpconsole.settings` can
normalise a ``--fingerprint`` without importing the rest of the trust package.
"""

from __future__ import annotations

import hashlib
import re

from ..errors import ConfigError

__all__ = ["fingerprint_of", "normalise_fingerprint"]


def fingerprint_of(der: bytes) -> str:
    """SHA-256 of a DER certificate as ``AB:CD:...``."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def normalise_fingerprint(text: str) -> str:
    """SHA-256 in any usual spelling -> ``AB:CD:...`` (upper-case colon hex).

    Accepts what people paste: the whole line of ``openssl x509 -noout -fingerprint
    -sha256`` (``sha256 Fingerprint=B4:...``, ``SHA256 Fingerprint=...``), a ``SHA256:``
    or ``SHA-256:`` prefix, hex with colons, spaces or nothing between the bytes, any
    case.  A label naming another digest (``SHA1 Fingerprint=``, ``MD5:``) is refused.
    """
    t = text.strip()
    labelled = _LABELLED.fullmatch(t)
    if labelled and not _HEX_WORD.fullmatch(labelled["label"]):
        label = labelled["label"].lower().replace("-", "").replace(" ", "")
        if "sha256" not in label:
            raise ConfigError(f"fingerprint must be a SHA-256 (openssl x509 -noout "
                              f"-fingerprint -sha256), got {labelled['label']!r}: {text!r}")
        t = labelled["hex"]
    hexdigits = t.replace(":", "").replace(" ", "").upper()
    if len(hexdigits) != 64 or any(c not in "0123456789ABCDEF" for c in hexdigits):
        raise ConfigError(
            f"fingerprint must be a SHA-256 in hex (64 digits, colons allowed), got {text!r}")
    return ":".join(hexdigits[i:i + 2] for i in range(0, 64, 2))


#: ``label=hex`` or ``label: hex`` (openssl's line, ``SHA256:``, the sim's banner)
_LABELLED = re.compile(r"(?P<label>[A-Za-z][A-Za-z0-9 ()_-]*?)\s*[:=]\s*(?P<hex>[0-9A-Fa-f: ]+)")
_HEX_WORD = re.compile(r"[0-9A-Fa-f]+")
