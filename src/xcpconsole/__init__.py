"""xcpconsole: VM consoles of XenServer / XCP-ng hosts in one command.

The public API is re-exported here; all but the errors lazily (PEP 562), so
``import xcpconsole`` stays cheap and a command imports only what it uses::

    from xcpconsole import XapiSession, load_settings, open_tunnel, open_vnc
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    AmbiguousError,
    AuthError,
    ConfigError,
    ConsoleForbiddenError,
    LimitExceededError,
    NetworkError,
    NotFoundError,
    ProtocolError,
    TrustError,
    TunnelError,
    UnsupportedError,
    UsageError,
    XapiError,
    XcpConsoleError,
)

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first use)
_LAZY = {
    "HostSettings": "xcpconsole.settings",
    "load_settings": "xcpconsole.settings",
    "XapiSession": "xcpconsole.xapi",
    "ConsoleInfo": "xcpconsole.xapi",
    "VmInfo": "xcpconsole.xapi",
    "open_tunnel": "xcpconsole.net.tunnel",
    "connect_console": "xcpconsole.net.tunnel",
    "open_vnc": "xcpconsole.net.vnc",
    "VncClient": "xcpconsole.net.vnc",
    "ConsoleProxy": "xcpconsole.net.proxy",
    "serve_proxy": "xcpconsole.net.proxy",
    "attach": "xcpconsole.net.attach",
    "Relay": "xcpconsole.relay",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xcpconsole' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AmbiguousError",
    "AuthError",
    "ConfigError",
    "ConsoleForbiddenError",
    "LimitExceededError",
    "NetworkError",
    "NotFoundError",
    "ProtocolError",
    "TrustError",
    "TunnelError",
    "UnsupportedError",
    "UsageError",
    "XapiError",
    "XcpConsoleError",
    "__version__",
    *_LAZY,
]
