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


async def _stdin_chunks(fd: int, queue: asyncio.Queue[bytes]) -> None:
    """Feed stdin to ``queue`` (b"" at EOF) without blocking the loop."""
    loop = asyncio.get_running_loop()
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)):
        while data := await asyncio.to_thread(os.read, fd, 65536):
            await queue.put(data)
        await queue.put(b"")
        return
    reader = asyncio.StreamReader()
    pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        while data := await reader.read(65536):
            await queue.put(data)
        await queue.put(b"")
    finally:
        transport.close()


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
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)
    feeder = asyncio.ensure_future(_stdin_chunks(in_fd, queue))

    async def downstream() -> str:
        while data := await reader.read(DEFAULT_BUFSIZE):
            out.write(data)
            out.flush()
        return "closed"

    async def upstream() -> str:
        while True:
            data = await queue.get()
            if not data:
                await asyncio.sleep(linger)
                return "eof"
            cut = data.find(escape) if escape else -1
            if cut >= 0:
                data = data[:cut]
            if data:
                writer.write(data)
                await writer.drain()
            if cut >= 0:
                return "detached"

    with raw_terminal(in_fd):
        down = asyncio.ensure_future(downstream())
        up = asyncio.ensure_future(upstream())
        try:
            done, _ = await asyncio.wait([down, up], return_when=asyncio.FIRST_COMPLETED)
            first = next(iter(done))
            reason = first.result() if not first.exception() else "closed"
            if isinstance(first.exception(), Exception) and not isinstance(
                    first.exception(), ConnectionError | OSError):
                raise first.exception()  # type: ignore[misc]
        finally:
            for task in (down, up, feeder):
                task.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    return reason
