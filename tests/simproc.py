"""The simulated host as a real subprocess (``xcpconsole sim``), for fixtures and tests.

A plain module (not a conftest): test modules import it by name, and several conftest
modules on ``sys.path`` would clash.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
XCPCONSOLE = Path(sys.executable).parent / "xcpconsole"


@dataclass
class SimProcess:
    """A running ``xcpconsole sim`` and what its ``sim.json`` says."""

    proc: subprocess.Popen[bytes]
    state_dir: Path
    url: str
    port: int
    fingerprint: str
    user: str
    password: str
    pid: int

    def session(self):  # type: ignore[no-untyped-def]
        """A logged-in official XenAPI SDK session (TLS not verified: self-signed)."""
        import XenAPI

        s = XenAPI.Session(self.url, ignore_ssl=True)
        s.xenapi.login_with_password(self.user, self.password, "2.21", "xcpconsole-tests")
        return s

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def launch_sim(state_dir: Path, *extra: str, timeout: float = 60.0,
               password: str | None = None, port: int = 0) -> SimProcess:
    """Start ``xcpconsole sim`` on a free port (or ``port``: a restart on the same state
    dir keeps its address and certificate) and wait until it has written sim.json."""
    if not XCPCONSOLE.exists():
        pytest.fail(f"{XCPCONSOLE} missing: install the package into the venv (make setup)")
    state_dir.mkdir(parents=True, exist_ok=True)
    info_path = state_dir / "sim.json"
    info_path.unlink(missing_ok=True)
    env = dict(os.environ, XCPSIM_PASSWORD=password or secrets.token_urlsafe(12))
    log = open(state_dir / "sim.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [str(XCPCONSOLE), "sim", "--listen", f"127.0.0.1:{port}", "--state-dir", str(state_dir),
         *extra],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
    )
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log.close()
            pytest.fail(
                f"xcpconsole sim exited with {proc.returncode}:\n"
                + (state_dir / "sim.log").read_text(errors="replace")
            )
        if info_path.exists():
            try:
                info = json.loads(info_path.read_text())
            except ValueError:
                info = {}
            if info.get("pid") == proc.pid:
                break
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail("xcpconsole sim did not write sim.json in time")
        time.sleep(0.05)
    return SimProcess(
        proc=proc, state_dir=state_dir, url=info["url"], port=info["port"],
        fingerprint=info["fingerprint"], user=info["user"], password=info["password"],
        pid=info["pid"],
    )


def default_inventory() -> str:
    """The text of the sim's default inventory, to extend with ``[[vm]]``/``[[users]]``."""
    from xcpconsole.sim import inventory

    return (Path(inventory.__file__).with_name("default_inventory.toml")
            .read_text(encoding="utf-8"))


@contextmanager
def sim_with_inventory(workdir: Path, text: str) -> Iterator[SimProcess]:
    """A sim serving the inventory ``text`` (written into ``workdir``), stopped after."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "inventory.toml").write_text(text, encoding="utf-8")
    sim = launch_sim(workdir / "state", "--inventory", str(workdir / "inventory.toml"))
    try:
        yield sim
    finally:
        sim.stop()
