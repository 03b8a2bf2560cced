"""``xcpconsole attach``: a text (vt100) console in this terminal, like ``xl console``.

The terminal goes to raw mode so every key (Ctrl-C included) reaches the VM;
only the escape byte (``Ctrl-]``, as in telnet) detaches.  The terminal is
restored however we leave (escape, the host closing, an error, a signal).
Works with pipes too, which is how the tests drive it: then stdin EOF means
"nothing more to type", and we leave after a short grace period for output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import termios
import tty
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from ..relay import Relay, RelayEnd, StreamEnd
from .tunnel import DEFAULT_BUFSIZE, open_tunnel

if TYPE_CHECKING:
    from ..xapi import ConsoleInfo, XapiSession

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


class TerminalEnd(RelayEnd):
    """This terminal as a relay end: stdin is read (without blocking the loop) and
    ``out`` written.  Its input ending means "nothing more to type"."""

    name = "terminal"

    def __init__(self, in_fd: int, out: IO[bytes]) -> None:
        super().__init__()
        self._in_fd = in_fd
        self._out = out
        self._readable = asyncio.Event()
        self._readable.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read_stdin())

    async def _read_stdin(self) -> None:
        relay = self.relay
        assert relay is not None
        fd = self._in_fd
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)):
            while data := await asyncio.to_thread(os.read, fd, 65536):  # a regular file
                await self._readable.wait()
                relay.data(self.side, data)
            relay.eof(self.side)
            return
        reader = asyncio.StreamReader()
        pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe)
        try:
            while True:
                await self._readable.wait()
                data = await reader.read(65536)
                if not data:
                    relay.eof(self.side)
                    return
                relay.data(self.side, data)
        finally:
            transport.close()

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


async def attach(session: XapiSession, console: ConsoleInfo, *,
                 stdin: IO[bytes] | IO[str] | None = None,
                 stdout: IO[bytes] | None = None,
                 escape: bytes = ESCAPE, linger: float = 1.0,
                 timeout: float = 10.0) -> str:
    """Connect this terminal to ``console`` until detach; returns why it ended.

    The result is ``"detached"`` (escape typed), ``"closed"`` (the host ended
    the console) or ``"eof"`` (stdin ended and ``linger`` seconds passed).
    """
    in_fd = (stdin or sys.stdin).fileno()
    out = stdout if stdout is not None else sys.stdout.buffer
    reader, writer = await open_tunnel(session, console, timeout=timeout)
    # The tunnel (TLS) cannot be half-closed: after stdin's EOF it stays open for the
    # host's output for ``linger`` seconds.
    terminal = TerminalEnd(in_fd, out)
    tunnel = StreamEnd(reader, writer, "host", chunk=DEFAULT_BUFSIZE, keep_open=True)
    detached = False

    def typed(data: bytes) -> bytes:
        nonlocal detached
        cut = data.find(escape) if escape else -1
        if cut < 0:
            return data
        detached = True
        relay.close("detached")
        return data[:cut]

    relay = Relay(terminal, tunnel, a_to_b=typed, grace=linger)
    with raw_terminal(in_fd):
        result = await relay.run()
    if detached:
        return "detached"
    if isinstance(result.error, Exception) and not isinstance(result.error, ConnectionError
                                                                 | OSError):
        raise result.error
    return "closed" if relay.input_ended("b") or result.first != "a" else "eof"
