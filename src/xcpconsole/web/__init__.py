"""Web console gateway (``xcpconsole serve``): sign-in against the host, VM list, and
browser consoles (noVNC / xterm.js) relayed over WebSockets to ``/console`` tunnels."""

from .app import create_app
from .backend import Backend, default_backend
from .config import GatewayConfig
from .tuning import shrink_tls_read_buffers

__all__ = ["Backend", "GatewayConfig", "create_app", "default_backend",
           "shrink_tls_read_buffers"]
