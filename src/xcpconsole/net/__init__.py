"""asyncio adapters: the ``/console`` tunnel, the local proxy, text attach, VNC.

TLS trust lives one layer below, in :mod:`xcpconsole.trust`.
"""

from .tunnel import connect_console, open_tunnel

__all__ = [
    "connect_console",
    "open_tunnel",
]
