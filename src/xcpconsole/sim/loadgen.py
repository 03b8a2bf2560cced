"""Load-generating console backends for benchmarks: a byte source and an echo.

They stand where QEMU or vncterm would, behind the same ``/console`` handler,
so a benchmark measures the real path (TLS, CONNECT, relay) and nothing of a
VNC server's own speed.  ``stream`` writes a repeating 1 MiB block as fast as
the reader takes it (flow control via ``pause_writing``); ``echo`` writes back
whatever it reads.  Neither is part of the default inventory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from .backends import PROTOCOL_RFB, PROTOCOL_VT100, BackendError

_BLOCK = bytes(range(256)) * 4096  # 1 MiB, not all zeros so nothing can shortcut it


class _StreamProtocol(asyncio.Protocol):
    """Write ``_BLOCK`` again whenever the transport's buffer drains."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=4 << 20, low=1 << 20)
        self._fill()

    def _fill(self) -> None:
        t = self._transport
        while t is not None and not self._paused and not t.is_closing():
            t.write(_BLOCK)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        loop = asyncio.get_running_loop()
        loop.call_soon(self._fill)

    def data_received(self, data: bytes) -> None:  # input is ignored
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


class _EchoProtocol(asyncio.Protocol):
    """Write back what arrives; stop reading while the peer is not taking the echo."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=1 << 20, low=256 << 10)

    def data_received(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


class LoadBackend:
    """A :class:`~.backends.ConsoleBackend` that streams (``kind="stream"``) or echoes."""

    def __init__(self, *, kind: str, run_dir: Path, name: str) -> None:
        if kind not in ("stream", "echo"):
            raise BackendError(f"unknown load backend kind {kind!r}")
        self.kind = kind
        self._path = run_dir / f"{name}-{kind}.sock"
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        loop = asyncio.get_running_loop()
        factory = _StreamProtocol if self.kind == "stream" else _EchoProtocol
        self._server = await loop.create_unix_server(factory, path=str(self._path))
        os.chmod(self._path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def socket_for(self, protocol: str) -> Path:
        if protocol not in (PROTOCOL_RFB, PROTOCOL_VT100):
            raise BackendError(f"load backend serves no {protocol!r} console")
        return self._path
