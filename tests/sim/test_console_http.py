"""``/console`` byte for byte: the seed's transcript and the error replies."""

from __future__ import annotations

import base64
import subprocess

from .conftest import exchange, read_exactly, split_reply, tls_connect

OK_REPLY = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"
UNAUTHORISED_BODY = (
    b"<html><body><h1>HTTP 401 unauthorised</h1>Please check your credentials and retry."
    b"</body></html>"
)


def _refs(sim_host) -> tuple[str, dict[str, str], dict[str, str]]:  # type: ignore[no-untyped-def]
    """A fresh session, VM refs by name and first console ref by VM name."""
    s = sim_host.session()
    vms = {rec["name_label"]: ref for ref, rec in s.xenapi.VM.get_all_records().items()}
    consoles: dict[str, str] = {}
    for cref, rec in s.xenapi.console.get_all_records().items():
        name = next(n for n, r in vms.items() if r == rec["VM"])
        if rec["protocol"] == "rfb":
            consoles[name] = cref
    return s._session, vms, consoles


def test_seed_transcript_byte_for_byte(sim_host) -> None:  # type: ignore[no-untyped-def]
    sid, _, consoles = _refs(sim_host)
    with tls_connect(sim_host.port) as sock:
        ref = consoles["win-hvm"]
        sock.sendall(f"CONNECT /console?ref={ref}&session_id={sid} HTTP/1.0\r\n\r\n".encode())
        assert read_exactly(sock, len(OK_REPLY) + 12) == OK_REPLY + b"RFB 003.008\n"
        # The tunnel is a real RFB server: version and security handshake go through.
        sock.sendall(b"RFB 003.008\n")
        count = read_exactly(sock, 1)[0]
        assert count >= 1 and 1 in read_exactly(sock, count)  # security type None offered


def test_http11_request_same_200_line(sim_host) -> None:  # type: ignore[no-untyped-def]
    sid, _, consoles = _refs(sim_host)
    with tls_connect(sim_host.port) as sock:
        sock.sendall(
            f"CONNECT /console?ref={consoles['win-hvm']}&session_id={sid} HTTP/1.1\r\n"
            "Host: xcp-sim\r\n\r\n".encode()
        )
        assert read_exactly(sock, len(OK_REPLY) + 12) == OK_REPLY + b"RFB 003.008\n"


def test_no_session_is_401_in_request_version(sim_host) -> None:  # type: ignore[no-untyped-def]
    _, _, consoles = _refs(sim_host)
    ref = consoles["win-hvm"]
    for version in ("1.0", "1.1"):
        request = f"CONNECT /console?ref={ref} HTTP/{version}\r\n\r\n"
        reply = exchange(sim_host.port, request.encode())
        expected = (
            f"HTTP/{version} 401 Unauthorised\r\nContent-Length: {len(UNAUTHORISED_BODY)}\r\n"
            "Content-Type: text/html\r\nConnection: close\r\nCache-Control: no-cache, no-store\r\n"
            'WWW-Authenticate: Basic realm="connect_console"\r\n\r\n'
        ).encode() + UNAUTHORISED_BODY
        assert reply == expected


def test_unknown_or_logged_out_session_is_401(sim_host) -> None:  # type: ignore[no-untyped-def]
    s = sim_host.session()
    sid = s._session
    ref = s.xenapi.VM.get_consoles(s.xenapi.VM.get_by_name_label("win-hvm")[0])[0]
    s.xenapi.session.logout()
    for session in (sid, "OpaqueRef:00000000-0000-0000-0000-000000000000"):
        request = f"CONNECT /console?ref={ref}&session_id={session} HTTP/1.0\r\n\r\n"
        reply = exchange(sim_host.port, request.encode())
        assert reply.startswith(b"HTTP/1.0 401 Unauthorised\r\n")


def test_halted_vm_and_unknown_ref_are_500(sim_host) -> None:  # type: ignore[no-untyped-def]
    sid, vms, _ = _refs(sim_host)
    for ref in (vms["centos-halted"], "OpaqueRef:11111111-2222-3333-4444-555555555555", ""):
        reply = exchange(
            sim_host.port, f"CONNECT /console?ref={ref}&session_id={sid} HTTP/1.0\r\n\r\n".encode()
        )
        status, headers, body = split_reply(reply)
        assert status == "HTTP/1.0 500 Internal Error"
        assert headers["connection"] == "close"
        assert headers["content-type"] == "text/html"
        assert headers["cache-control"] == "no-cache, no-store"
        assert int(headers["content-length"]) == len(body)
        assert body.startswith(b"<html><body><h1>HTTP 500 internal server error</h1>")
    reply = exchange(sim_host.port, f"CONNECT /console?session_id={sid} HTTP/1.1\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 500 Internal Error\r\n")


def test_cookie_basic_auth_and_uuid(sim_host) -> None:  # type: ignore[no-untyped-def]
    sid, vms, consoles = _refs(sim_host)
    s = sim_host.session()
    vm_uuid = s.xenapi.VM.get_uuid(vms["win-hvm"])
    greeting = OK_REPLY + b"RFB 003.008\n"
    good = base64.b64encode(f"{sim_host.user}:{sim_host.password}".encode()).decode()
    bad = base64.b64encode(f"{sim_host.user}:wrong".encode()).decode()
    by_ref = f"CONNECT /console?ref={consoles['win-hvm']} HTTP/1.0\r\n"
    requests = [
        f"{by_ref}Cookie: session_id={sid}\r\n\r\n",
        f"CONNECT /console?uuid={vm_uuid}&session_id={sid} HTTP/1.0\r\n\r\n",
        f"{by_ref}Authorization: Basic {good}\r\n\r\n",
    ]
    for request in requests:
        with tls_connect(sim_host.port) as sock:
            sock.sendall(request.encode())
            assert read_exactly(sock, len(greeting)) == greeting
    reply = exchange(sim_host.port, f"{by_ref}Authorization: Basic {bad}\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.0 401 Unauthorised\r\n")


def test_socat_tunnel(sim_host) -> None:  # type: ignore[no-untyped-def]
    """The seed's tool: socat speaks TLS to the host and passes the raw bytes through."""
    sid, _, consoles = _refs(sim_host)
    request = f"CONNECT /console?ref={consoles['win-hvm']}&session_id={sid} HTTP/1.0\r\n\r\n"
    expected = OK_REPLY + b"RFB 003.008\n"
    proc = subprocess.Popen(
        ["socat", "-", f"OPENSSL:127.0.0.1:{sim_host.port},verify=0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(request.encode())
        proc.stdin.flush()  # stdin stays open, like a viewer bridged by socat
        got = b""
        while len(got) < len(expected):
            chunk = proc.stdout.read1(len(expected) - len(got))
            if not chunk:
                break
            got += chunk
        assert got == expected
    finally:
        proc.kill()
        proc.wait(30)
