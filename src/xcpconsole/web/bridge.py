"""Relay between one browser WebSocket and one ``/console`` tunnel, in this process.

No process per connection (unlike websockify): one asyncio task per direction and a
watchdog.  Back-pressure is end to end: the downstream task reads the next chunk from
the tunnel only after the previous WebSocket frame has been handed to the transport and
drained when the transport is above its high-water mark, and the upstream task stops
reading the WebSocket while the tunnel's writer drains.  A stalled browser therefore
stalls the backend instead of growing memory.

For ``rfb`` consoles every byte goes through :class:`~xcpconsole.rfb.framer.RfbRelayFramer`, which
keeps message boundaries so that the gateway can implement the XVP extension (power
buttons in noVNC) with XenAPI calls.  ``vt100`` consoles are relayed as raw bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from ..errors import XcpConsoleError
from ..rfb.constants import XvpCode
from ..rfb.framer import RfbRelayFramer, xvp_message

log = logging.getLogger(__name__)

PowerAction = Callable[[int], Awaitable[None]]

_orphans: set[asyncio.Task[None]] = set()

CLOSE_BACKEND_GONE = 1000
CLOSE_PROTOCOL = 1011
CLOSE_IDLE = 4000
CLOSE_UNSUPPORTED_DATA = 1003


@dataclass(frozen=True)
class BridgeLimits:
    chunk: int = 64 * 1024  # largest frame sent to the browser
    idle_timeout: float = 1800.0  # seconds without keyboard/mouse input
    watchdog_tick: float = 5.0


class ConsoleBridge:
    """One browser <-> one tunnel.  :meth:`run` returns when either side is done."""

    def __init__(self, ws: web.WebSocketResponse, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, framer: RfbRelayFramer | None,
                 power: PowerAction | None = None, limits: BridgeLimits = BridgeLimits(),
                 label: str = "console") -> None:
        self._ws, self._reader, self._writer = ws, reader, writer
        self._framer = framer
        self._power = power
        self._limits = limits
        self._label = label
        self._send_lock = asyncio.Lock()  # keeps injected XVP messages between whole messages
        self._activity = 0
        self._power_task: asyncio.Task[None] | None = None
        self.bytes_down = 0
        self.bytes_up = 0
        self.close_code = CLOSE_BACKEND_GONE
        self.close_reason = "console closed"

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._downstream(), name="console-down"),
            asyncio.create_task(self._upstream(), name="console-up"),
            asyncio.create_task(self._watchdog(), name="console-idle"),
        ]
        try:
            done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if isinstance(exc, XcpConsoleError):
                    log.info("%s: closing: %s", self._label, exc)
                    self.close_code, self.close_reason = CLOSE_PROTOCOL, "console stream error"
                elif isinstance(exc, (ConnectionError, OSError)):
                    self.close_code, self.close_reason = CLOSE_BACKEND_GONE, "connection lost"
                elif exc is not None:
                    log.error("%s: bridge failed", self._label, exc_info=exc)
                    self.close_code, self.close_reason = CLOSE_PROTOCOL, "internal error"
        finally:
            for task in tasks:
                task.cancel()
            if self._power_task is not None and not self._power_task.done():
                # A reboot closes the console; the XenAPI call must still finish.
                _orphans.add(self._power_task)
                self._power_task.add_done_callback(_orphans.discard)
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 2)
            if not self._ws.closed:
                with contextlib.suppress(Exception):
                    await self._ws.close(code=self.close_code,
                                         message=self.close_reason.encode()[:120])

    async def _send(self, data: bytes) -> None:
        await self._ws.send_bytes(data)
        self.bytes_down += len(data)

    async def _downstream(self) -> None:
        while True:
            data = await self._reader.read(self._limits.chunk)
            if not data:
                self.close_code, self.close_reason = CLOSE_BACKEND_GONE, "console closed by host"
                return
            async with self._send_lock:
                out = self._framer.server_data(data) if self._framer else data
                if out:
                    await self._send(out)

    async def _upstream(self) -> None:
        while True:
            msg = await self._ws.receive()
            if msg.type == WSMsgType.BINARY:
                data: bytes = msg.data
            elif msg.type == WSMsgType.TEXT and self._framer is None:
                data = msg.data.encode()
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                self.close_code, self.close_reason = 1000, "browser closed"
                return
            elif msg.type == WSMsgType.ERROR:
                self.close_code, self.close_reason = 1009, "bad or oversized frame"
                return
            else:
                self.close_code, self.close_reason = CLOSE_UNSUPPORTED_DATA, "binary frames only"
                return
            self.bytes_up += len(data)
            if self._framer is None:
                self._activity += 1
                self._writer.write(data)
            else:
                out = self._framer.client_data(data)
                if out:
                    self._writer.write(out)
                await self._after_client_data()
            await self._writer.drain()

    async def _after_client_data(self) -> None:
        framer = self._framer
        assert framer is not None
        while (event := framer.next_event()) is not None:
            if (event.version != 1 or self._power is None
                    or event.code not in (XvpCode.SHUTDOWN, XvpCode.REBOOT, XvpCode.RESET)
                    or (self._power_task is not None and not self._power_task.done())):
                framer.queue_to_client(xvp_message(XvpCode.FAIL))
            else:
                self._power_task = asyncio.create_task(self._run_power(event.code))
        await self._flush_injected()

    async def _flush_injected(self) -> None:
        framer = self._framer
        assert framer is not None
        async with self._send_lock:
            pending = framer.data_for_client()
            if pending:
                await self._send(pending)

    async def _run_power(self, code: int) -> None:
        assert self._power is not None and self._framer is not None
        try:
            await self._power(code)
        except XcpConsoleError as exc:
            log.info("%s: XVP action %d failed: %s", self._label, code, exc)
            self._framer.queue_to_client(xvp_message(XvpCode.FAIL))
            with contextlib.suppress(Exception):
                await self._flush_injected()

    async def _watchdog(self) -> None:
        idle = self._limits.idle_timeout
        tick = min(self._limits.watchdog_tick, max(idle / 4, 0.05))
        last_seen = -1
        quiet = 0.0
        while True:
            await asyncio.sleep(tick)
            now = self._activity + (self._framer.input_events if self._framer else 0)
            if now != last_seen:
                last_seen, quiet = now, 0.0
                continue
            quiet += tick
            if quiet >= idle:
                self.close_code, self.close_reason = CLOSE_IDLE, "idle timeout"
                return
