"""Running the real ``xcpconsole`` as a subprocess: environment, a host that never
answers, and a pseudo-terminal for prompts.  A plain module (not a conftest), imported
by the tests of this folder."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

XCPCONSOLE = Path(sys.executable).parent / "xcpconsole"


def env_for(sim: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user of ``sim`` (pinned, password set); ``NAME=""`` unsets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XCP", "VNC_"))}
    if sim is not None:
        env.update(XCP_HOST=sim.url, XCP_USER=sim.user, XCP_PASSWORD=sim.password,
                   XCP_FINGERPRINT=sim.fingerprint)
    env.update(XCPCONSOLE_KNOWN_HOSTS=str(tmp_path / "known_hosts"),
               XCPCONSOLE_CONFIG=str(tmp_path / "config.toml"), COLUMNS="80")
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def cli(sim: Any, tmp_path: Path, *args: str, timeout: float = 60,
        cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(XCPCONSOLE), *args], env=env_for(sim, tmp_path, **extra),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def assert_one_error_line(out: subprocess.CompletedProcess[str], code: int,
                          words: str = "") -> None:
    """stderr ends with one ``xcpconsole: error:`` message (or click's usage text, for
    code 2), never a traceback.  Log lines and warnings may come before it; a message
    may go on for a few lines of advice (the trust errors say what to pin)."""
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = out.stderr.strip("\n").splitlines()
    if lines and lines[0].startswith("Usage: "):
        assert code == 2 and lines[-1].startswith("Error: "), out.stderr
    else:
        errors = [i for i, ln in enumerate(lines) if ln.startswith("xcpconsole: error: ")]
        assert len(errors) == 1, out.stderr
        assert not any(ln.startswith("xcpconsole:") for ln in lines[errors[0] + 1:]), out.stderr
    assert words in out.stderr, out.stderr


class SilentHost:
    """Accepts TCP connections and never sends a byte (a hung xapi, a black-holing
    firewall on the far side): ``connections`` counts who got in."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"https://127.0.0.1:{self.port}"
        self.accepted = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self._held.append(conn)
                self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


@contextlib.contextmanager
def silent_host() -> Iterator[SilentHost]:
    host = SilentHost()
    try:
        yield host
    finally:
        host.close()


class PtyProcess:
    """``xcpconsole`` with a pseudo-terminal as its controlling terminal and stdio."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            argv, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.output = ""

    def read_until(self, pattern: str, timeout: float = 30.0) -> str:
        """Everything printed so far once ``pattern`` (a regex) shows; AssertionError if
        it does not within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output):
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{pattern!r} never came; got {self.output!r}")
        return self.output

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.output += data.decode(errors="replace")
        return bool(data)

    def write(self, text: str) -> None:
        os.write(self.master, text.encode())

    def echo_is_on(self) -> bool:
        return bool(termios.tcgetattr(self.master)[3] & termios.ECHO)

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        code = self.proc.wait(max(0.1, deadline - time.monotonic()))
        while self._read(0.05):
            pass
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self.master)
