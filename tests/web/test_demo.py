"""`xcpconsole demo` as a real subprocess: the sign-in link, a state dir kept across runs
(certificates and password), ``--fresh``, the printed command lines pasted into a fresh
shell, and the log of what happens after the banner."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

XCPCONSOLE = Path(sys.executable).parent / "xcpconsole"
FINGERPRINT = r"[0-9A-F]{2}(?::[0-9A-F]{2}){31}"


@dataclass
class Demo:
    """A running ``xcpconsole demo``, what its banner said and where its stderr goes."""

    proc: subprocess.Popen[bytes]
    banner: str
    log: Path

    def find(self, pattern: str) -> str:
        m = re.search(pattern, self.banner)
        assert m, f"{pattern!r} not in the banner:\n{self.banner}"
        return m.group(1)

    @property
    def link(self) -> str:
        return self.find(r"(http://127\.0\.0\.1:\d+/login/link\?code=\S+)")

    @property
    def base(self) -> str:
        return self.find(r"sign in at (http://127\.0\.0\.1:\d+)/login as ")

    @property
    def password(self) -> str:
        return self.find(r"/login as root / (\S+)")

    @property
    def fingerprints(self) -> list[str]:
        """The master's certificate, then each member's."""
        return [self.find(rf"certificate SHA-256: ({FINGERPRINT})"),
                *re.findall(rf"member \S+: \S+  SHA-256 ({FINGERPRINT})", self.banner)]

    @property
    def cli_lines(self) -> list[str]:
        """The command-line block as printed: the exports and the ``vms`` line."""
        block = self.banner.split("the command line (paste the lines as they are):\n")[1]
        lines = [line.strip() for line in block.split("\n\n")[0].splitlines()]
        return [line for line in lines if line.startswith("export ")] + \
            [line for line in lines if " vms " in line]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()
        return int(self.proc.returncode)

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            log = self.log.read_text(errors="replace")
            if text in log or time.monotonic() > deadline:
                return log
            time.sleep(0.1)


def start_demo(workdir: Path, *args: str, env: dict[str, str], timeout: float = 60.0) -> Demo:
    """``xcpconsole demo`` on free ports; returns once the banner is complete."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"demo-{time.monotonic_ns()}.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [str(XCPCONSOLE), "demo", "--listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0",
             *args], stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env,
            cwd=workdir)
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            out += os.read(proc.stdout.fileno(), 65536)  # not readline: select sees the fd
            if re.search(rb"^Stop with Ctrl-C.*\n.*\n", out, re.M):
                return Demo(proc, out.decode(), log)
    demo = Demo(proc, out.decode(errors="replace"), log)
    rc = demo.stop()
    raise AssertionError(f"demo did not start (exit {rc}):\n{demo.banner}\n"
                         + log.read_text(errors="replace"))


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home),
           "XCPCONSOLE_KNOWN_HOSTS": str(home / "known_hosts")}
    env.update(extra)
    return env


