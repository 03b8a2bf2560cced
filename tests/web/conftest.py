"""Fixtures for the browser-level tests: ``xcpconsole serve`` as a real subprocess pointed
at the simulated host, and a headless Chromium driven by Playwright (never downloaded:
the Debian ``chromium`` binary)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

XCPCONSOLE = Path(sys.executable).parent / "xcpconsole"
SimProcess = Any  # tests/conftest.py's SimProcess (not importable: conftest modules clash)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


def launch_gateway(sim: SimProcess, workdir: Path, *extra: str,
                   timeout: float = 30.0, wrap: tuple[str, ...] = ()) -> GatewayProcess:
    """Start ``xcpconsole serve --listen 127.0.0.1:0`` and wait for its listening line
    (``wrap``: a command it runs under, e.g. ``prlimit``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCP_")}
    env.update(HOME=str(workdir), XCPCONSOLE_CONFIG=str(workdir / "no-config.toml"))
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*wrap, str(XCPCONSOLE), "serve", "--listen", "127.0.0.1:0", "--host", sim.url,
             "--fingerprint", sim.fingerprint, *extra],
            stdout=subprocess.PIPE, stderr=err, env=env, cwd=workdir,
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if m := re.search(rb"listening on (http://\S+?)/?$", line.strip()):
                return GatewayProcess(proc, m.group(1).decode(), log)
    gw = GatewayProcess(proc, "", log)
    gw.stop()
    pytest.fail(f"xcpconsole serve did not start (exit {proc.returncode}, said {line!r}):\n"
                + log.read_text(errors="replace")[-3000:])


@pytest.fixture(scope="module")
def gateway(sim_host: SimProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayProcess]:
    gw = launch_gateway(sim_host, tmp_path_factory.mktemp("gateway"))
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing (Debian package chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
