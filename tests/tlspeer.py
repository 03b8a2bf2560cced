"""A tiny TLS server for client tests: serves a chosen certificate, records what it got.

Certificates come from ``cryptography`` (self-signed, or signed by a throw-away
CA for the "system CAs vouch for it" path).  The server runs in a thread; each
connection gets ``reply`` (bytes, or a callable of the received request head)
and its received bytes are kept in ``received`` so a test can prove that
nothing (no password, no session id) was sent before the certificate check.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class CertFiles:
    cert: Path
    key: Path
    fingerprint: str


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


Issuer = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def make_cert(directory: Path, name: str, *, ca: Issuer | None = None,
              is_ca: bool = False) -> tuple[CertFiles, x509.Certificate,
                                            ec.EllipticCurvePrivateKey]:
    """A certificate for localhost/127.0.0.1 (self-signed unless ``ca`` is given)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    issuer_cert, issuer_key = ca if ca else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if not is_ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    else:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    cert = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    der = cert.public_bytes(serialization.Encoding.DER)
    fp = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    return CertFiles(cert_path, key_path, fp), cert, key


@dataclass
class TlsPeer:
    """A threaded TLS server on ``host:port`` (port 0: any); stop with :meth:`close`."""

    files: CertFiles
    reply: bytes | Callable[[bytes], bytes] = b""
    received: list[bytes] = field(default_factory=list)
    port: int = 0
    host: str = "127.0.0.1"
    #: end with a TLS close_notify (as an asyncio or OpenSSL server closing cleanly does)
    close_notify: bool = False
    #: send the reply one byte every ``drip`` seconds (a host that never quite answers)
    drip: float = 0.0

    def __post_init__(self) -> None:
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(self.files.cert, self.files.key)
        self._sock = socket.create_server((self.host, self.port))
        self.port = self._sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        got = bytearray()
        raw.settimeout(5)
        try:
            with self._ctx.wrap_socket(raw, server_side=True) as tls:
                while b"\r\n\r\n" not in got:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                if got:
                    reply = self.reply(bytes(got)) if callable(self.reply) else self.reply
                    if self.drip:
                        for i in range(len(reply)):
                            if self._stop:
                                return
                            tls.sendall(reply[i:i + 1])
                            time.sleep(self.drip)
                    else:
                        tls.sendall(reply)
                    if self.close_notify:
                        tls.unwrap().close()
                        return
                    tls.shutdown(socket.SHUT_RDWR)
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.received.append(bytes(got))

    def close(self) -> None:
        self._stop = True
        self._sock.close()
