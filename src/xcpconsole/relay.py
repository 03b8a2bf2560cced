"""The one byte relay: two ends, back-pressure both ways, one closing policy.

Every place that copies a console's bytes between two connections uses it: the local
proxy (viewer <-> tunnel), the web gateway's bridge (WebSocket <-> tunnel, through the
RFB framer), ``attach`` (terminal <-> tunnel) and the simulated host's ``/console``
handler (client <-> QEMU or vncterm socket).

An end is anything that can deliver bytes to the relay and take bytes from it:
:class:`TransportEnd` is an asyncio Protocol on a transport (no task per chunk: the
event loop's ``data_received`` hands each chunk straight to the other end's
``write``), :class:`StreamEnd` adapts a ``StreamReader``/``StreamWriter`` pair; the web
gateway adds a WebSocket end and ``attach`` a terminal end.  Back-pressure: an end
whose outgoing buffer is full calls :meth:`Relay.pause_writing`, which pauses reading
on the other end until it calls :meth:`Relay.resume_writing`; memory stays bounded
by the ends' high-water marks whatever the speeds.

Closing: when one end's input ends (EOF), the other end is told
(:meth:`RelayEnd.end_of_input`).  If it can stay open — a TCP or unix socket passes the
half-close on; a terminal simply has nothing more to type — and ``grace`` is positive,
the other direction keeps flowing for at most ``grace`` seconds; otherwise (a TLS
stream cannot be half-closed) both ends close at once.  A lost connection, an
exception from a filter or :meth:`Relay.close` end everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

__all__ = ["Filter", "Relay", "RelayEnd", "RelayResult", "StreamEnd", "TransportEnd"]

log = logging.getLogger(__name__)

#: Rewrites one chunk on its way through (the RFB framer); may raise to end the relay.
Filter = Callable[[bytes], bytes]

DEFAULT_CHUNK = 256 * 1024
DEFAULT_HIGH_WATER = 256 * 1024
CLOSE_WAIT = 2.0


@dataclass(frozen=True)
class RelayResult:
    """How a relay ended: ``first`` is the end whose input ended or failed first
    (``"a"``, ``"b"``) or ``"closed"`` (:meth:`Relay.close`), ``reason`` says how."""

    first: str
    reason: str
    error: BaseException | None
    a_to_b: int  # bytes received from a (before its filter)
    b_to_a: int


class RelayEnd:
    """One end of a :class:`Relay`.  Subclasses implement the I/O methods and report
    what happens through ``self.relay`` (``data``, ``eof``, ``lost``, ``pause_writing``,
    ``resume_writing``) once :meth:`start` has been called."""

    name = "end"

    def __init__(self) -> None:
        self.relay: Relay | None = None
        self.side = ""

    def bind(self, relay: Relay, side: str) -> None:
        self.relay, self.side = relay, side

    def start(self) -> None:
        """Begin delivering input to the relay."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def end_of_input(self) -> bool:
        """The other end's input ended: pass a half-close on if possible.  True if this end
        stays open to go on sending (the relay then lets it, within its grace)."""
        return False

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    async def wait_closed(self) -> None:
        return None


