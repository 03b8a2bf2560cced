"""PV guests' consoles, served by the virtual terminal (sim/vncterm), through /console."""

from __future__ import annotations

from .conftest import read_exactly, tls_connect

OK_REPLY = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"


def _console(sim_host, vm_name: str, protocol: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    s = sim_host.session()
    vm = s.xenapi.VM.get_by_name_label(vm_name)[0]
    for ref in s.xenapi.VM.get_consoles(vm):
        if s.xenapi.console.get_protocol(ref) == protocol:
            return s._session, ref
    raise AssertionError(f"{vm_name} has no {protocol} console")


def test_pv_rfb_console_is_vncterm(sim_host) -> None:  # type: ignore[no-untyped-def]
    sid, ref = _console(sim_host, "debian-pv", "rfb")
    with tls_connect(sim_host.port) as sock:
        sock.sendall(f"CONNECT /console?ref={ref}&session_id={sid} HTTP/1.0\r\n\r\n".encode())
        assert read_exactly(sock, len(OK_REPLY) + 12) == OK_REPLY + b"RFB 003.003\n"
        sock.sendall(b"RFB 003.003\n")
        assert read_exactly(sock, 4) == b"\x00\x00\x00\x01"  # security type None, chosen by 3.3
        sock.sendall(b"\x01")  # ClientInit, shared
        init = read_exactly(sock, 24)
        assert init[:4] == b"\x02\x80\x01\x80"  # 640 x 384
        name_len = int.from_bytes(init[20:24], "big")
        assert read_exactly(sock, name_len) == b"XenServer Virtual Terminal"


def test_control_domain_console(sim_host) -> None:  # type: ignore[no-untyped-def]
    sid, ref = _console(sim_host, "Control domain on host: xcp-sim", "rfb")
    with tls_connect(sim_host.port) as sock:
        sock.sendall(f"CONNECT /console?ref={ref}&session_id={sid} HTTP/1.0\r\n\r\n".encode())
        assert read_exactly(sock, len(OK_REPLY) + 12) == OK_REPLY + b"RFB 003.003\n"


def test_vt100_console_relays_text(sim_host) -> None:  # type: ignore[no-untyped-def]
    sid, ref = _console(sim_host, "alpine-pv-text", "vt100")
    with tls_connect(sim_host.port) as sock:
        sock.sendall(f"CONNECT /console?ref={ref}&session_id={sid} HTTP/1.0\r\n\r\n".encode())
        assert read_exactly(sock, len(OK_REPLY)) == OK_REPLY
        sock.sendall(b"\r")
        assert read_exactly(sock, 1)  # the terminal answers with bytes of its screen stream


def test_alpine_vm_prints_alpine_on_its_text_console(sim_host) -> None:  # type: ignore[no-untyped-def]
    """The vt100 stream of the default inventory's alpine-pv-text is Alpine's getty."""
    sid, ref = _console(sim_host, "alpine-pv-text", "vt100")
    with tls_connect(sim_host.port) as sock:
        sock.sendall(f"CONNECT /console?ref={ref}&session_id={sid} HTTP/1.0\r\n\r\n".encode())
        assert read_exactly(sock, len(OK_REPLY)) == OK_REPLY
        sock.sendall(b"root\r")  # typed at the login prompt (or dropped while booting)
        seen = b""
        sock.settimeout(10)
        while b":~# " not in seen:
            chunk = sock.recv(65536)
            assert chunk, seen[-400:]
            seen += chunk
            if b"Password" in chunk:
                sock.sendall(b"x\r")
            elif seen.endswith(b"login: "):
                sock.sendall(b"root\r")
        assert b"Welcome to Alpine!" in seen and b"Debian" not in seen
