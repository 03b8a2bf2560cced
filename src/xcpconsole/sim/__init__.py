"""The simulated XenServer / XCP-ng host (``xcpconsole sim``).

An HTTPS server answering XenAPI (XML-RPC and JSON-RPC) and ``/console``
like a real host, with console backends (QEMU, the virtual terminal) on unix
sockets.  A separate house: it imports only ``errors``, ``rfb``, ``http1``, ``address``
and ``relay`` from xcpconsole, so it can never pass its tests by sharing the client's bugs.
"""

from .backends import BackendError, ConsoleBackend
from .http import HttpLimits
from .model import SimModel
from .server import SimConfig, SimHost, run, serve

__all__ = [
    "BackendError",
    "ConsoleBackend",
    "HttpLimits",
    "SimConfig",
    "SimHost",
    "SimModel",
    "run",
    "serve",
]