async def sign_in(base: str, user: str, password: str) -> tuple[int, str]:
    """The sign-in form, as a browser sends it (CSRF field, Origin header)."""
    jar = aiohttp.CookieJar(unsafe=True)  # cookies of an IP address host
    async with aiohttp.ClientSession(cookie_jar=jar) as web:
        async with web.get(f"{base}/login") as form:
            m = re.search(r'name="csrf" value="([^"]+)"', await form.text())
            assert m
        async with web.post(f"{base}/login", headers={"Origin": base},
                            data={"username": user, "password": password,
                                  "csrf": m.group(1)}) as resp:
            return resp.status, await resp.text()


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A HOME whose default state dir leaves room for the sim's unix socket paths (108 bytes:
    pytest's tmp_path is too deep for them)."""
    home = Path(tempfile.mkdtemp(prefix="xcd-", dir="/tmp"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def test_demo_link_signs_in_once_and_the_cli_lines_work(
        tmp_path: Path, short_home: Path) -> None:
    home, state = tmp_path / "home", short_home / "demo"
    demo = start_demo(tmp_path, "--state-dir", str(state),
                      env=base_env(home, XCPSIM_PASSWORD="demo-secret-pw"))
    try:
        assert "demo-secret-pw" not in demo.banner  # the password came from the environment
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as web, \
                web.get(demo.link) as resp:
            page = await resp.text()
            assert resp.status == 200 and resp.url.path == "/vms"
            for name in ("win-hvm", "debian-pv", "alpine-pv-text", "centos-halted"):
                assert name in page
        async with aiohttp.ClientSession() as web, web.get(demo.link) as again:
            assert again.status == 403  # single use
        log = demo.wait_for_log("signed in root with a one-time link")
        assert "signed in root with a one-time link" in log

        # the caller's password is neither kept nor written into the profile
        assert not (state / "demo-password").exists()
        profile = (state / "config.toml").read_text()
        assert "[profiles.demo]" in profile and "demo-secret-pw" not in profile
        assert 'export XCP_PASSWORD="$XCPSIM_PASSWORD"' in demo.cli_lines
        out = subprocess.run(["bash", "-c", "\n".join(demo.cli_lines)], capture_output=True,
                             text=True, timeout=60,
                             env=base_env(home, XCPSIM_PASSWORD="demo-secret-pw"))
        assert out.returncode == 0, out.stderr
        assert "debian-pv" in out.stdout
    finally:
        rc = demo.stop()
    assert rc == 0
    assert not (state / "sim.json").exists()
    assert "demo-secret-pw" not in demo.log.read_text()


async def test_demo_keeps_certificates_and_password_and_fresh_starts_over(
        tmp_path: Path, short_home: Path) -> None:
    home = short_home
    env = base_env(home)  # no XCPSIM_PASSWORD: the demo makes one and keeps it
    state = home / ".local/state/xcpconsole-demo"  # the default state dir

    first = start_demo(tmp_path, env=env)
    try:
        assert f"export XCPCONSOLE_CONFIG={state / 'config.toml'}" in first.cli_lines
    finally:
        assert first.stop() == 0
    for name in ("demo-password", "config.toml"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    assert (state / "demo-password").read_text().strip() == first.password
    assert len(first.fingerprints) == 3

    second = start_demo(tmp_path, env=env)
    try:
        assert second.fingerprints == first.fingerprints
        assert second.password == first.password

        # the printed lines, pasted as they are into a shell that knows nothing else
        fresh_home = tmp_path / "elsewhere"
        fresh_home.mkdir()
        script = "\n".join(second.cli_lines)
        assert script.count("\n") == 1, script  # the export and the vms line
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                             timeout=60, env=base_env(fresh_home))
        assert out.returncode == 0, out.stderr
        assert re.search(r"debian-pv\s+\S+\s+Running", out.stdout), out.stdout
        assert not (fresh_home / "known_hosts").exists()  # pinned by the profile: no prompt

        # what happens after the banner is logged on stderr, never the password
        status, page = await sign_in(second.base, "root", "not-the-password")
        assert status == 401, page
        status, page = await sign_in(second.base, "root", second.password)
        assert status == 200 and "win-hvm" in page
        log = second.wait_for_log("signed in root from 127.0.0.1")
        assert "failed sign-in for 'root' from 127.0.0.1" in log
        assert re.search(r"^\d\d:\d\d:\d\d signed in root from 127\.0\.0\.1$", log, re.M), log
    finally:
        assert second.stop() == 0
    assert second.password not in second.log.read_text()
    assert "not-the-password" not in second.log.read_text()

    third = start_demo(tmp_path, "--fresh", env=env)
    try:
        assert third.password != first.password
        assert not set(third.fingerprints) & set(first.fingerprints)
        assert (state / "demo-password").read_text().strip() == third.password
    finally:
        assert third.stop() == 0


def test_demo_refuses_a_password_file_others_can_read(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    kept = state / "demo-password"
    kept.write_text("visible\n")
    kept.chmod(0o644)
    out = subprocess.run([str(XCPCONSOLE), "demo", "--state-dir", str(state),
                          "--listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=60,
                         env=base_env(tmp_path), stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"xcpconsole: error: {kept} holds the demo password but other users can read it: "
        f"chmod 600 {kept} (or start over with --fresh)"]
    assert "visible" not in out.stdout + out.stderr


def test_fresh_forgets_only_what_the_demo_made(tmp_path: Path) -> None:
    from xcpconsole.cli.demo_cmd import start_over

    state = tmp_path / "state"
    (state / "hosts" / "xcp-sim-1").mkdir(parents=True)
    made = [state / "demo-password", state / "config.toml", state / "sim-cert.pem",
            state / "sim-key.pem", state / "hosts" / "xcp-sim-1" / "sim-cert.pem",
            state / "hosts" / "xcp-sim-1" / "sim-key.pem"]
    for path in made:
        path.write_text("x")
    mine = state / "notes.txt"
    mine.write_text("keep me")
    start_over(state)
    assert [p for p in made if p.exists()] == []
    assert not (state / "hosts").exists()
    assert mine.read_text() == "keep me"
    assert os.listdir(state) == ["notes.txt"]
