"""Every command through its error paths: one line on stderr (or the usage text), the
exit code of the kind of error, never a traceback.

Exit codes: 1 not found / refused / unreachable, 2 usage or settings, 3 authentication
or role, 4 trust.  The real CLI runs as a subprocess against the simulated host.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import assert_one_error_line, cli

OTHER_FP = "SHA256:" + "ab" * 32

#: (args, extra environment, exit code, words in stderr); {busy} is a port something
#: else listens on, {tmp} a fresh directory, {closed} a port nothing listens on
CASES: list[tuple[tuple[str, ...], dict[str, str], int, str]] = [
    # vms
    (("vms", "--host", "http://h"), {}, 2, "only https://"),
    (("vms", "--host", "https://[::1"), {}, 2, ""),
    (("vms", "--host", "https://127.0.0.1:{closed}"), {}, 1, "cannot connect"),
    (("vms", "--fingerprint", "xyz"), {}, 2, "SHA-256"),
    (("vms", "--fingerprint", f"SHA1 Fingerprint={'AB:' * 19}AB"), {}, 2, "SHA-256"),
    (("vms", "--fingerprint", OTHER_FP), {}, 4, "does not match the pinned"),
    (("vms",), {"XCP_FINGERPRINT": ""}, 4, "--fingerprint"),
    (("vms",), {"XCP_PASSWORD": "wrong"}, 3, "refused the user name or password"),
    (("vms",), {"XCP_PASSWORD": ""}, 3, "XCP_PASSWORD"),
    (("vms",), {"XCP_HOST": ""}, 2, "no host"),
    (("vms", "--profile", "nope"), {}, 2, "profile 'nope'"),
    (("vms", "--timeout", "0"), {}, 2, "--timeout"),
    (("vms", "--timeout", "soon"), {}, 2, "--timeout"),
    (("vms", "--bogus"), {}, 2, "--bogus"),
    # consoles
    (("consoles", "no-such-vm"), {}, 1, "no VM named 'no-such-vm'"),
    (("consoles", "Debian Bookworm 12"), {}, 1, "'Debian Bookworm 12' is a template"),
    (("consoles", "--timeout", "-1"), {}, 2, "--timeout"),
    # hosts
    (("hosts", "--host", "https://127.0.0.1:{closed}"), {}, 1, "cannot connect"),
    (("hosts",), {"XCP_FINGERPRINT": ""}, 4, "not signed by a trusted CA"),
    (("hosts", "--timeout", "0"), {}, 2, "--timeout"),
    # proxy
    (("proxy", "win-hvm", "--listen", "127.0.0.1:{busy}"), {}, 1, "cannot listen on"),
    (("proxy", "win-hvm", "--listen", "nonsense"), {}, 2, "--listen"),
    (("proxy", "win-hvm", "--listen", "127.0.0.1:99999"), {}, 2, ""),
    (("proxy", "win-hvm", "--protocol", "vnc"), {}, 2, "'vnc' is not one of rfb, vt100"),
    (("proxy", "centos-halted", "--listen", "127.0.0.1:0"), {}, 1, "halted"),
    (("proxy", "no-such-vm", "--listen", "127.0.0.1:0"), {}, 1, "no VM named"),
    (("proxy",), {}, 2, "Missing argument"),
    # attach
    (("attach", "win-hvm"), {}, 1, "no vt100 console"),
    (("attach", "centos-halted"), {}, 1, "halted"),
    (("attach", "alpine-pv-text", "--protocol", "rfb"), {}, 2, "not one of vt100"),
    (("attach", "alpine-pv-text", "--timeout", "-1"), {}, 2, "--timeout"),
    # info
    (("info", "win-hvm", "-e", "foo"), {}, 2, "unknown encoding 'foo'"),
    (("info", "win-hvm", "--seconds", "-1"), {}, 2, "--seconds"),
    (("info", "vnc://127.0.0.1:{closed}"), {}, 1, "cannot connect"),
    (("info", "no-such-vm"), {}, 1, "no VM named"),
    (("info", "Other install media"), {}, 1, "is a template"),
    # screenshot
    (("screenshot", "win-hvm", "/nonexistent/dir/x.png"), {}, 1, "no directory"),
    (("screenshot", "win-hvm", "{tmp}"), {}, 1, "it is a directory"),
    (("screenshot", "win-hvm", "/proc/x.png"), {}, 1, "cannot write /proc/x.png"),
    (("screenshot", "win-hvm", "{tmp}/x.gif"), {}, 2, "image format"),
    (("screenshot", "win-hvm", "{tmp}/x"), {}, 2, "image format"),
    (("screenshot", "win-hvm", "{tmp}/x.png", "--quality", "50"), {}, 2, "--quality"),
    (("screenshot", "win-hvm", "{tmp}/x.jpg", "--quality", "0"), {}, 2, "--quality"),
    (("screenshot", "centos-halted", "{tmp}/x.png"), {}, 1, "halted"),
    (("screenshot", "win-hvm", "{tmp}/x.png", "-e", "raw,nope"), {}, 2, "nope"),
    # type / key
    (("type", "win-hvm", "abc", "--delay", "-1"), {}, 2, "--delay"),
    (("type", "vnc://127.0.0.1:{closed}", "abc"), {}, 1, "cannot connect"),
    (("type",), {}, 2, "Missing argument"),
    (("key", "win-hvm", "nosuchkey"), {}, 2, "unknown key name 'nosuchkey'"),
    (("key", "win-hvm", "Return", "--delay", "-0.5"), {}, 2, "--delay"),
    # serve
    (("serve", "--listen", "127.0.0.1:{busy}"), {}, 1, "cannot listen on"),
    (("serve", "--listen", "nonsense"), {}, 2, "--listen"),
    (("serve", "--host", "https://127.0.0.1:{closed}"), {}, 1, "cannot connect"),
    (("serve",), {"XCP_HOST": ""}, 2, "no host"),
    # sim
    (("sim", "--listen", "127.0.0.1:{busy}", "--state-dir", "{tmp}/s"), {}, 1,
     "cannot listen on"),
    (("sim", "--listen", "nonsense", "--state-dir", "{tmp}/s"), {}, 2, "--listen"),
    (("sim", "--state-dir", "/proc/nope", "--listen", "127.0.0.1:0"), {}, 2, "--state-dir"),
    (("sim", "--hosts", "0"), {}, 2, "--hosts"),
    (("sim", "--header-timeout", "0"), {}, 2, "--header-timeout"),
    (("sim", "--inventory", "/nonexistent.toml", "--state-dir", "{tmp}/s",
      "--listen", "127.0.0.1:0"), {}, 2, "/nonexistent.toml"),
    # demo
    (("demo", "--hosts", "0"), {}, 2, "--hosts"),
    (("demo", "--web-listen", "nonsense", "--state-dir", "{tmp}/d"), {}, 2, "--web-listen"),
    (("demo", "--web-listen", "127.0.0.1:{busy}", "--state-dir", "{tmp}/d",
      "--listen", "127.0.0.1:0"), {}, 1, "cannot listen on"),
    (("demo", "--listen", "127.0.0.1:{busy}", "--state-dir", "{tmp}/d",
      "--web-listen", "127.0.0.1:0"), {}, 1, "cannot listen on"),
    # power
    (("start", "no-such-vm"), {}, 1, "no VM named"),
    (("start", "win-hvm"), {}, 1, "already running"),
    (("start", "Debian Bookworm 12"), {}, 1, "is a template"),
    (("shutdown", "--host", "https://127.0.0.1:{closed}", "win-hvm"), {}, 1, "cannot connect"),
    (("reboot",), {}, 2, "Missing argument"),
    (("pause", "centos-halted"), {}, 1, "it is halted"),
    (("unpause", "win-hvm"), {}, 1, "already running"),
    (("resume", "win-hvm"), {}, 1, "already running"),
    (("suspend", "centos-halted"), {}, 1, "it is halted"),
    # no such command
    (("frobnicate",), {}, 2, "No such command"),
]


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed


@pytest.mark.parametrize(("args", "env", "code", "words"), CASES,
                         ids=[" ".join(c[0]) + (f" {c[1]}" if c[1] else "") for c in CASES])
def test_error_path(sim_host: Any, tmp_path: Path, busy_port: int, closed_port: int,
                    args: tuple[str, ...], env: dict[str, str], code: int,
                    words: str) -> None:
    argv = [a.format(busy=busy_port, closed=closed_port, tmp=tmp_path) for a in args]
    out = cli(sim_host, tmp_path, *argv, **env)
    assert_one_error_line(out, code, words.format(busy=busy_port, closed=closed_port))
    assert out.stdout == "" or out.returncode == 0


def test_every_command_has_error_cases() -> None:
    """A command added later must get its rows here."""
    from typer.main import get_command

    from xcpconsole.cli import main

    main._register([])
    commands = set(get_command(main.app).commands)  # type: ignore[attr-defined]
    tried = {args[0] for args, *_ in CASES}
    assert commands <= tried, commands - tried
