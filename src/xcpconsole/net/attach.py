"""``xcpconsole attach``: a text (vt100) console in this terminal, like ``xl console``.

The terminal goes to raw mode so every key (Ctrl-C included) reaches the VM;
only the escape byte (``Ctrl-]``, as in telnet) detaches.  The terminal is
restored however we leave (escape, the host closing, an error, a signal).
Works with pipes too, which is how the tests drive it: then stdin EOF means
"nothing more to type", and we leave after a short grace period for output.

The console follows its VM: when the host closes it (a reboot, a shutdown, a
migration to another host of the pool), ``attach`` says so, waits for the VM's
console to exist again, wherever it runs now, and reconnects; Ctrl-] still
detaches while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING

from ..errors import NotFoundError, TunnelError, XcpConsoleError
from ..relay import Relay, RelayEnd, TransportEnd
from .tunnel import console_target, open_console

if TYPE_CHECKING:
    from ..xapi import ConsoleInfo, XapiSession

log = logging.getLogger("xcpconsole.attach")

ESCAPE = b"\x1d"  # Ctrl-]
ESCAPE_NAME = "Ctrl-]"


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode on ``fd`` if it is a terminal; the old mode comes back on exit."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


#: Seconds between looks for the VM's console while it is not running.
FOLLOW_POLL = 1.0


class Keyboard:
    """Reads stdin (without blocking the loop) for as long as ``attach`` runs, across
    reconnects; chunks come out of :attr:`queue`, ``b""`` at EOF."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        fd = self.fd
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)):
            while data := await asyncio.to_thread(os.read, fd, 65536):  # a regular file
                await self.queue.put(data)
            await self.queue.put(b"")
            return
        reader = asyncio.StreamReader()
        pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe)
        try:
            while data := await reader.read(65536):
                await self.queue.put(data)
            await self.queue.put(b"")
        finally:
            transport.close()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class TerminalEnd(RelayEnd):
    """This terminal as a relay end: keys from the :class:`Keyboard`, output to ``out``.
    Its input ending means "nothing more to type"."""

    name = "terminal"

    def __init__(self, keyboard: Keyboard, out: IO[bytes]) -> None:
        super().__init__()
        self._keyboard = keyboard
        self._out = out
        self._readable = asyncio.Event()
        self._readable.set()
        self._task: asyncio.Task[None] | None = None
        self.last_input = asyncio.get_running_loop().time()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._deliver())

    async def _deliver(self) -> None:
        relay = self.relay
        assert relay is not None
        while True:
            await self._readable.wait()
            data = await self._keyboard.queue.get()
            if not data:
                relay.eof(self.side)
                return
            self.last_input = asyncio.get_running_loop().time()
            relay.data(self.side, data)

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self._out.flush()

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def wait_closed(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def _session(session: XapiSession, console: ConsoleInfo, keyboard: Keyboard,
                   out: IO[bytes], escape: bytes, linger: float, timeout: float,
                   notice: Callable[[str], None]) -> tuple[str, ConsoleInfo, float]:
    """One tunnel's worth of attach: ("detached" | "eof" | "closed", console used,
    seconds since the last key when it ended)."""
    tunnel = await open_console(session, console, timeout=timeout, notice=notice)
    # The tunnel (TLS) cannot be half-closed: after stdin's EOF it stays open for the
    # host's output for ``linger`` seconds.
    terminal = TerminalEnd(keyboard, out)
    host = TransportEnd("host", keep_open=True)
    first = tunnel.take(host)
    detached = False

    def typed(data: bytes) -> bytes:
        nonlocal detached
        cut = data.find(escape) if escape else -1
        if cut < 0:
            return data
        detached = True
        relay.close("detached")
        return data[:cut]

    relay = Relay(terminal, host, a_to_b=typed, grace=linger)
    relay.send("a", first)
    result = await relay.run()
    quiet = asyncio.get_running_loop().time() - terminal.last_input
    if detached:
        return "detached", tunnel.console, quiet
    if isinstance(result.error, Exception) and not isinstance(result.error, ConnectionError
                                                                 | OSError):
        raise result.error
    ended = "closed" if relay.input_ended("b") or result.first != "a" else "eof"
    return ended, tunnel.console, quiet


async def _idle_timeout(session: XapiSession) -> int:
    """The pool's ``vm_console_idle_timeout`` (0: none, or unknown)."""
    try:
        pools = await session.call("pool.get_all_records")
    except XcpConsoleError:
        return 0
    for rec in (pools.values() if isinstance(pools, dict) else ()):
        try:
            return int(rec.get("vm_console_idle_timeout", 0) or 0)
        except (TypeError, ValueError, AttributeError):
            return 0
    return 0


async def _wait_for_console(session: XapiSession, console: ConsoleInfo, keyboard: Keyboard,
                            escape: bytes, poll: float) -> ConsoleInfo | None:
    """The VM's console once it exists again (None: the user detached or input ended).
    Keys typed meanwhile have nowhere to go and are dropped, but the escape is seen."""
    while True:
        try:
            return await session.find_console(console.vm_uuid, console.protocol)
        except (TunnelError, NotFoundError):
            pass  # not running (yet): rebooting, halted, being migrated
        try:
            data = await asyncio.wait_for(keyboard.queue.get(), poll)
        except TimeoutError:
            continue
        if not data or (escape and escape in data):
            return None


async def attach(session: XapiSession, console: ConsoleInfo, *,
                 stdin: IO[bytes] | IO[str] | None = None,
                 stdout: IO[bytes] | None = None,
                 escape: bytes = ESCAPE, linger: float = 1.0,
                 timeout: float = 10.0, follow: bool = True,
                 notice: Callable[[str], None] | None = None,
                 poll: float = FOLLOW_POLL) -> str:
    """Connect this terminal to ``console`` until detach; returns why it ended.

    The result is ``"detached"`` (escape typed), ``"closed"`` (the host ended
    the console, and ``follow`` is off) or ``"eof"`` (stdin ended and ``linger``
    seconds passed).  With ``follow``, a console the host closed is waited for and
    reconnected, wherever its VM runs now; ``notice`` hears what happens.
    """
    in_fd = (stdin or sys.stdin).fileno()
    out = stdout if stdout is not None else sys.stdout.buffer
    say = notice or log.info
    keyboard = Keyboard(in_fd)
    with raw_terminal(in_fd):
        keyboard.start()
        try:
            while True:
                reason, console, quiet = await _session(session, console, keyboard, out,
                                                        escape, linger, timeout, say)
                if reason != "closed" or not follow:
                    return reason
                idle = await _idle_timeout(session)
                if idle and quiet >= idle - 0.5:
                    say(f"the host closed the console after {idle} s without typing (the "
                        "pool's vm_console_idle_timeout); reconnecting... "
                        f"({ESCAPE_NAME} detaches)")
                else:
                    say(f"the host closed the console of {console.vm_name_label} (a reboot, "
                        f"a shutdown or a migration); waiting for it... "
                        f"({ESCAPE_NAME} detaches)")
                fresh = await _wait_for_console(session, console, keyboard, escape, poll)
                if fresh is None:
                    return "detached"
                where = console_target(fresh.location)[0]
                say(f"reconnecting to {fresh.vm_name_label} on {where}")
                console = fresh
                await asyncio.sleep(min(poll, 1.0))  # no busy loop if it closes at once
        finally:
            await keyboard.stop()