class Relay:
    """Copies bytes between ends ``a`` and ``b`` until both are done (see the module doc)."""

    def __init__(self, a: RelayEnd, b: RelayEnd, *, a_to_b: Filter | None = None,
                 b_to_a: Filter | None = None, grace: float = 0.0) -> None:
        self._ends = {"a": a, "b": b}
        self._other = {"a": b, "b": a}
        self._filters = {"a": a_to_b, "b": b_to_a}
        self.received = {"a": 0, "b": 0}
        self.sent = {"a": 0, "b": 0}  # bytes written to each end
        self.grace = grace
        self._input_done: set[str] = set()
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._first: str | None = None  # the end whose input ended or failed first
        self._end: tuple[str, BaseException | None] = ("", None)
        self._grace_timer: asyncio.TimerHandle | None = None
        a.bind(self, "a")
        b.bind(self, "b")

    # -- the caller's side --------------------------------------------------------------
    def send(self, side: str, data: bytes) -> None:
        """Write ``data`` to end ``side`` ("a" or "b"), in order with relayed bytes."""
        if data and not self._done.done():
            self.sent[side] += len(data)
            self._ends[side].write(data)

    def close(self, reason: str = "closed") -> None:
        """End the relay now (both ends close once :meth:`run` resumes)."""
        self._finish("closed", reason, None)

    @property
    def done(self) -> bool:
        return self._done.done()

    def input_ended(self, side: str) -> bool:
        """Whether end ``side`` ("a" or "b") closed its input (EOF)."""
        return side in self._input_done

    async def run(self) -> RelayResult:
        """Start both ends and relay until done; the ends are closed on return."""
        try:
            for end in self._ends.values():
                if not self._done.done():
                    end.start()
            await self._done
        finally:
            if self._grace_timer is not None:
                self._grace_timer.cancel()
            self._finish("closed", "cancelled", None)
            for end in self._ends.values():
                end.close()
            for end in self._ends.values():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(end.wait_closed(), CLOSE_WAIT)
        reason, error = self._end
        return RelayResult(self._first or "closed", reason, error, self.received["a"],
                           self.received["b"])

    # -- what the ends report --------------------------------------------------------------
    def data(self, side: str, data: bytes) -> None:
        if self._done.done():
            return
        self.received[side] += len(data)
        flt = self._filters[side]
        if flt is not None:
            try:
                data = flt(data)
            except Exception as exc:  # the filter's verdict on hostile bytes ends the relay
                self._finish(side, f"{self._ends[side].name}: {exc}", exc)
                return
        if data:  # even if the filter just closed the relay: what it let through goes out
            other = "b" if side == "a" else "a"
            self.sent[other] += len(data)
            self._other[side].write(data)

    def eof(self, side: str) -> None:
        if self._done.done() or side in self._input_done:
            return
        self._input_done.add(side)
        if self._first is None:
            self._first = side
        if len(self._input_done) == 2:
            self._finish(side, "both closed", None)
            return
        if self.grace > 0 and self._other[side].end_of_input():
            loop = asyncio.get_running_loop()
            self._grace_timer = loop.call_later(
                self.grace, self._finish, side, "half-close grace over", None)
            return
        self._finish(side, f"{self._ends[side].name} closed", None)

    def lost(self, side: str, exc: BaseException | None) -> None:
        reason = f"{self._ends[side].name} lost" + (f": {exc}" if exc else "")
        self._finish(side, reason, exc)

    def pause_writing(self, side: str) -> None:
        """End ``side`` cannot take more for now: stop reading the other one."""
        self._other[side].pause_reading()

    def resume_writing(self, side: str) -> None:
        self._other[side].resume_reading()

    def _finish(self, side: str, reason: str, exc: BaseException | None) -> None:
        if self._done.done():
            return
        if self._first is None and side != "closed":
            self._first = side
        self._end = (reason, exc)
        self._done.set_result(None)


