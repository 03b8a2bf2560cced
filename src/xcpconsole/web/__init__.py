"""Web console gateway (``xcpconsole serve``): sign-in against the host, VM list, and
browser consoles (noVNC / xterm.js) relayed over WebSockets to ``/console`` tunnels."""

from ..rfb.framer import RfbRelayFramer
from .app import Backend, GatewayConfig, create_app, default_backend

__all__ = ["Backend", "GatewayConfig", "RfbRelayFramer", "create_app", "default_backend"]
