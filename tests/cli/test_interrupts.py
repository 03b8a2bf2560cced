"""A host that accepts TCP and never answers: ``--timeout`` ends every command that talks
to it, and Ctrl-C / SIGTERM end it within a second (130 / 143) even while the XenAPI
SDK is stuck in its worker thread.

Bounds, not measurements: "ended within the timeout plus a few seconds", "ended within
the stop grace plus slack for a loaded machine".
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from clirun import XCPCONSOLE, SilentHost, assert_one_error_line, cli, env_for, silent_host

#: seconds a stopped command may take: the grace (0.8 s) and room for a busy machine
STOP_BOUND = 2.5

#: every command that talks to a host, with what it needs besides the host
HOST_COMMANDS: list[tuple[str, ...]] = [
    ("vms",), ("consoles",), ("consoles", "win-hvm"), ("hosts",),
    ("proxy", "win-hvm", "--listen", "127.0.0.1:0"), ("attach", "alpine-pv-text"),
    ("info", "win-hvm"), ("screenshot", "win-hvm", "{tmp}/shot.png"),
    ("type", "win-hvm", "abc"), ("key", "win-hvm", "Return"),
    ("serve", "--listen", "127.0.0.1:0"),
    # the power commands' --timeout bounds the whole command, sign-in included
    ("start", "centos-halted"), ("shutdown", "win-hvm", "--force"), ("resume", "x", "--no-wait"),
]


def silent_env(host: SilentHost, tmp_path: Path) -> dict[str, str]:
    return env_for(None, tmp_path, XCP_HOST=host.url, XCP_PASSWORD="pw",
                   XCP_FINGERPRINT="AB" * 32)


def test_the_issue_reproduction_ends_within_the_timeout(tmp_path: Path) -> None:
    """``xcpconsole vms --host https://127.0.0.1:PORT --timeout 3``: one line, exit 1."""
    with silent_host() as host:
        started = time.monotonic()
        out = subprocess.run([str(XCPCONSOLE), "vms", "--host", host.url, "--timeout", "3"],
                             env=silent_env(host, tmp_path), stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
    assert took < 3 + 5, took
    assert_one_error_line(out, 1, "timed out")
    assert host.accepted.is_set()


@pytest.mark.parametrize("args", HOST_COMMANDS, ids=[" ".join(a) for a in HOST_COMMANDS])
def test_every_host_command_obeys_timeout(tmp_path: Path, args: tuple[str, ...]) -> None:
    argv = [a.format(tmp=tmp_path) for a in args]
    with silent_host() as host:
        started = time.monotonic()
        out = subprocess.run([str(XCPCONSOLE), *argv, "--timeout", "2"],
                             env=silent_env(host, tmp_path), stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
    assert took < 2 + 5, took
    assert_one_error_line(out, 1, "timed out")


def test_a_silent_vnc_server_times_out(tmp_path: Path) -> None:
    with silent_host() as host:
        started = time.monotonic()
        out = cli(None, tmp_path, "info", f"vnc://127.0.0.1:{host.port}", "--timeout", "2")
        took = time.monotonic() - started
    assert took < 2 + 5, took
    assert_one_error_line(out, 1, "within 2 s")


def _stop_while_stuck(tmp_path: Path, args: list[str], sig: int) -> tuple[float, Any]:
    """Start a command against a silent host (a minute of timeout), wait until it is
    stuck in the TLS handshake of its login, send ``sig``; (seconds to exit, result)."""
    with silent_host() as host:
        proc = subprocess.Popen([str(XCPCONSOLE), *args, "--timeout", "60"],
                                env=silent_env(host, tmp_path), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert host.accepted.wait(30), "the command never connected"
            time.sleep(0.5)  # into the handshake: the SDK thread blocks reading
            assert proc.poll() is None
            proc.send_signal(sig)
            sent = time.monotonic()
            out, err = proc.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return took, subprocess.CompletedProcess(args, proc.returncode, out, err)


STOPPABLE = [("vms",), ("hosts",), ("screenshot", "win-hvm", "{tmp}/x.png"),
             ("proxy", "win-hvm", "--listen", "127.0.0.1:0"), ("attach", "alpine-pv-text"),
             ("start", "centos-halted")]


@pytest.mark.parametrize("args", STOPPABLE, ids=[a[0] for a in STOPPABLE])
@pytest.mark.parametrize(("sig", "code", "line"), [
    (signal.SIGINT, 130, "xcpconsole: interrupted (Ctrl-C)"),
    (signal.SIGTERM, 143, "xcpconsole: stopped by SIGTERM"),
], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_stuck_command_at_once(tmp_path: Path, args: tuple[str, ...],
                                                sig: int, code: int, line: str) -> None:
    took, out = _stop_while_stuck(tmp_path, [a.format(tmp=tmp_path) for a in args], sig)
    assert took < STOP_BOUND, took
    assert out.returncode == code, out.stderr
    assert out.stderr.strip().splitlines()[-1] == line
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_a_signal_stops_a_stuck_call_after_the_login(sim_host: Any, tmp_path: Path) -> None:
    """Logged in, a XenAPI call stuck holding the session's lock (so the logout of the
    clean-up cannot run either): Ctrl-C still ends the process at once."""
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent('''
        import asyncio, sys, time
        from xcpconsole.cli.common import HostOptions, run, xapi_session
        from xcpconsole.cli.main import main

        async def go():
            async with xapi_session(HostOptions()) as xapi:
                def stuck():
                    with xapi._lock:
                        time.sleep(120)
                print("logged in", flush=True)
                await asyncio.to_thread(stuck)

        sys.argv = ["xcpconsole", "vms"]
        import xcpconsole.cli.client_cmd as client
        client.run = lambda _coro: (_coro.close(), run(go()))[1]
        main()
    '''))
    proc = subprocess.Popen([sys.executable, str(script)], env=env_for(sim_host, tmp_path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "logged in\n"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert took < STOP_BOUND, took
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "xcpconsole: interrupted (Ctrl-C)"
    assert "Traceback" not in err
