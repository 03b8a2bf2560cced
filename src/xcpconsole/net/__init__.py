"""asyncio adapters: TLS trust, the ``/console`` tunnel, the local proxy, text attach, VNC."""

from .trust import check_certificate, fingerprint_of, make_ssl_context
from .tunnel import connect_console, open_tunnel, relay

__all__ = [
    "check_certificate",
    "connect_console",
    "fingerprint_of",
    "make_ssl_context",
    "open_tunnel",
    "relay",
]
