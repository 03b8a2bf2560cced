"""A real QEMU as the console of a simulated HVM guest.

On a real host an HVM guest's ``rfb`` console is QEMU's own VNC server on a
unix socket; here it is the same program, with no disk so SeaBIOS stops at
its "No bootable device" screen.  QEMU runs in its own process group with
``PR_SET_PDEATHSIG`` so that neither a clean stop nor a crash of the
simulator leaves it behind.

QEMU listens on that socket with a backlog of 1, as on a real host; whoever
connects to it must wait while the backlog is full (see
:func:`~xcpconsole.sim.console.connect_unix`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from pathlib import Path

from .backends import PROTOCOL_RFB, BackendError
from .console import connect_unix

QEMU_BINARY = "qemu-system-x86_64"
#: What xenopsd appends to ``-vnc unix:/var/run/xen/vnc-<domid>`` (``Dm_Common`` in
#: ``ocaml/xenopsd/xc/device.ml``).  No ``share=``: QEMU's default policy,
#: ``allow-exclusive``, applies - a client whose ClientInit asks for exclusive
#: access (shared-flag 0) disconnects the others, and a shared client arriving
#: while an exclusive one is connected is dropped.  ``force-shared`` would
#: instead drop every shared-flag-0 client (TigerVNC's default) before ServerInit.
#: No ``connections=`` either: QEMU's default limit (32 clients) applies.
VNC_OPTIONS = "lock-key-sync=off"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Run in the child before exec: SIGKILL it when the simulator dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class QemuBackend:
    """One QEMU process serving an ``rfb`` console on ``run_dir/rfb.sock``."""

    def __init__(
        self, *, vm_name: str, run_dir: Path, memory_mib: int = 64,
        start_timeout: float = 30.0, stop_timeout: float = 5.0,
    ) -> None:
        self.vm_name = vm_name
        self.run_dir = run_dir
        self.memory_mib = memory_mib
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._socket = run_dir / "rfb.sock"
        self._log = run_dir / "qemu.log"
        self._proc: asyncio.subprocess.Process | None = None

    def socket_for(self, protocol: str) -> Path:
        if protocol != PROTOCOL_RFB:
            raise BackendError(f"QEMU serves no {protocol} console")
        return self._socket

    def command(self) -> list[str]:
        binary = shutil.which(QEMU_BINARY)
        if binary is None:
            raise BackendError(f"{QEMU_BINARY} is not installed (Debian package qemu-system-x86)")
        return [
            binary, "-name", self.vm_name,
            "-machine", "pc,accel=tcg", "-m", str(self.memory_mib),
            "-nodefaults", "-no-user-config", "-vga", "std",
            "-display", "none", "-vnc", f"unix:{self._socket},{VNC_OPTIONS}",
            "-nic", "none", "-serial", "none", "-parallel", "none", "-monitor", "none",
        ]

    async def start(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._socket.unlink()
        command = self.command()
        with open(self._log, "wb") as log_file:
            self._proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        try:
            await asyncio.wait_for(self._wait_greeting(), self.start_timeout)
        except (TimeoutError, BackendError) as exc:
            await self.stop()
            raise BackendError(
                f"QEMU for {self.vm_name} did not start: {exc or 'timeout'} {self._log_tail()}"
            ) from exc

    async def _wait_greeting(self) -> None:
        """Poll the socket until QEMU's VNC server greets with ``RFB 003.008``."""
        assert self._proc is not None
        while True:
            if self._proc.returncode is not None:
                raise BackendError(f"exited with status {self._proc.returncode}")
            try:
                reader, writer = await connect_unix(self._socket, 5.0)
            except (FileNotFoundError, ConnectionRefusedError, TimeoutError):
                await asyncio.sleep(0.05)
                continue
            try:
                greeting = await asyncio.wait_for(reader.readexactly(12), 5.0)
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                greeting = b""
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            if greeting == b"RFB 003.008\n":
                return
            await asyncio.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            return self._log.read_bytes()[-2000:].decode("utf-8", "replace").strip()
        except OSError:
            return ""

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout)
            except TimeoutError:
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        elif proc is not None:
            _signal_group(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
        with contextlib.suppress(FileNotFoundError):
            self._socket.unlink()

    def kill_now(self) -> None:
        """Synchronous last resort (interpreter exit): SIGKILL the process group."""
        if self._proc is not None and self._proc.returncode is None:
            _signal_group(self._proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
