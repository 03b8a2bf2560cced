"""The small ones: tables for ``awk``, no empty line for a halted VM's consoles, templates
named as such, the VNC password's hint, and openssl's fingerprint line as a pin."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import assert_one_error_line, cli


def test_vms_table_reads_with_awk(sim_host: Any, tmp_path: Path) -> None:
    out = cli(sim_host, tmp_path, "vms")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NAME", "UUID", "STATE", "HOST", "CONSOLES"]
    assert all(line == line.rstrip() for line in lines)
    rows = {f[0]: f for f in (line.split() for line in lines[1:])}
    assert all(len(f) == 5 for f in rows.values())
    assert rows["centos-halted"][2:] == ["Halted", "-", "-"]
    assert rows["alpine-pv-text"][2:] == ["Running", "xcp-sim", "rfb,vt100"]


def test_hosts_table_has_one_word_headers(sim_host: Any, tmp_path: Path) -> None:
    out = cli(sim_host, tmp_path, "hosts")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ADDRESS", "ROLE", "FINGERPRINT", "EXPIRES", "VMS"]
    assert all(line == line.rstrip() for line in lines)
    assert sim_host.fingerprint in lines[1]


def test_consoles_of_a_halted_vm_print_nothing(sim_host: Any, tmp_path: Path) -> None:
    out = cli(sim_host, tmp_path, "consoles", "centos-halted")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    assert out.stderr == ("xcpconsole: VM 'centos-halted' is halted: it has consoles only "
                          "while it runs (xcpconsole start centos-halted)\n")
    listed = cli(sim_host, tmp_path, "consoles", "win-hvm")
    assert listed.stdout.endswith("resident-on ( RO)  : xcp-sim\n")  # no blank line after


@pytest.mark.parametrize("command", [("consoles",), ("proxy", "--listen", "127.0.0.1:0"),
                                     ("screenshot",), ("attach",)])
def test_a_template_is_named_a_template(sim_host: Any, tmp_path: Path,
                                        command: tuple[str, ...]) -> None:
    args = (command[0], "Debian Bookworm 12", *command[1:])
    if command[0] == "screenshot":
        args += (str(tmp_path / "x.png"),)
    out = cli(sim_host, tmp_path, *args)
    assert_one_error_line(out, 1, "'Debian Bookworm 12' is a template, not a VM")


@pytest.fixture
def vnc_wanting_a_password() -> Iterator[int]:
    """An RFB 3.8 server that offers only VNC authentication."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"RFB 003.008\n")
                conn.recv(12)
                conn.sendall(b"\x01\x02")  # one security type: VNC authentication
                conn.recv(1)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


def test_missing_vnc_password_names_vnc_password(tmp_path: Path,
                                                 vnc_wanting_a_password: int) -> None:
    out = cli(None, tmp_path, "info", f"vnc://127.0.0.1:{vnc_wanting_a_password}")
    assert_one_error_line(out, 3, "VNC_PASSWORD")


def test_openssl_fingerprint_line_pins(sim_host: Any, tmp_path: Path) -> None:
    """The docs say: paste what openssl prints.  So that works, as it is."""
    line = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in",
                           str(sim_host.state_dir / "sim-cert.pem")],
                          capture_output=True, text=True, check=True).stdout
    assert line.lower().startswith("sha256 fingerprint=")
    for given in (line, line.strip().upper(), "SHA256:" + sim_host.fingerprint.lower()):
        out = cli(sim_host, tmp_path, "vms", "--fingerprint", given, XCP_FINGERPRINT="")
        assert out.returncode == 0, out.stderr
        assert "win-hvm" in out.stdout
    env_pin = cli(sim_host, tmp_path, "vms", XCP_FINGERPRINT=line)
    assert env_pin.returncode == 0, env_pin.stderr
