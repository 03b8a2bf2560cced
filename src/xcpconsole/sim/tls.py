"""The simulated host's TLS identity: a self-signed certificate, like a fresh XenServer's.

A real host generates a self-signed RSA certificate at install time and keeps
it; clients pin it by fingerprint.  The simulator does the same in its state
directory so the fingerprint survives restarts (and tests can check pinning).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ..errors import ConfigError

CERT_NAME = "sim-cert.pem"
KEY_NAME = "sim-key.pem"


def fingerprint_of_der(der: bytes) -> str:
    """SHA-256 of a DER certificate as upper-case colon-separated hex (``AB:CD:...``)."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def ensure_certificate(state_dir: Path, hostname: str) -> tuple[Path, Path]:
    """Create ``sim-cert.pem``/``sim-key.pem`` in ``state_dir`` unless they exist."""
    cert_path, key_path = state_dir / CERT_NAME, state_dir / KEY_NAME
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    names: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    _write_certificate(cert_path, key_path, hostname, names)
    return cert_path, key_path


def ensure_host_certificate(directory: Path, address: str) -> tuple[Path, Path]:
    """A pool host's own key pair and certificate (CN and SAN = its ``address``).

    Like a real host's, it is made once and kept in ``directory`` (so its
    fingerprint is stable across restarts); it is made again only when it no
    longer names ``address``.
    """
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    bare = address.strip("[]")
    if cert_path.exists() and key_path.exists() and _names_address(cert_path, bare):
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_certificate(cert_path, key_path, bare, [_general_name(bare)])
    return cert_path, key_path


def _general_name(address: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        return x509.DNSName(address)


def _names_address(cert_path: Path, address: str) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound, OSError):
        return False
    return _general_name(address) in list(san)


def _write_certificate(
    cert_path: Path, key_path: Path, common_name: str, names: list[x509.GeneralName]
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    # the key first, then the certificate: a run that stops between them (a full disk)
    # leaves no half pair, since ensure_* needs both files
    _write_whole(key_path, key_pem, 0o600)
    _write_whole(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_whole(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` all at once or not at all (a temporary file renamed over it); a
    failure is a one-line :class:`ConfigError` naming the file, and leaves nothing."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def certificate_fingerprint(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return fingerprint_of_der(cert.public_bytes(serialization.Encoding.DER))


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) serving the host certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path)
    return ctx
