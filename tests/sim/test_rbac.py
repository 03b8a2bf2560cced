"""Users with roles (``[[users]]``): what the official XenAPI SDK and ``/console`` see.

One simulated host with a read-only user, a VM operator (whose name needs HTML
escaping), a pool-admin that is not the local superuser, and
``limit_console_sessions`` on.  Replies are compared with xapi's
(``xapi_http.ml``, ``rbac.ml``, ``console.ml``, ``http_svr.ml``).
"""

from __future__ import annotations

import base64
import ssl
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from simproc import SimProcess, launch_sim  # tests/conftest.py

from .conftest import exchange, read_exactly, split_reply, tls_connect

OK_REPLY = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"
FORBIDDEN_BODY = (
    b"<html><body><h1>HTTP 403 forbidden</h1>Access to the requested resource is forbidden."
    b"</body></html>"
)
VM_OP_ROLES = "pool-admin, pool-operator, vm-power-admin, vm-admin, vm-operator"

VIEWER = ("viewer", "viewer-pw-1")
OPERATOR = ("op<&'\">", "operator-pw-2")
ADMIN = ("admin2", "admin-pw-3")

INVENTORY = """
[pool]
name_label = "rbac pool"
limit_console_sessions = true

[host]
hostname = "xcp-rbac"

[control_domain]
backend = "vncterm"
consoles = ["rfb"]
boot_script = "dom0"

[[users]]
name = "viewer"
password = "viewer-pw-1"
role = "read-only"

[[users]]
name = "op<&'\\">"
password = "operator-pw-2"
role = "vm-operator"

[[users]]
name = "admin2"
password = "admin-pw-3"
role = "pool-admin"

[[vm]]
name_label = "debian-pv"
power_state = "Running"
hvm = false
backend = "vncterm"
consoles = ["rfb"]

[[vm]]
name_label = "spare-pv"
power_state = "Running"
hvm = false
backend = "vncterm"
consoles = ["rfb"]
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    state = tmp_path_factory.mktemp("rbac")
    inventory = state / "inventory.toml"
    inventory.write_text(INVENTORY)
    host = launch_sim(state / "sim", "--inventory", str(inventory))
    try:
        yield host
    finally:
        host.stop()


def login(sim: SimProcess, user: tuple[str, str]) -> Any:
    s = XenAPI.Session(sim.url, ignore_ssl=True)
    s.xenapi.login_with_password(user[0], user[1], "2.21", "xcpconsole-tests")
    return s


def refs(sim: SimProcess) -> tuple[dict[str, str], dict[str, str]]:
    """VM refs and first rfb console refs by name_label (read as the superuser)."""
    s = sim.session()
    try:
        vms = {rec["name_label"]: ref for ref, rec in s.xenapi.VM.get_all_records().items()}
        consoles = {}
        for name, vm in vms.items():
            for cref in s.xenapi.VM.get_consoles(vm):
                if s.xenapi.console.get_protocol(cref) == "rfb":
                    consoles[name] = cref
        return vms, consoles
    finally:
        s.xenapi.session.logout()


DOM0 = "Control domain on host: xcp-rbac"


def connect(port: int, target: str, version: str = "1.0") -> bytes:
    """A CONNECT that the host refuses: its whole reply (the host closes)."""
    return exchange(port, f"CONNECT /console?{target} HTTP/{version}\r\n\r\n".encode())


def try_tunnel(port: int, target: str) -> bytes:
    """A CONNECT that may succeed: the reply's first bytes, then hang up."""
    with tls_connect(port) as sock:
        sock.sendall(f"CONNECT /console?{target} HTTP/1.0\r\n\r\n".encode())
        return read_exactly(sock, len(OK_REPLY))


def test_read_only_user_lists_everything(sim: SimProcess) -> None:
    s = login(sim, VIEWER)
    try:
        names = {r["name_label"] for r in s.xenapi.VM.get_all_records().values()}
        assert {"debian-pv", "spare-pv", DOM0} <= names
        assert s.xenapi.console.get_all_records()
        assert s.xenapi.session.get_auth_user_name(s._session) == "viewer"
        record = s.xenapi.session.get_record(s._session)
        assert record["is_local_superuser"] is False
        assert record["rbac_permissions"] == []
    finally:
        s.xenapi.session.logout()


@pytest.mark.parametrize("call", ["clean_shutdown", "hard_shutdown", "clean_reboot",
                                  "hard_reboot", "start"])
