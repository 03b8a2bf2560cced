"""`xcpconsole serve` checks the host at start (a real subprocess against the real sim):
an unreachable or silent host and an untrusted certificate stop it with an operator
message and exit code; ``--start-anyway`` starts and shows end users a neutral page;
plain HTTP on a non-loopback address is warned about."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

XCPCONSOLE = Path(sys.executable).parent / "xcpconsole"
WRONG = ":".join(["AB"] * 32)
NEUTRAL = ("The gateway cannot reach the host right now; please try again later or tell "
           "the administrator.")


def serve_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCP")}
    env.update(HOME=str(workdir), XCPCONSOLE_CONFIG=str(workdir / "no-config.toml"),
               XCPCONSOLE_KNOWN_HOSTS=str(workdir / "known_hosts"))
    return env


def run_serve(workdir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``serve`` expected to refuse to start: its exit code and output."""
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(XCPCONSOLE), "serve", *args], env=serve_env(workdir),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


class Served:
    """``serve`` expected to start: the process, its URL, its stderr file."""

    def __init__(self, workdir: Path, *args: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "serve.log"
        with self.log.open("w") as err:
            self.proc = subprocess.Popen([str(XCPCONSOLE), "serve", *args], stderr=err,
                                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                         env=serve_env(workdir))
        assert self.proc.stdout is not None
        out, deadline = b"", time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            if select.select([self.proc.stdout], [], [], 0.2)[0]:
                out += os.read(self.proc.stdout.fileno(), 4096)
                if m := re.search(rb"listening on (https?://\S+?)/?\n", out):
                    self.url = m.group(1).decode()
                    return
        self.stop()
        pytest.fail(f"serve did not start: {out!r}\n{self.log.read_text()}")

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (log := self.log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return log

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()
        return int(self.proc.returncode)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_host() -> Iterator[int]:
    """Accepts TCP (the kernel's backlog) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def test_unreachable_host_stops_serve_with_exit_1(tmp_path: Path, closed_port: int) -> None:
    out = run_serve(tmp_path, "--listen", "127.0.0.1:0",
                    "--host", f"https://127.0.0.1:{closed_port}", "--fingerprint", WRONG)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(
        f"xcpconsole: error: not starting the gateway: the host https://127.0.0.1:{closed_port} "
        f"failed the start check (it cannot be reached): cannot connect to "
        f"127.0.0.1:{closed_port}: "), out.stderr
    assert "--start-anyway" in out.stderr and "Traceback" not in out.stderr
    assert "listening on" not in out.stdout


def test_silent_host_stops_serve_within_its_timeout(tmp_path: Path, silent_host: int) -> None:
    began = time.monotonic()
    out = run_serve(tmp_path, "--listen", "127.0.0.1:0", "--timeout", "2",
                    "--host", f"https://127.0.0.1:{silent_host}", "--fingerprint", WRONG)
    assert out.returncode == 1, out.stderr
    assert time.monotonic() - began < 15
    assert "(it cannot be reached): timed out connecting to 127.0.0.1:" in out.stderr
    assert "Traceback" not in out.stderr


def test_wrong_fingerprint_stops_serve_with_exit_4(tmp_path: Path, sim_host: Any) -> None:
    out = run_serve(tmp_path, "--listen", "127.0.0.1:0", "--host", sim_host.url,
                    "--fingerprint", WRONG)
    assert out.returncode == 4, out.stderr
    assert out.stderr.startswith(
        f"xcpconsole: error: not starting the gateway: the host {sim_host.url} failed the "
        "start check (its certificate is not trusted): "), out.stderr
    assert "does not match the pinned fingerprint" in out.stderr
    assert sim_host.fingerprint in out.stderr  # what it presented, for the operator to check
    assert "Traceback" not in out.stderr


def test_unknown_certificate_stops_serve_with_what_to_pin(tmp_path: Path,
                                                          sim_host: Any) -> None:
    out = run_serve(tmp_path, "--listen", "127.0.0.1:0", "--host", sim_host.url)
    assert out.returncode == 4, out.stderr
    assert "(its certificate is not trusted)" in out.stderr
    assert f"--fingerprint {sim_host.fingerprint}" in out.stderr


async def test_start_anyway_shows_users_a_neutral_page_and_logs_why(
        tmp_path: Path, sim_host: Any) -> None:
    gw = Served(tmp_path, "--listen", "127.0.0.1:0", "--host", sim_host.url,
                "--fingerprint", WRONG, "--start-anyway")
    try:
        log = gw.log.read_text()
        assert "failed the start check (its certificate is not trusted)" in log
        assert "starting anyway (--start-anyway)" in log
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as web:
            async with web.get(f"{gw.url}/login") as form:
                csrf = re.search(r'name="csrf" value="([^"]+)"', await form.text())
                assert csrf
            async with web.post(f"{gw.url}/login", headers={"Origin": gw.url},
                                data={"username": sim_host.user, "password": sim_host.password,
                                      "csrf": csrf.group(1)}) as resp:
                page = await resp.text()
        assert resp.status == 502
        assert f'<p class="error" id="login-error">{NEUTRAL}</p>' in page
        for leak in ("--fingerprint", "fingerprint", sim_host.fingerprint, WRONG, "pinned"):
            assert leak not in page
        log = gw.wait_for_log("the gateway cannot reach the host")
        assert re.search(r"sign-in for 'root': the gateway cannot reach the host: .*does not "
                         "match the pinned fingerprint", log), log
        assert sim_host.password not in log
    finally:
        assert gw.stop() == 0


def test_plain_http_on_a_public_address_is_warned_about(tmp_path: Path,
                                                        sim_host: Any) -> None:
    gw = Served(tmp_path / "http", "--listen", "0.0.0.0:0", "--host", sim_host.url,
                "--fingerprint", sim_host.fingerprint)
    try:
        log = gw.wait_for_log("WARNING")
        assert gw.url.startswith("http://0.0.0.0:")
        port = gw.url.rsplit(":", 1)[1]
        assert re.search(rf"xcpconsole serve: WARNING: listening on 0\.0\.0\.0:{port} over plain "
                         r"HTTP: every sign-in sends a host password across the network in "
                         r"clear text\.", log), log
        assert "--tls-cert CERT.pem --tls-key KEY.pem" in log
    finally:
        assert gw.stop() == 0

    cert, key = sim_host.state_dir / "sim-cert.pem", sim_host.state_dir / "sim-key.pem"
    tls = Served(tmp_path / "https", "--listen", "0.0.0.0:0", "--host", sim_host.url,
                 "--fingerprint", sim_host.fingerprint, "--tls-cert", str(cert),
                 "--tls-key", str(key))
    try:
        assert tls.url.startswith("https://0.0.0.0:")
        assert "WARNING" not in tls.log.read_text()
    finally:
        assert tls.stop() == 0

    local = Served(tmp_path / "local", "--listen", "127.0.0.1:0", "--host", sim_host.url,
                   "--fingerprint", sim_host.fingerprint)
    try:
        assert "WARNING" not in local.log.read_text()
    finally:
        assert local.stop() == 0


def test_busy_port_and_bad_tls_files_are_one_line_errors(tmp_path: Path,
                                                         sim_host: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = run_serve(tmp_path, "--listen", f"127.0.0.1:{port}", "--host", sim_host.url,
                        "--fingerprint", sim_host.fingerprint)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith(
        f"xcpconsole: error: cannot listen on 127.0.0.1:{port}: "), out.stderr
    assert "Traceback" not in out.stderr

    out = run_serve(tmp_path, "--listen", "127.0.0.1:0", "--host", sim_host.url,
                    "--fingerprint", sim_host.fingerprint, "--tls-cert",
                    str(tmp_path / "missing.pem"))
    assert out.returncode == 2
    assert out.stderr.strip() == ("xcpconsole: error: cannot read --tls-cert "
                                  f"{tmp_path / 'missing.pem'}: No such file or directory")

    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    out = run_serve(tmp_path, "--listen", "127.0.0.1:0", "--host", sim_host.url,
                    "--fingerprint", sim_host.fingerprint, "--tls-cert", str(not_pem))
    assert out.returncode == 2
    assert out.stderr.startswith(f"xcpconsole: error: --tls-cert {not_pem} / --tls-key (in the "
                                 "same file): not a PEM certificate chain and its key ")
    assert len(out.stderr.strip().splitlines()) == 1
