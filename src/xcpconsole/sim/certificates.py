"""The ``Certificate`` records of a pool: what each host's server certificate is.

xapi keeps one record of type ``host`` per host (``datamodel_certificate.ml``,
``certificates.ml``): the certificate a client is served when it connects to
that host's management address.  The fingerprints are hex, upper case, colon
separated; ``fingerprint`` is the deprecated name of ``fingerprint_sha256``.
The records are read from the very files the host's TLS listener serves, so
they cannot disagree with what a client sees on the wire.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization


def _hex(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


@dataclass(frozen=True)
class CertificateRecord:
    """One row of xapi's ``Certificate`` table."""

    ref: str
    uuid: str
    host: str
    type: str
    fingerprint_sha256: str
    fingerprint_sha1: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    pem: str
    name: str = ""  # only certificates of type ``ca`` have one


def host_certificate(cert_path: Path, *, ref: str, uuid: str, host: str) -> CertificateRecord:
    """The ``type=host`` record of the certificate in ``cert_path`` (PEM)."""
    pem = cert_path.read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertificateRecord(
        ref=ref, uuid=uuid, host=host, type="host",
        fingerprint_sha256=_hex(hashlib.sha256(der).digest()),
        fingerprint_sha1=_hex(hashlib.sha1(der).digest()),  # xapi reports it too
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        pem=pem.decode("ascii"),
    )
