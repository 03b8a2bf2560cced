"""A pool member (``--member-listen``: a pool of two hosts) answers logins with
``HOST_IS_SLAVE [master]``.

Checked with real peers: the official XenAPI SDK gets ``XenAPI.Failure``, and
the client CLI (``xcpconsole vms --host <member>``) follows it to the master.  The
member is a real host with its own certificate, so the CLI is given both hosts'
fingerprints (a known_hosts file), as a user who remembered both would have.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import XenAPI

XCPCONSOLE = Path(sys.executable).parent / "xcpconsole"


@pytest.fixture
def pool(start_sim: Callable[..., Any]) -> tuple[Any, dict[str, Any]]:
    """A sim (tests/conftest.py's SimProcess) with a member on another free port, and
    sim.json's ``member`` entry; stopped by ``start_sim`` after the test."""
    sim = start_sim("--member-listen", "127.0.0.1:0")
    info = json.loads((sim.state_dir / "sim.json").read_text())
    return sim, info["member"]


def test_sim_json_names_the_member(pool) -> None:  # type: ignore[no-untyped-def]
    sim, member = pool
    assert member["port"] != sim.port
    assert member["url"] == f"https://127.0.0.1:{member['port']}"
    # Ports differ, so the master's port has to be in the address (see docs/simulator.md).
    assert member["master_address"] == f"127.0.0.1:{sim.port}"


def test_sdk_login_on_member_is_host_is_slave(pool) -> None:  # type: ignore[no-untyped-def]
    sim, member = pool
    for password in (sim.password, "wrong password"):  # the role is checked before the password
        session = XenAPI.Session(member["url"], ignore_ssl=True)
        with pytest.raises(XenAPI.Failure) as caught:
            session.xenapi.login_with_password(sim.user, password, "2.21", "tests")
        assert caught.value.details == ["HOST_IS_SLAVE", f"127.0.0.1:{sim.port}"]
    # Following it by hand works: the master takes the same credentials.
    host, _, port = caught.value.details[1].rpartition(":")
    master = XenAPI.Session(f"https://{host}:{port}", ignore_ssl=True)
    master.xenapi.login_with_password(sim.user, sim.password, "2.21", "tests")
    assert "win-hvm" in {r["name_label"] for r in master.xenapi.VM.get_all_records().values()}
    master.xenapi.session.logout()


def _jsonrpc(url: str, method: str, params: list[Any]) -> Any:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 7}).encode()
    request = urllib.request.Request(f"{url}/jsonrpc", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=ctx, timeout=30) as reply:
        return json.loads(reply.read())


def test_member_refuses_master_sessions_but_checks_them(pool) -> None:  # type: ignore[no-untyped-def]
    sim, member = pool
    s = sim.session()
    try:
        got = _jsonrpc(member["url"], "VM.get_all", [s._session])
        assert got["error"] == {"code": 1, "message": "HOST_IS_SLAVE",
                                "data": [f"127.0.0.1:{sim.port}"]}
        unknown = "OpaqueRef:00000000-0000-0000-0000-000000000000"
        got = _jsonrpc(member["url"], "VM.get_all", [unknown])
        assert got["error"]["message"] == "SESSION_INVALID"
        got = _jsonrpc(member["url"], "VM.nonsense", [s._session])
        assert got["error"]["message"] == "MESSAGE_METHOD_UNKNOWN"
        # The master itself still answers that session.
        assert s.xenapi.VM.get_all()
    finally:
        s.xenapi.session.logout()


def _known_hosts(sim: Any) -> Path:
    """A known_hosts file naming every host of the sim's pool (from sim.json)."""
    hosts = json.loads((sim.state_dir / "sim.json").read_text())["hosts"]
    assert len({h["fingerprint"] for h in hosts}) == len(hosts)  # each host its own
    path = sim.state_dir / "known_hosts"
    path.write_text("".join(
        f"{h['url'].removeprefix('https://')} SHA256:{h['fingerprint']}\n" for h in hosts))
    return path


def _cli_env(sim: Any) -> dict[str, str]:
    env = dict(os.environ, XCP_PASSWORD=sim.password, XCP_USER=sim.user,
               XCPCONSOLE_KNOWN_HOSTS=str(_known_hosts(sim)))
    env.pop("XCP_HOST", None)
    env.pop("XCP_FINGERPRINT", None)
    return env


def test_client_cli_follows_member_to_master(pool) -> None:  # type: ignore[no-untyped-def]
    sim, member = pool
    env = _cli_env(sim)
    done = subprocess.run(
        [str(XCPCONSOLE), "vms", "--host", member["url"], "--json"],
        capture_output=True, env=env, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert sim.password.encode() not in done.stdout + done.stderr
    names = {vm["name_label"] for vm in json.loads(done.stdout)}
    assert {"win-hvm", "debian-pv", "alpine-pv-text", "centos-halted"} <= names


def test_inventory_member_on_same_port_names_bare_address(start_sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Like a real pool (every host on 443): master and member on the same port, other
    loopback addresses; HOST_IS_SLAVE names the address only and the client keeps the port."""
    import socket

    from xcpconsole.sim.inventory import default_inventory_text

    with socket.socket() as probe:  # a port free on both addresses, for the next moment
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inventory = tmp_path / "pool.toml"
    inventory.write_text(default_inventory_text() + f'\n[member]\nlisten = "127.0.0.2:{port}"\n')
    sim = start_sim("--inventory", str(inventory), "--listen", f"127.0.0.1:{port}")
    member = json.loads((sim.state_dir / "sim.json").read_text())["member"]
    assert member["url"] == f"https://127.0.0.2:{port}"
    session = XenAPI.Session(member["url"], ignore_ssl=True)
    with pytest.raises(XenAPI.Failure) as caught:
        session.xenapi.login_with_password(sim.user, sim.password, "2.21", "tests")
    assert caught.value.details == ["HOST_IS_SLAVE", "127.0.0.1"]
    env = _cli_env(sim)
    done = subprocess.run(
        [str(XCPCONSOLE), "vms", "--host", member["url"], "--json"],
        capture_output=True, env=env, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert "win-hvm" in {vm["name_label"] for vm in json.loads(done.stdout)}


def test_inventory_member_table_is_validated() -> None:
    from xcpconsole.errors import ConfigError
    from xcpconsole.sim.inventory import member_listen_of

    assert member_listen_of({}) is None
    assert member_listen_of({"member": {"listen": "127.0.0.1:0"}}) == "127.0.0.1:0"
    with pytest.raises(ConfigError, match="unknown key"):
        member_listen_of({"member": {"listen": "127.0.0.1:0", "port": 1}})
    with pytest.raises(ConfigError, match=r"member\.listen"):
        member_listen_of({"member": {"listen": 8443}})
