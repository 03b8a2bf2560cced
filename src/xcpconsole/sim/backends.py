"""What the simulated host needs from a console backend.

A real host relays ``/console`` tunnels to QEMU's VNC server (HVM guests) or
to ``vncterm`` (PV guests, control domain).  The simulator mirrors that: a
backend owns one running VM's display and exposes it as unix sockets, one per
console protocol; the ``/console`` handler only ever connects to
:meth:`ConsoleBackend.socket_for`.  Backends are started when their VM starts
and stopped when it stops, so a halted VM's console really stops answering.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import XcpConsoleError

#: Console protocols of the XenAPI ``console`` class the simulator serves.
PROTOCOL_RFB = "rfb"
PROTOCOL_VT100 = "vt100"


class BackendError(XcpConsoleError):
    """A console backend could not start, or has no socket for a protocol."""


@runtime_checkable
class ConsoleBackend(Protocol):
    """One VM's console server (QEMU or the virtual terminal).

    ``start()`` returns once every socket it serves accepts connections (for
    RFB: a client connecting there would read the ``RFB 003.00x`` greeting).
    ``stop()`` is idempotent, must not leave child processes or socket files
    behind, and is bounded in time.  ``socket_for`` raises
    :class:`BackendError` for a protocol the backend does not serve.
    """

    async def start(self) -> None:
        """Start serving; raise :class:`BackendError` if that fails."""
        ...

    async def stop(self) -> None:
        """Stop serving and release every resource (idempotent)."""
        ...

    def socket_for(self, protocol: str) -> Path:
        """Unix socket path serving ``protocol`` (``"rfb"`` or ``"vt100"``)."""
        ...
