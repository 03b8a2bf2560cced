"""xcpconsole: VM consoles of XenServer / XCP-ng hosts in one command.

The public API is re-exported here lazily so ``import xcpconsole`` stays cheap.
"""

from __future__ import annotations

from .errors import (
    AmbiguousError,
    AuthError,
    ConfigError,
    LimitExceededError,
    NetworkError,
    NotFoundError,
    ProtocolError,
    TrustError,
    TunnelError,
    UnsupportedError,
    XapiError,
    XcpConsoleError,
)

__version__ = "0.1.0"

__all__ = [
    "AmbiguousError",
    "AuthError",
    "ConfigError",
    "LimitExceededError",
    "NetworkError",
    "NotFoundError",
    "ProtocolError",
    "TrustError",
    "TunnelError",
    "UnsupportedError",
    "XapiError",
    "XcpConsoleError",
    "__version__",
]