class TransportEnd(asyncio.Protocol, RelayEnd):
    """An asyncio Protocol on a stream transport (TCP, unix, TLS).

    It may be made before its transport (as a server's protocol factory product) and
    before its relay; until :meth:`start`, it keeps reading paused and remembers an EOF
    or a lost connection, which it reports at start.  ``on_connect`` is called with the
    transport when it is made (the proxy opens the tunnel then).  ``keep_open``: stay
    open when the other end's input ends even where no half-close can be passed on (as
    :class:`StreamEnd`).
    """

    def __init__(self, name: str = "peer", *, high_water: int = DEFAULT_HIGH_WATER,
                 on_connect: Callable[[asyncio.Transport], None] | None = None,
                 keep_open: bool = False) -> None:
        RelayEnd.__init__(self)
        self.name = name
        self.transport: asyncio.Transport | None = None
        self._high_water = high_water
        self._keep_open = keep_open
        self._on_connect = on_connect
        self._started = False
        self._early: tuple[str, BaseException | None] | None = None
        self._closed = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (asyncio's or uvloop's, which do not subclass asyncio.Transport)
        tr = cast(asyncio.Transport, transport)
        self.transport = tr
        tr.set_write_buffer_limits(high=self._high_water)
        if not self._started:
            tr.pause_reading()
        sock = tr.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._on_connect is not None:
            self._on_connect(tr)

    def data_received(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.data(self.side, data)

    def eof_received(self) -> bool | None:
        if self._started and self.relay is not None:
            self.relay.eof(self.side)
        elif self._early is None:
            self._early = ("eof", None)
        # keep the write side open (the relay decides); TLS transports cannot, and warn
        tr = self.transport
        return None if tr is None or tr.get_extra_info("sslcontext") is not None else True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._started and self.relay is not None:
            self.relay.lost(self.side, exc)
        elif self._early is None or exc is not None:
            self._early = ("lost", exc)
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        if self.relay is not None:
            self.relay.pause_writing(self.side)

    def resume_writing(self) -> None:
        if self.relay is not None:
            self.relay.resume_writing(self.side)

    # -- RelayEnd ------------------------------------------------------------------------
    def start(self) -> None:
        assert self.relay is not None
        self._started = True
        early, self._early = self._early, None
        if early is not None:
            if early[0] == "eof":
                self.relay.eof(self.side)
            else:
                self.relay.lost(self.side, early[1])
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def end_of_input(self) -> bool:
        tr = self.transport
        if tr is None or tr.is_closing():
            return False
        if not tr.can_write_eof():
            return self._keep_open
        tr.write_eof()
        return True

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._started and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is None:
            if not self._closed.done():
                self._closed.set_result(None)
        elif not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self) -> None:
        await self._closed


class StreamEnd(RelayEnd):
    """A ``StreamReader``/``StreamWriter`` pair: a task reads, the writer's buffer gives
    back-pressure above ``high_water`` bytes.  ``keep_open`` makes it stay open when the
    other end's input ends even where it cannot pass a half-close on (``attach``: the
    host's output still comes after the user's input ended)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 name: str = "peer", *, chunk: int = DEFAULT_CHUNK,
                 high_water: int = 64 * 1024, keep_open: bool = False) -> None:
        super().__init__()
        self.name = name
        self.reader, self.writer = reader, writer
        self._chunk = chunk
        self._high_water = high_water
        self._keep_open = keep_open
        self._readable = asyncio.Event()
        self._readable.set()
        self._task: asyncio.Task[None] | None = None
        self._drain: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        relay = self.relay
        assert relay is not None
        try:
            while True:
                if not self._readable.is_set():
                    await self._readable.wait()
                data = await self.reader.read(self._chunk)
                if not data:
                    relay.eof(self.side)
                    return
                relay.data(self.side, data)
        except (ConnectionError, OSError) as exc:
            relay.lost(self.side, exc)

    def encode(self, data: bytes) -> bytes | None:
        """What goes on the wire for ``data`` (a framing subclass frames it; None: nothing
        may be sent any more)."""
        return data

    def write(self, data: bytes) -> None:
        w = self.writer
        if w.is_closing():
            return
        wire = self.encode(data)
        if wire is None:
            return
        w.write(wire)
        if self._drain is None and w.transport.get_write_buffer_size() > self._high_water:
            assert self.relay is not None
            self.relay.pause_writing(self.side)
            self._drain = asyncio.get_running_loop().create_task(self._drained())

    async def _drained(self) -> None:
        relay = self.relay
        assert relay is not None
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            relay.lost(self.side, exc)
            return
        finally:
            self._drain = None
        relay.resume_writing(self.side)

    def end_of_input(self) -> bool:
        w = self.writer
        if w.is_closing():
            return False
        if w.can_write_eof():
            try:
                w.write_eof()
            except (ConnectionError, OSError):
                return False
            return True
        return self._keep_open

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def close(self) -> None:
        for task in (self._task, self._drain):
            if task is not None and not task.done():
                task.cancel()
        self.writer.close()

    async def wait_closed(self) -> None:
        for task in (self._task, self._drain):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
