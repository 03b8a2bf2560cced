"""Relay between one browser WebSocket and one ``/console`` tunnel, in this process.

No process per connection (unlike websockify): the shared byte relay
(:class:`~xcpconsole.relay.Relay`) between the tunnel's streams and a WebSocket end,
plus an idle watchdog.  Back-pressure is end to end: the WebSocket end queues at most
``high_water`` bytes of frames for the browser before the relay stops reading the
tunnel, and the tunnel's writer buffer stops the relay reading the WebSocket.  A
stalled browser therefore stalls the backend instead of growing memory.

For ``rfb`` consoles every byte goes through :class:`~xcpconsole.rfb.framer.RfbRelayFramer`
(the relay's filters), which keeps message boundaries so that the gateway can
implement the XVP extension (power buttons in noVNC) with XenAPI calls.  ``vt100``
consoles are relayed as raw bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from ..errors import XcpConsoleError
from ..relay import Relay, RelayEnd, StreamEnd
from ..rfb.constants import XvpCode
from ..rfb.framer import RfbRelayFramer, xvp_message

log = logging.getLogger(__name__)

PowerAction = Callable[[int], Awaitable[None]]

_orphans: set[asyncio.Task[None]] = set()

CLOSE_NORMAL = 1000
CLOSE_BACKEND_GONE = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_TOO_BIG = 1009
CLOSE_PROTOCOL = 1011
CLOSE_IDLE = 4000
CLOSE_GOING_AWAY = 1001  # the gateway is shutting down: the page reconnects
GOING_AWAY = "gateway shutting down"


@dataclass(frozen=True)
class BridgeLimits:
    chunk: int = 64 * 1024  # largest frame sent to the browser
    idle_timeout: float = 1800.0  # seconds without keyboard/mouse input
    watchdog_tick: float = 5.0
    high_water: int = 128 * 1024  # bytes queued for the browser before the tunnel waits


class WebSocketEnd(RelayEnd):
    """The browser's WebSocket as a relay end.

    A reader task hands each binary message (text too, for ``vt100``) to the relay; a
    sender task sends queued bytes as frames of at most ``chunk`` bytes, in order.
    :meth:`close` stops reading and lets the queue drain; closing the WebSocket itself
    (with a close code) is the bridge's job, once it knows why the relay ended.
    """

    name = "browser"

    def __init__(self, ws: web.WebSocketResponse, *, chunk: int, high_water: int,
                 text_ok: bool) -> None:
        super().__init__()
        self._ws = ws
        self._chunk = chunk
        self._high_water = high_water
        self._text_ok = text_ok
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._paused = False
        self._wakeup = asyncio.Event()
        self._readable = asyncio.Event()
        self._readable.set()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self.bytes_sent = 0
        #: why the browser side ended, when it did
        self.close_code: int | None = None
        self.close_reason = ""

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read_loop(), name="console-up"),
                       loop.create_task(self._send_loop(), name="console-down")]

    async def _read_loop(self) -> None:
        relay = self.relay
        assert relay is not None
        while True:
            await self._readable.wait()
            msg = await self._ws.receive()
            if msg.type == WSMsgType.BINARY:
                data: bytes = msg.data
            elif msg.type == WSMsgType.TEXT and self._text_ok:
                data = msg.data.encode()
            else:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    self.close_code, self.close_reason = CLOSE_NORMAL, "browser closed"
                    relay.eof(self.side)
                elif msg.type == WSMsgType.ERROR:
                    self.close_code, self.close_reason = CLOSE_TOO_BIG, "bad or oversized frame"
                    relay.lost(self.side, None)
                else:
                    self.close_code, self.close_reason = CLOSE_UNSUPPORTED_DATA, \
                        "binary frames only"
                    relay.lost(self.side, None)
                return
            relay.data(self.side, data)

    async def _send_loop(self) -> None:
        relay = self.relay
        assert relay is not None
        try:
            while True:
                while not self._queue:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                data = self._queue.popleft()
                await self._ws.send_bytes(data)
                self._queued -= len(data)
                self.bytes_sent += len(data)
                if self._paused and self._queued <= self._high_water // 2:
                    self._paused = False
                    relay.resume_writing(self.side)
        except (ConnectionError, OSError, RuntimeError) as exc:  # the browser went away
            relay.lost(self.side, exc)

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        chunk = self._chunk
        for i in range(0, len(data), chunk):
            self._queue.append(data[i:i + chunk])
        self._queued += len(data)
        self._wakeup.set()
        if not self._paused and self._queued > self._high_water:
            self._paused = True
            assert self.relay is not None
            self.relay.pause_writing(self.side)

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._tasks:
            self._tasks[0].cancel()

    async def wait_closed(self) -> None:
        try:
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        finally:
            for task in self._tasks:
                task.cancel()


class ConsoleBridge:
    """One browser <-> one tunnel.  :meth:`run` returns when either side is done."""

    def __init__(self, ws: web.WebSocketResponse, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, framer: RfbRelayFramer | None,
                 power: PowerAction | None = None, limits: BridgeLimits = BridgeLimits(),
                 label: str = "console") -> None:
        self._ws = ws
        self._framer = framer
        self._power = power
        self._limits = limits
        self._label = label
        self._power_task: asyncio.Task[None] | None = None
        self._tunnel = StreamEnd(reader, writer, "host", chunk=limits.chunk)
        self._browser = WebSocketEnd(ws, chunk=limits.chunk, high_water=limits.high_water,
                                     text_ok=framer is None)
        self._relay: Relay | None = None
        self.bytes_down = 0
        self.bytes_up = 0
        self.close_code = CLOSE_BACKEND_GONE
        self.close_reason = "console closed"

    async def run(self) -> None:
        framer = self._framer
        relay = self._relay = Relay(
            self._tunnel, self._browser,
            a_to_b=framer.server_data if framer is not None else None,
            b_to_a=self._from_browser if framer is not None else None)
        watchdog = asyncio.create_task(self._watchdog(relay), name="console-idle")
        try:
            result = await relay.run()
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            if self._power_task is not None and not self._power_task.done():
                # A reboot closes the console; the XenAPI call must still finish.
                _orphans.add(self._power_task)
                self._power_task.add_done_callback(_orphans.discard)
        self.bytes_up = relay.received["b"]
        self.bytes_down = self._browser.bytes_sent
        exc = result.error
        if result.reason == "idle timeout":
            self.close_code, self.close_reason = CLOSE_IDLE, "idle timeout"
        elif result.reason == GOING_AWAY:
            self.close_code, self.close_reason = CLOSE_GOING_AWAY, GOING_AWAY
        elif isinstance(exc, XcpConsoleError):
            log.info("%s: closing: %s", self._label, exc)
            self.close_code, self.close_reason = CLOSE_PROTOCOL, "console stream error"
        elif result.first == "b" and self._browser.close_code is not None:
            self.close_code = self._browser.close_code
            self.close_reason = self._browser.close_reason
        elif isinstance(exc, (ConnectionError, OSError)):
            self.close_code, self.close_reason = CLOSE_BACKEND_GONE, "connection lost"
        elif exc is not None:
            log.error("%s: bridge failed", self._label, exc_info=exc)
            self.close_code, self.close_reason = CLOSE_PROTOCOL, "internal error"
        elif result.first == "a":
            self.close_code, self.close_reason = CLOSE_BACKEND_GONE, "console closed by host"
        if not self._ws.closed:
            with contextlib.suppress(Exception):
                await self._ws.close(code=self.close_code,
                                     message=self.close_reason.encode()[:120])

    def going_away(self) -> None:
        """End the console with a WebSocket close 1001 (SIGTERM, a rolling restart)."""
        if self._relay is not None:
            self._relay.close(GOING_AWAY)

    def _from_browser(self, data: bytes) -> bytes:
        """The upstream filter: frame the browser's bytes, answer its XVP requests."""
        framer = self._framer
        assert framer is not None
        out = framer.client_data(data)
        while (event := framer.next_event()) is not None:
            if (event.version != 1 or self._power is None
                    or event.code not in (XvpCode.SHUTDOWN, XvpCode.REBOOT, XvpCode.RESET)
                    or (self._power_task is not None and not self._power_task.done())):
                framer.queue_to_client(xvp_message(XvpCode.FAIL))
            else:
                self._power_task = asyncio.get_running_loop().create_task(
                    self._run_power(event.code))
        self._flush_injected()
        return out

    def _flush_injected(self) -> None:
        framer = self._framer
        assert framer is not None and self._relay is not None
        pending = framer.data_for_client()
        if pending:
            self._relay.send("b", pending)

    async def _run_power(self, code: int) -> None:
        assert self._power is not None and self._framer is not None
        try:
            await self._power(code)
        except XcpConsoleError as exc:
            log.info("%s: XVP action %d failed: %s", self._label, code, exc)
            self._framer.queue_to_client(xvp_message(XvpCode.FAIL))
            self._flush_injected()

    async def _watchdog(self, relay: Relay) -> None:
        idle = self._limits.idle_timeout
        tick = min(self._limits.watchdog_tick, max(idle / 4, 0.05))
        last_seen = -1
        quiet = 0.0
        while True:
            await asyncio.sleep(tick)
            framer = self._framer
            now = framer.input_events if framer is not None else relay.received["b"]
            if now != last_seen:
                last_seen, quiet = now, 0.0
                continue
            quiet += tick
            if quiet >= idle:
                relay.close("idle timeout")
                return