def test_read_only_user_cannot_change_power(sim: SimProcess, call: str) -> None:
    vms, _ = refs(sim)
    s = login(sim, VIEWER)
    try:
        args = (vms["debian-pv"], False, False) if call == "start" else (vms["debian-pv"],)
        with pytest.raises(XenAPI.Failure) as caught:
            getattr(s.xenapi.VM, call)(*args)
        assert caught.value.details == [
            "RBAC_PERMISSION_DENIED", f"vm.{call}",
            f"No permission in user session. (Roles with this permission: {VM_OP_ROLES})",
        ]
        assert s.xenapi.VM.get_power_state(vms["debian-pv"]) == "Running"
    finally:
        s.xenapi.session.logout()


def rpc(sim: SimProcess, method: str, *params: Any) -> dict[str, Any]:
    """One raw XML-RPC call (no SDK retry logic): the reply struct."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    proxy = xmlrpc.client.ServerProxy(sim.url, context=ctx)
    reply: dict[str, Any] = getattr(proxy, method)(*params)
    return reply


def test_parameter_count_and_session_come_before_rbac(sim: SimProcess) -> None:
    vms, _ = refs(sim)
    s = login(sim, VIEWER)
    sid = s._session
    reply = rpc(sim, "VM.clean_shutdown", sid)
    assert reply["ErrorDescription"] == ["MESSAGE_PARAMETER_COUNT_MISMATCH",
                                         "VM.clean_shutdown", "2", "1"]
    reply = rpc(sim, "VM.clean_shutdown", sid, "OpaqueRef:no-such-vm")
    assert reply["ErrorDescription"][:2] == ["RBAC_PERMISSION_DENIED", "vm.clean_shutdown"]
    s.xenapi.session.logout()
    reply = rpc(sim, "VM.clean_shutdown", sid, vms["debian-pv"])
    assert reply["ErrorDescription"] == ["SESSION_INVALID", sid]


def test_wrong_password_of_an_inventory_user(sim: SimProcess) -> None:
    s = XenAPI.Session(sim.url, ignore_ssl=True)
    with pytest.raises(XenAPI.Failure) as caught:
        s.xenapi.login_with_password("viewer", sim.password, "2.21", "tests")
    assert caught.value.details == ["SESSION_AUTHENTICATION_FAILED", "viewer",
                                    "Authentication failure"]


def test_read_only_console_is_403_before_anything_else(sim: SimProcess) -> None:
    _, consoles = refs(sim)
    s = login(sim, VIEWER)
    try:
        for target in (f"ref={consoles['debian-pv']}", "ref=OpaqueRef:not-a-console", "x=1"):
            for version in ("1.0", "1.1"):
                reply = connect(sim.port, f"{target}&session_id={s._session}", version)
                assert reply == (
                    f"HTTP/{version} 403 Forbidden\r\nContent-Length: {len(FORBIDDEN_BODY)}\r\n"
                    "Content-Type: text/html\r\nConnection: close\r\n"
                    "Cache-Control: no-cache, no-store\r\n\r\n"
                ).encode() + FORBIDDEN_BODY
        # the WebSocket form checks http/connect_console_ws, which read-only lacks too
        ws = exchange(sim.port, (
            f"GET /console?ref={consoles['debian-pv']}&session_id={s._session} HTTP/1.1\r\n"
            "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode())
        assert split_reply(ws)[0] == "HTTP/1.1 403 Forbidden"
    finally:
        s.xenapi.session.logout()
    # HTTP Basic makes a temporary session with the same role: still 403
    token = base64.b64encode(f"{VIEWER[0]}:{VIEWER[1]}".encode()).decode()
    reply = exchange(sim.port, (
        f"CONNECT /console?ref={consoles['debian-pv']} HTTP/1.0\r\n"
        f"Authorization: Basic {token}\r\n\r\n").encode())
    assert split_reply(reply)[0] == "HTTP/1.0 403 Forbidden"


def test_vm_operator_opens_guest_consoles_and_changes_power(sim: SimProcess) -> None:
    vms, consoles = refs(sim)
    s = login(sim, OPERATOR)
    try:
        perms = s.xenapi.session.get_rbac_permissions(s._session)
        assert {"http/connect_console", "vm.start", "vm.clean_shutdown"} <= set(perms)
        assert "vm.pool_migrate" not in perms and "http/connect_console/host_console" not in perms
        with tls_connect(sim.port) as sock:
            sock.sendall(f"CONNECT /console?ref={consoles['debian-pv']}&session_id={s._session}"
                         " HTTP/1.0\r\n\r\n".encode())
            assert read_exactly(sock, len(OK_REPLY) + 12) == OK_REPLY + b"RFB 003.003\n"
        s.xenapi.VM.hard_shutdown(vms["spare-pv"])
        assert s.xenapi.VM.get_power_state(vms["spare-pv"]) == "Halted"
        s.xenapi.VM.start(vms["spare-pv"], False, False)
        assert s.xenapi.VM.get_power_state(vms["spare-pv"]) == "Running"
    finally:
        s.xenapi.session.logout()


def test_control_domain_console_needs_pool_admin(sim: SimProcess) -> None:
    _, consoles = refs(sim)
    s = login(sim, OPERATOR)
    try:
        reply = connect(sim.port, f"ref={consoles[DOM0]}&session_id={s._session}")
    finally:
        s.xenapi.session.logout()
    status, _, body = split_reply(reply)
    assert status == "HTTP/1.0 500 Internal Error"
    assert body.decode() == (
        "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; "
        "please wait a while and try again. If the problem persists, please contact your "
        "support representative.<h1> Additional information </h1>RBAC_PERMISSION_DENIED: "
        "[ http/connect_console/host_console; No permission in user session. (Roles with "
        "this permission: pool-admin) ]</body></html>"
    )
    # a pool-admin subject (not the local superuser) may
    a = login(sim, ADMIN)
    try:
        assert a.xenapi.session.get_is_local_superuser(a._session) is False
        with tls_connect(sim.port) as sock:
            sock.sendall(f"CONNECT /console?ref={consoles[DOM0]}&session_id={a._session}"
                         " HTTP/1.0\r\n\r\n".encode())
            assert read_exactly(sock, len(OK_REPLY) + 12) == OK_REPLY + b"RFB 003.003\n"
    finally:
        a.xenapi.session.logout()


def test_console_limit_names_the_connected_user_html_escaped(sim: SimProcess) -> None:
    _, consoles = refs(sim)
    op = login(sim, OPERATOR)
    admin = login(sim, ADMIN)
    try:
        with tls_connect(sim.port) as held:
            held.sendall(f"CONNECT /console?ref={consoles['debian-pv']}&session_id={op._session}"
                         " HTTP/1.0\r\n\r\n".encode())
            assert read_exactly(held, len(OK_REPLY)) == OK_REPLY
            reply = connect(sim.port, f"ref={consoles['debian-pv']}&session_id={admin._session}")
        status, _, body = split_reply(reply)
        assert status == "HTTP/1.1 503 Connection Limit Exceeded"
        assert (b"<p>User 'op&lt;&amp;&apos;&quot;&gt;' is currently connected to this console."
                in body), body
        # once the operator's tunnel is gone, the admin gets in
        deadline = time.monotonic() + 10
        while True:
            reply = try_tunnel(sim.port,
                               f"ref={consoles['debian-pv']}&session_id={admin._session}")
            if reply == OK_REPLY or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert reply == OK_REPLY, reply
    finally:
        op.xenapi.session.logout()
        admin.xenapi.session.logout()


def test_inventory_users_are_validated(tmp_path: Path) -> None:
    import tomllib

    from xcpconsole.errors import ConfigError
    from xcpconsole.sim.inventory import build_model

    def build(users: str) -> None:
        build_model(tomllib.loads(users), user="root", password="pw", address="127.0.0.1",
                    port=443)

    build('[[users]]\nname = "a"\npassword = "b"\nrole = "vm-admin"\n')
    for bad, why in [
        ('[[users]]\nname = "a"\npassword = "b"\nrole = "god"\n', "role must be one of"),
        ('[[users]]\nname = "a"\npassword = "b"\n', "role must be one of"),
        ('[[users]]\nname = "a"\nrole = "read-only"\n', "needs a name and a password"),
        ('[[users]]\nname = "root"\npassword = "b"\nrole = "read-only"\n', "exists already"),
        ('[[users]]\nname = "a"\npassword = "b"\nrole = "read-only"\nuid = 1\n', "unknown key"),
        ('[pool]\nvm_console_idle_timeout = -1\n', "vm_console_idle_timeout"),
    ]:
        with pytest.raises(ConfigError, match=why):
            build(bad)
