"""XapiSession against the simulated host (official SDK underneath).

Covers lookups, errors users will meet (wrong password, unknown or ambiguous
VM, halted VM), the SDK's own re-login after SESSION_INVALID, HOST_IS_SLAVE
redirection to the master, and that the session id never leaks.
"""

from __future__ import annotations

import logging
import ssl
import xmlrpc.client
from pathlib import Path

import pytest

from xcpconsole.address import format_hostport
from xcpconsole.errors import AmbiguousError, AuthError, NotFoundError, TunnelError, XapiError
from xcpconsole.settings import HostSettings
from xcpconsole.trust import KnownHosts
from xcpconsole.xapi import XapiSession

TWINS = """
[pool]
name_label = "twins"
console_location = "uuid"
[host]
hostname = "twinhost"
[[vm]]
name_label = "twin"
uuid = "11111111-1111-4111-8111-111111111111"
power_state = "Halted"
backend = "none"
consoles = []
[[vm]]
name_label = "twin"
uuid = "22222222-2222-4222-8222-222222222222"
power_state = "Halted"
backend = "none"
consoles = []
[[vm]]
name_label = "text"
power_state = "Running"
hvm = false
backend = "vncterm"
consoles = ["rfb", "vt100"]
"""


def settings_of(sim, tmp_path: Path, **kw: object) -> HostSettings:  # type: ignore[no-untyped-def]
    base: dict[str, object] = dict(url=sim.url, user=sim.user, password=sim.password,
                                   fingerprint=sim.fingerprint,
                                   known_hosts=tmp_path / "known_hosts")
    base.update(kw)
    return HostSettings(**base)  # type: ignore[arg-type]


async def test_lists_like_the_sdk_sees_them(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sdk = sim_host.session()
    try:
        records = sdk.xenapi.VM.get_all_records()
        console_records = sdk.xenapi.console.get_all_records()
    finally:
        sdk.xenapi.session.logout()
    async with await XapiSession.login(settings_of(sim_host, tmp_path)) as xapi:
        vms = await xapi.vms()
        everything = await xapi.vms(include_control_domain=True)
        consoles = await xapi.consoles()
    want = {r["uuid"] for r in records.values()
            if not r["is_a_template"] and not r["is_control_domain"]}
    assert {vm.uuid for vm in vms} == want
    assert {vm.uuid for vm in everything} - want == {
        r["uuid"] for r in records.values() if r["is_control_domain"]}
    by_name = {vm.name_label: vm for vm in vms}
    assert by_name["alpine-pv-text"].console_protocols == ("rfb", "vt100")
    assert by_name["centos-halted"].power_state == "Halted"
    assert by_name["centos-halted"].console_protocols == ()
    assert {(c.uuid, c.protocol, c.location) for c in consoles} == {
        (r["uuid"], r["protocol"], r["location"]) for r in console_records.values()}
    for c in consoles:
        assert records[c.vm_ref]["uuid"] == c.vm_uuid
        assert records[c.vm_ref]["name_label"] == c.vm_name_label


async def test_find_by_name_and_uuid_and_errors(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with await XapiSession.login(settings_of(sim_host, tmp_path)) as xapi:
        vm = await xapi.find_vm("win-hvm")
        assert (await xapi.find_vm(vm.uuid.upper())).ref == vm.ref
        with pytest.raises(NotFoundError, match="no-such-vm"):
            await xapi.find_vm("no-such-vm")
        with pytest.raises(TunnelError, match="halted"):
            await xapi.find_console("centos-halted")
        with pytest.raises(NotFoundError, match="no vt100 console"):
            await xapi.find_console("win-hvm", "vt100")
        console = await xapi.find_console("alpine-pv-text", "vt100")
        assert console.protocol == "vt100" and console.vm_name_label == "alpine-pv-text"
        with pytest.raises(XapiError) as info:
            await xapi.call("VM.get_record", "OpaqueRef:0d7b1c8e-aaaa-bbbb-cccc-0123456789ab")
        assert info.value.code == "HANDLE_INVALID"
        assert "0123456789ab" not in str(info.value)


async def test_ambiguous_name_lists_candidates(start_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inv = tmp_path / "twins.toml"
    inv.write_text(TWINS)
    sim = start_sim("--inventory", str(inv))
    async with await XapiSession.login(settings_of(sim, tmp_path)) as xapi:
        with pytest.raises(AmbiguousError) as info:
            await xapi.find_vm("twin")
        text = str(info.value)
        assert "11111111-1111-4111-8111-111111111111" in text
        assert "22222222-2222-4222-8222-222222222222" in text
        assert (await xapi.find_vm("22222222-2222-4222-8222-222222222222")).name_label == "twin"
        console = await xapi.find_console("text", "vt100")
        assert "uuid=" + console.uuid in console.location


async def test_wrong_password_is_auth_error(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AuthError) as info:
        await XapiSession.login(settings_of(sim_host, tmp_path, password="wrong-pw"))
    assert "wrong-pw" not in str(info.value)


async def test_sdk_relogs_in_after_session_invalid(sim_host, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    xapi = await XapiSession.login(settings_of(sim_host, tmp_path))
    old = xapi.session_id
    raw = xmlrpc.client.ServerProxy(sim_host.url, context=ssl._create_unverified_context())
    assert raw.session.logout(old)["Status"] == "Success"
    assert raw.VM.get_all(old)["ErrorDescription"][0] == "SESSION_INVALID"
    vms = await xapi.vms()  # the SDK logs in again with the remembered credentials
    assert vms
    new = xapi.session_id
    assert new != old and new.startswith("OpaqueRef:")
    await xapi.logout()
    assert raw.VM.get_all(new)["ErrorDescription"][0] == "SESSION_INVALID"
    for sid in (old, new):
        assert sid not in caplog.text and sid not in repr(xapi)


async def test_follows_host_is_slave_to_master(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tlspeer import TlsPeer, make_cert

    body = xmlrpc.client.dumps(
        ({"Status": "Failure", "ErrorDescription": ["HOST_IS_SLAVE", "127.0.0.1"]},),
        methodresponse=True).encode()
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nConnection: close\r\n"
             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    files, _, _ = make_cert(tmp_path, "member")
    member = TlsPeer(files, reply=reply, host="127.0.0.2", port=sim_host.port)
    try:
        known = KnownHosts(tmp_path / "known_hosts")
        known.add(format_hostport("127.0.0.2", sim_host.port), files.fingerprint)
        known.add(format_hostport("127.0.0.1", sim_host.port), sim_host.fingerprint)
        settings = settings_of(sim_host, tmp_path, url=f"https://127.0.0.2:{sim_host.port}",
                               fingerprint=None)
        async with await XapiSession.login(settings) as xapi:
            assert xapi.settings.url == sim_host.url
            assert any(vm.name_label == "win-hvm" for vm in await xapi.vms())
    finally:
        member.close()
    assert len(member.received) == 1 and member.received[0].startswith(b"POST /")
