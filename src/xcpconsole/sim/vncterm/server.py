"""The virtual terminal as a console backend: RFB and raw vt100 on unix sockets.

Like XenServer's ``vncterm``, one terminal per VM is shared by every client:
RFB clients see it as a 640x384 frame buffer (``RFB 003.003``, no security,
desktop name ``XenServer Virtual Terminal``) and type with KeyEvents; vt100
clients get the guest's output bytes as they are and type bytes.

Slow clients must not cost memory: an RFB client's pending work is one
boolean mask of damaged cells (new damage is OR-ed in, never queued as
frames), and a frame is only encoded when the client asked for one and the
socket's write buffer drained below its high-water mark.  A vt100 client
cannot skip bytes, so one that lets more than ``vt100_backlog`` bytes pile up
is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import numpy as np

from ...errors import XcpConsoleError
from ...rfb import events as ev
from ...rfb.server import ServerConnection, ServerState
from ..backends import PROTOCOL_RFB, PROTOCOL_VT100, BackendError
from .font import load_console_font
from .guest import LINE_DELAY, ScriptedGuest
from .keys import KeyboardState
from .screen import CellMask, TerminalScreen, cells_in, damage_rects

log = logging.getLogger(__name__)

DESKTOP_NAME = "XenServer Virtual Terminal"
RFB_VERSION = (3, 3)
READ_CHUNK = 65536
#: Paste (ClientCutText) longer than this is cut: it is typed into a tty.
MAX_PASTE = 4096
#: Seconds a client may take from connecting to ClientInit.
HANDSHAKE_TIMEOUT = 30.0


class VirtualTerminal:
    """One VM's text console (see the module docstring); a ``ConsoleBackend``.

    Besides the backend methods: ``booted`` (an Event, set once the login prompt is
    shown), ``screen`` (its ``frame`` is the current picture), ``output(bytes)`` as if
    the guest wrote them, ``type_bytes(bytes)`` as if a client typed them.
    """

    def __init__(self, *, vm_name: str, hostname: str, run_dir: Path,
                 boot_script: str = "linux", line_delay: float = LINE_DELAY,
                 font_path: Path | None = None, max_clients: int = 64,
                 write_high_water: int = 256 * 1024, vt100_backlog: int = 1 << 20) -> None:
        self.vm_name = vm_name
        self.hostname = hostname
        self.run_dir = run_dir
        self.guest = ScriptedGuest(vm_name=vm_name, hostname=hostname,
                                   boot_script=boot_script, line_delay=line_delay)
        self.screen = TerminalScreen(load_console_font(font_path))
        self.max_clients = max_clients
        self.write_high_water = write_high_water
        self.vt100_backlog = vt100_backlog
        self._sockets = {PROTOCOL_RFB: run_dir / "rfb.sock", PROTOCOL_VT100: run_dir / "vt100.sock"}
        self._servers: list[asyncio.base_events.Server] = []
        self._rfb_clients: set[_RfbClient] = set()
        self._vt100_writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._boot_task: asyncio.Task[None] | None = None
        self.booted = asyncio.Event()
        self._redraw_scheduled = False

    # -- ConsoleBackend --------------------------------------------------------------
    def socket_for(self, protocol: str) -> Path:
        try:
            return self._sockets[protocol]
        except KeyError:
            raise BackendError(f"the virtual terminal serves no {protocol} console") from None

    async def start(self) -> None:
        """Listen on both sockets and start booting the guest (in the background)."""
        if self._servers:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handlers = {PROTOCOL_RFB: self._serve_rfb, PROTOCOL_VT100: self._serve_vt100}
        try:
            for protocol, path in self._sockets.items():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                server = await asyncio.start_unix_server(handlers[protocol], str(path),
                                                         limit=READ_CHUNK)
                path.chmod(0o600)
                self._servers.append(server)
        except OSError as exc:
            await self.stop()
            raise BackendError(
                f"virtual terminal of {self.vm_name} cannot listen: {exc.strerror or exc}"
            ) from exc
        self._boot_task = asyncio.create_task(self._boot(), name=f"vncterm-boot-{self.vm_name}")

    async def stop(self) -> None:
        """Close every client, stop listening, remove the sockets (idempotent)."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        if self._boot_task is not None:
            self._boot_task.cancel()
            await asyncio.gather(self._boot_task, return_exceptions=True)
            self._boot_task = None
        # Closing the transports ends every client's handler (its read sees EOF) ...
        for writer in list(self._vt100_writers):
            writer.transport.abort()
        for client in list(self._rfb_clients):
            client.writer.transport.abort()
        tasks = list(self._tasks)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=2.0)
            for task in stuck:  # ... and a handler that did not end is cancelled
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        for path in self._sockets.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- the guest -------------------------------------------------------------------
    async def _boot(self) -> None:
        for delay, chunk in self.guest.boot_steps():
            if delay:
                await asyncio.sleep(delay)
            self.output(chunk)
        self.output(self.guest.finish_boot())
        self.redraw()
        self.booted.set()

    def output(self, data: bytes) -> None:
        """Guest output: copy it to vt100 clients now, redraw the screen soon (a burst of
        output within one loop iteration is drawn once)."""
        if not data:
            return
        self.screen.write(data)
        if not self._redraw_scheduled:
            self._redraw_scheduled = True
            asyncio.get_running_loop().call_soon(self.redraw)
        for writer in list(self._vt100_writers):
            self._write_vt100(writer, data)

    def redraw(self) -> None:
        """Bring the frame buffer up to date and hand the damage to every RFB client."""
        self._redraw_scheduled = False
        damage = self.screen.refresh()
        if damage.any():
            for client in self._rfb_clients:
                client.add_damage(damage)

    def type_bytes(self, data: bytes) -> None:
        """Input from any client: the guest answers (echo, prompts, output)."""
        self.output(self.guest.receive_input(data))

    # -- vt100 clients -------------------------------------------------------------------
    def _write_vt100(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if writer.is_closing():
            self._vt100_writers.discard(writer)
            return
        if writer.transport.get_write_buffer_size() > self.vt100_backlog:
            log.info("vt100 client of %s stalled: disconnected", self.vm_name)
            self._vt100_writers.discard(writer)
            writer.transport.abort()
            return
        writer.write(data)

    async def _serve_vt100(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        if not self._admit(writer):
            return
        self._vt100_writers.add(writer)
        try:
            writer.write(self.screen.repaint_bytes())
            while data := await reader.read(READ_CHUNK):
                self.type_bytes(data)
        except (ConnectionError, OSError):
            pass
        finally:
            self._vt100_writers.discard(writer)
            await _close(writer)

    # -- RFB clients -----------------------------------------------------------------------
    def _admit(self, writer: asyncio.StreamWriter) -> bool:
        task = asyncio.current_task()
        if len(self._rfb_clients) + len(self._vt100_writers) >= self.max_clients:
            log.warning("virtual terminal of %s: too many clients, refusing one", self.vm_name)
            writer.transport.abort()
            return False
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    async def _serve_rfb(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        if not self._admit(writer):
            return
        writer.transport.set_write_buffer_limits(high=self.write_high_water)
        client = _RfbClient(self, reader, writer)
        self._rfb_clients.add(client)
        try:
            await client.run()
        finally:
            self._rfb_clients.discard(client)
            await _close(writer)


class _RfbClient:
    """One RFB session: a reader loop (events) and a sender loop (updates)."""

    def __init__(self, term: VirtualTerminal, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.term = term
        self.reader = reader
        self.writer = writer
        screen = term.screen
        self.conn = ServerConnection(width=screen.width, height=screen.height,
                                     name=DESKTOP_NAME, version=RFB_VERSION)
        self.keyboard = KeyboardState()
        self.damage: CellMask = np.zeros((screen.rows, screen.cols), bool)
        self._wake = asyncio.Event()

    def add_damage(self, mask: CellMask) -> None:
        self.damage |= mask
        self._wake.set()

    async def run(self) -> None:
        """Serve until the client leaves, breaks the protocol or the terminal stops."""
        self._flush()
        tasks = {asyncio.create_task(self._read_loop()), asyncio.create_task(self._send_loop())}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            exc = task.exception() if not task.cancelled() else None
            if isinstance(exc, XcpConsoleError):
                log.info("RFB client of %s: %s", self.term.vm_name, exc)
                self._flush()  # e.g. the reason of a refused security type
            elif exc is not None and not isinstance(exc, ConnectionError | OSError):
                log.error("RFB client of %s failed", self.term.vm_name, exc_info=exc)

    async def _read_loop(self) -> None:
        conn = self.conn
        while True:
            if conn.state is ServerState.NORMAL:
                data = await self.reader.read(READ_CHUNK)
            else:  # a client that never finishes the handshake must not hold a slot
                try:
                    data = await asyncio.wait_for(self.reader.read(READ_CHUNK),
                                                  HANDSHAKE_TIMEOUT)
                except TimeoutError:
                    log.info("RFB client of %s: no handshake in %g s", self.term.vm_name,
                             HANDSHAKE_TIMEOUT)
                    return
            conn.receive_data(data)
            while (event := conn.next_event()) is not None:
                if isinstance(event, ev.ConnectionClosed | ev.AuthFailed):
                    self._flush()
                    return
                self._on_event(event)
            self._flush()
            if not data:
                return

    def _on_event(self, event: ev.EventFromClient) -> None:
        if isinstance(event, ev.FramebufferUpdateRequest):
            if not event.incremental:
                screen = self.term.screen
                self.damage |= cells_in(event.x, event.y, event.width, event.height,
                                        screen.cols, screen.rows,
                                        screen.cell_width, screen.cell_height)
            self._wake.set()
        elif isinstance(event, ev.KeyEvent):
            self.term.type_bytes(self.keyboard.key_event(event.down, event.keysym))
        elif isinstance(event, ev.ClientCutText):
            text = event.text[:MAX_PASTE].replace("\r\n", "\r").replace("\n", "\r")
            self.term.type_bytes(text.encode("utf-8"))

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def _send_loop(self) -> None:
        """Answer the pending update request with the damage it covers, one update at a
        time, waiting for the socket to drain (damage merges meanwhile)."""
        screen = self.term.screen
        while True:
            await self._wake.wait()
            self._wake.clear()
            req = self.conn.pending_request
            if req is None or not self.damage.any():
                continue
            area = cells_in(req.x, req.y, req.width, req.height, screen.cols, screen.rows,
                            screen.cell_width, screen.cell_height)
            sending = self.damage & area
            if not sending.any():
                continue
            self.damage &= ~sending
            rects = damage_rects(sending, screen.cell_width, screen.cell_height)
            self.conn.send_update(screen.frame, rects)
            self._flush()
            await self.writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 2.0)
