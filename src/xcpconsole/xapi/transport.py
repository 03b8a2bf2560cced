"""The XML-RPC transport that gives the XenAPI SDK our certificate checks.

``XenAPI.Session(uri, transport=TrustedTransport(settings))``: every HTTPS
connection the SDK opens comes from :func:`xcpconsole.trust.connect_tls_sync`,
so the password leaves only after the certificate passed.
"""

from __future__ import annotations

import http.client
import socket
import xmlrpc.client
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..trust import TrustSettings, TrustStore, connect_tls_sync, unverified_context

__all__ = ["TrustedTransport"]


class _TrustedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS for xmlrpc.client whose socket comes from :func:`connect_tls_sync`."""

    def __init__(self, host: str, port: int, settings: TrustSettings, timeout: float,
                 vouched: TrustStore | None = None) -> None:
        super().__init__(host, port, timeout=timeout, context=unverified_context())
        self._settings = settings
        self._vouched = vouched

    def connect(self) -> None:
        self.sock = connect_tls_sync(self.host, self.port, self._settings,
                                     timeout=float(self.timeout or 30.0), vouched=self._vouched)
        # http.client's own connect() sets this; without it Nagle and delayed ACKs add
        # ~40 ms to every XenAPI call (measured: 44 ms -> 3 ms per get_all_records).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class TrustedTransport(xmlrpc.client.SafeTransport):
    """XML-RPC transport for ``XenAPI.Session(uri, transport=...)`` with our trust rules;
    ``vouched``: what the old master said of a new one's certificate (a master change)."""

    def __init__(self, settings: TrustSettings, timeout: float = 60.0,
                 vouched: TrustStore | None = None) -> None:
        super().__init__()
        self._settings = settings
        self._timeout = timeout
        self._vouched = vouched

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
                                       self._timeout, self._vouched)
        self._connection = host, conn
        return conn

    def connect_now(self, url: str) -> None:
        """Open the connection to ``url`` (so check its certificate) before any request:
        the login then asks for a missing password only after the trust question."""
        conn = self.make_connection(urlsplit(url).netloc)
        if conn.sock is None:
            conn.connect()
