"""A simulated pool of three hosts (``--hosts 3``), checked with real peers: the official
XenAPI SDK, raw TLS sockets (what each host really serves) and the ``/console`` bytes."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import ssl
import threading
import time
import urllib.request
import xmlrpc.client
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import XenAPI
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from .simpool import (
    OK_REPLY,
    PoolHost,
    PoolProcess,
    colon_hex,
    connect_console,
    launch_pool,
    pool_of,
    read_exactly,
    read_until,
    read_until_closed,
    served_certificate,
    sha256_of,
)

ERROR_500 = b"HTTP/1.0 500 Internal Error\r\n"


def _event_from(s: Any, classes: list[str], token: str, timeout: float) -> dict[str, Any]:
    return getattr(s.xenapi.event, "from")(classes, token, timeout)  # type: ignore[no-any-return]


def _raw(url: str) -> xmlrpc.client.ServerProxy:
    """An XML-RPC proxy that, unlike the SDK, neither logs in again nor raises on failure."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return xmlrpc.client.ServerProxy(url, context=ctx, allow_none=True)


def _slave_reply(master: PoolHost, member: PoolHost) -> list[str]:
    """What a member's HOST_IS_SLAVE names: the bare address when the ports agree (as on a
    real pool, all on 443), else address:port (docs/simulator.md)."""
    named = master.address if master.port == member.port else f"{master.address}:{master.port}"
    return ["HOST_IS_SLAVE", named]


def _xapi_time(value: Any) -> datetime.datetime:
    return datetime.datetime.strptime(str(value.value), "%Y%m%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC)


def _entry(pool: PoolProcess, address: str) -> PoolHost:
    return next(h for h in pool.hosts if h.address == address)


def _host_port(location: str) -> tuple[str | None, int | None]:
    parts = urlsplit(location)
    return parts.hostname, parts.port


def test_sim_json_lists_every_host(sim_pool: PoolProcess) -> None:
    info = sim_pool.info
    assert [h.name_label for h in sim_pool.hosts] == ["xcp-sim-1", "xcp-sim-2", "xcp-sim-3"]
    assert [h.address for h in sim_pool.hosts] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    for host in sim_pool.hosts:
        assert host.url == f"https://{host.address}:{host.port}"
    assert (info["url"], info["port"], info["fingerprint"]) == (
        sim_pool.master.url, sim_pool.master.port, sim_pool.master.fingerprint)
    assert len({h.fingerprint for h in sim_pool.hosts}) == 3  # a key pair each
    assert info["member"]["url"] == sim_pool.members[0].url


def test_login_on_a_member_is_host_is_slave(sim_pool: PoolProcess) -> None:
    for member in sim_pool.members:
        for password in (sim_pool.sim.password, "wrong"):  # role before password, as xapi
            session = XenAPI.Session(member.url, ignore_ssl=True)
            with pytest.raises(XenAPI.Failure) as caught:
                session.xenapi.login_with_password(sim_pool.sim.user, password, "2.21", "t")
            assert caught.value.details == _slave_reply(sim_pool.master, member)
    s = sim_pool.session()
    try:
        hosts = s.xenapi.host.get_all_records()
        assert sorted(h["address"] for h in hosts.values()) == [
            "127.0.0.1", "127.0.0.2", "127.0.0.3"]
        master = s.xenapi.pool.get_master(s.xenapi.pool.get_all()[0])
        assert hosts[master]["address"] == "127.0.0.1"
        assert s.xenapi.session.get_this_host(s._session) == master
        for ref, host in hosts.items():
            assert host["name_label"] == host["hostname"]
            assert s.xenapi.host.get_by_uuid(host["uuid"]) == ref
            assert s.xenapi.host.get_by_name_label(host["name_label"]) == [ref]
            # a valid session is refused by a member too: every call goes to the master
            member = _entry(sim_pool, host["address"])
            reply = _raw(member.url).host.get_all(s._session)
            if ref == master:
                assert reply["Status"] == "Success"
            else:
                assert reply["ErrorDescription"] == _slave_reply(sim_pool.master, member)
    finally:
        s.xenapi.session.logout()


def test_certificate_records_are_what_each_host_serves(sim_pool: PoolProcess) -> None:
    s = sim_pool.session()
    try:
        hosts = s.xenapi.host.get_all_records()
        certs = s.xenapi.Certificate.get_all_records()
        assert sorted(certs) == sorted(s.xenapi.Certificate.get_all())
        by_host = {rec["host"]: (ref, rec) for ref, rec in certs.items()}
        assert len(certs) == 3 and set(by_host) == set(hosts)
        now = datetime.datetime.now(datetime.UTC)
        for host_ref, host in hosts.items():
            ref, rec = by_host[host_ref]
            entry = _entry(sim_pool, host["address"])
            der = served_certificate(entry.address, entry.port)
            assert rec["type"] == "host"
            assert rec["fingerprint_sha256"] == sha256_of(der) == entry.fingerprint
            assert rec["fingerprint_sha1"] == colon_hex(hashlib.sha1(der).digest())
            assert rec["fingerprint"] == rec["fingerprint_sha256"]
            assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", rec["fingerprint_sha256"])
            assert host["certificates"] == [ref] == s.xenapi.host.get_certificates(host_ref)
            assert s.xenapi.Certificate.get_by_uuid(rec["uuid"]) == ref
            assert s.xenapi.Certificate.get_record(ref) == rec
            assert s.xenapi.Certificate.get_host(ref) == host_ref
            assert s.xenapi.Certificate.get_type(ref) == "host"
            assert s.xenapi.Certificate.get_fingerprint_sha256(ref) == entry.fingerprint
            pem = s.xenapi.host.get_server_certificate(host_ref)
            cert = x509.load_pem_x509_certificate(pem.encode())
            assert cert.public_bytes(serialization.Encoding.DER) == der
            cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert cn == host["address"]
            assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [host["address"]]
            not_before, not_after = _xapi_time(rec["not_before"]), _xapi_time(rec["not_after"])
            assert not_before == cert.not_valid_before_utc.replace(microsecond=0)
            assert not_after == cert.not_valid_after_utc.replace(microsecond=0)
            assert not_before < now < not_after
        reply = _raw(sim_pool.master.url).Certificate.get_record(s._session, "OpaqueRef:nope")
        assert reply["ErrorDescription"] == ["HANDLE_INVALID", "Certificate", "OpaqueRef:nope"]
    finally:
        s.xenapi.session.logout()


def test_vms_are_spread_and_each_host_serves_its_own(sim_pool: PoolProcess) -> None:
    s = sim_pool.session()
    try:
        hosts = s.xenapi.host.get_all_records()
        vms = s.xenapi.VM.get_all_records()
        consoles = s.xenapi.console.get_all_records()
        master = s.xenapi.pool.get_master(s.xenapi.pool.get_all()[0])
        guests = {rec["name_label"]: (ref, rec) for ref, rec in vms.items()
                  if rec["power_state"] == "Running" and not rec["is_control_domain"]}
        assert {hosts[rec["resident_on"]]["address"] for _, rec in guests.values()} == {
            "127.0.0.1", "127.0.0.2", "127.0.0.3"}
        assert guests["win-hvm"][1]["resident_on"] != master  # QEMU on a member
        assert guests["alpine-pv-text"][1]["resident_on"] != master  # text console too
        for host_ref, host in hosts.items():
            dom0 = vms[host["control_domain"]]
            assert dom0["is_control_domain"] and dom0["resident_on"] == host_ref
            assert dom0["name_label"] == f"Control domain on host: {host['hostname']}"
            assert sorted(host["resident_VMs"]) == sorted(
                ref for ref, rec in vms.items() if rec["resident_on"] == host_ref)
        for cref, con in consoles.items():
            resident = _entry(sim_pool, hosts[vms[con["VM"]]["resident_on"]]["address"])
            assert con["location"] == f"{resident.url}/console?ref={cref}"
        _, hvm = guests["win-hvm"]
        location = consoles[hvm["consoles"][0]]["location"]
        sock, head, rest = connect_console(location, s._session)
        with sock:
            assert head == OK_REPLY
            assert rest + read_exactly(sock, 12 - len(rest)) == b"RFB 003.008\n"
        for other in sim_pool.hosts:  # every other host refuses it: not resident there
            if other.address != _host_port(location)[0]:
                sock, head, _ = connect_console(location, s._session,
                                                at=(other.address, other.port))
                with sock:
                    assert head.startswith(ERROR_500)
    finally:
        s.xenapi.session.logout()


def test_pool_migrate_moves_the_console_and_closes_old_tunnels(sim_pool: PoolProcess) -> None:
    s, watcher = sim_pool.session(), sim_pool.session()
    sid = s._session
    try:
        vm = s.xenapi.VM.get_by_name_label("alpine-pv-text")[0]
        before = s.xenapi.VM.get_record(vm)
        old_host = before["resident_on"]
        target = s.xenapi.pool.get_master(s.xenapi.pool.get_all()[0])
        assert target != old_host
        old = {s.xenapi.console.get_protocol(c): s.xenapi.console.get_location(c)
               for c in before["consoles"]}
        # On the old host: a vt100 tunnel where something is typed, and an RFB tunnel.
        vt, head, rest = connect_console(old["vt100"], sid)
        assert head == OK_REPLY
        read_until(vt, b"login:")  # the boot is over: typing is echoed
        vt.sendall(b"pool-marker-42")
        assert b"pool-marker-42" in read_until(vt, b"pool-marker-42")
        rfb, head, rest = connect_console(old["rfb"], sid)
        assert head == OK_REPLY
        assert rest + read_exactly(rfb, 12 - len(rest)) == b"RFB 003.003\n"
        # Someone follows the VMs and consoles with event.from, blocking in another thread.
        token = _event_from(watcher, ["vm", "console"], "", 0.0)["token"]
        result: dict[str, Any] = {}

        def follow() -> None:
            started = time.monotonic()
            result["batch"] = _event_from(watcher, ["vm", "console"], token, 60.0)
            result["took"] = time.monotonic() - started

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive()  # nothing changed yet: the call blocks ...
        assert s.xenapi.VM.get_power_state(vm) == "Running"  # ... and nobody else waits
        s.xenapi.VM.pool_migrate(vm, target, {"live": "true"})
        thread.join(30)
        assert not thread.is_alive() and result["took"] < 30
        after = s.xenapi.VM.get_record(vm)
        assert after["resident_on"] == target == s.xenapi.VM.get_resident_on(vm)
        assert after["power_state"] == "Running"
        assert set(after["consoles"]).isdisjoint(before["consoles"])  # records re-created
        new = {s.xenapi.console.get_protocol(c): s.xenapi.console.get_location(c)
               for c in after["consoles"]}
        master = sim_pool.master
        for location in new.values():
            assert _host_port(location) == (master.address, master.port)
        assert vm in s.xenapi.host.get_resident_VMs(target)
        assert vm not in s.xenapi.host.get_resident_VMs(old_host)
        # The old host's tunnels were closed, and it refuses the console now.
        with vt, rfb:
            read_until_closed(vt)
            read_until_closed(rfb)
        sock, head, _ = connect_console(old["rfb"], sid)
        with sock:
            assert head.startswith(ERROR_500)
        # The new host serves it, and it is the same guest: what was typed is on screen.
        vt2, head, rest = connect_console(new["vt100"], sid)
        with vt2:
            assert head == OK_REPLY
            assert b"pool-marker-42" in rest + read_until(vt2, b"pool-marker-42")
        rfb2, head, rest = connect_console(new["rfb"], sid)
        with rfb2:
            assert head == OK_REPLY
            assert rest + read_exactly(rfb2, 12 - len(rest)) == b"RFB 003.003\n"
        # What event.from reported.
        batch = result["batch"]
        seen = {(e["class"], e["operation"], e["ref"]) for e in batch["events"]}
        assert ("vm", "mod", vm) in seen
        assert all(("console", "del", c) in seen for c in before["consoles"])
        assert all(("console", "add", c) in seen for c in after["consoles"])
        vm_event = next(e for e in batch["events"] if e["ref"] == vm)
        assert vm_event["snapshot"]["resident_on"] == target
        for event in batch["events"]:
            if event["operation"] == "add":
                assert event["snapshot"]["location"] in new.values()
            if event["operation"] == "del":
                assert "snapshot" not in event
        assert batch["token"] > token
        s.xenapi.VM.pool_migrate(vm, old_host, {})  # as it was, for the other tests
        assert s.xenapi.VM.get_resident_on(vm) == old_host
    finally:
        s.xenapi.session.logout()
        watcher.xenapi.session.logout()


def test_migrating_the_qemu_guest_between_members(sim_pool: PoolProcess) -> None:
    s = sim_pool.session()
    try:
        vm = s.xenapi.VM.get_by_name_label("win-hvm")[0]
        home = s.xenapi.VM.get_resident_on(vm)
        hosts = s.xenapi.host.get_all_records()
        master = s.xenapi.pool.get_master(s.xenapi.pool.get_all()[0])
        target = next(ref for ref in hosts if ref not in (home, master))
        old_location = s.xenapi.console.get_location(s.xenapi.VM.get_consoles(vm)[0])
        s.xenapi.VM.pool_migrate(vm, target, {})
        location = s.xenapi.console.get_location(s.xenapi.VM.get_consoles(vm)[0])
        there = _entry(sim_pool, hosts[target]["address"])
        assert _host_port(location) == (there.address, there.port)
        sock, head, rest = connect_console(location, s._session)
        with sock:
            assert head == OK_REPLY
            assert rest + read_exactly(sock, 12 - len(rest)) == b"RFB 003.008\n"
        sock, head, _ = connect_console(old_location, s._session)
        with sock:
            assert head.startswith(ERROR_500)
        s.xenapi.VM.pool_migrate(vm, home, {})
    finally:
        s.xenapi.session.logout()


def test_pool_migrate_errors(sim_pool: PoolProcess) -> None:
    s = sim_pool.session()
    proxy = _raw(sim_pool.master.url)
    try:
        vms = s.xenapi.VM.get_all_records()
        by_name = {rec["name_label"]: ref for ref, rec in vms.items()}
        host = s.xenapi.pool.get_master(s.xenapi.pool.get_all()[0])
        template = next(ref for ref, rec in vms.items() if rec["is_a_template"])
        dom0 = next(ref for ref, rec in vms.items() if rec["is_control_domain"])
        sid = s._session
        cases = [
            ((by_name["centos-halted"], host, {}),
             ["VM_BAD_POWER_STATE", by_name["centos-halted"], "running", "halted"]),
            ((template, host, {}), ["VM_IS_TEMPLATE", template]),
            ((dom0, host, {}), ["OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0"]),
            ((by_name["debian-pv"], "OpaqueRef:nope", {}),
             ["HANDLE_INVALID", "host", "OpaqueRef:nope"]),
            (("OpaqueRef:nope", host, {}), ["HANDLE_INVALID", "VM", "OpaqueRef:nope"]),
            ((by_name["debian-pv"], host, "fast"), ["FIELD_TYPE_ERROR", "options"]),
        ]
        for args, expected in cases:
            reply = proxy.VM.pool_migrate(sid, *args)
            assert reply == {"Status": "Failure", "ErrorDescription": expected}, args
        reply = proxy.VM.pool_migrate(sid, by_name["debian-pv"], host)
        assert reply["ErrorDescription"] == ["MESSAGE_PARAMETER_COUNT_MISMATCH",
                                             "VM.pool_migrate", "4", "3"]
        member = sim_pool.members[0]
        reply = _raw(member.url).VM.pool_migrate(sid, by_name["debian-pv"], host, {})
        assert reply["ErrorDescription"] == _slave_reply(sim_pool.master, member)
        assert vms[by_name["debian-pv"]]["resident_on"] == s.xenapi.VM.get_resident_on(
            by_name["debian-pv"])  # nothing moved
    finally:
        s.xenapi.session.logout()


def test_event_from_first_call_timeout_and_errors(sim_pool: PoolProcess) -> None:
    s = sim_pool.session()
    try:
        vms = s.xenapi.VM.get_all()
        first = _event_from(s, ["VM"], "", 0.0)  # class names are case-insensitive
        assert sorted(e["ref"] for e in first["events"]) == sorted(vms)
        assert {(e["class"], e["operation"]) for e in first["events"]} == {("vm", "add")}
        assert all(e["snapshot"]["uuid"] == s.xenapi.VM.get_uuid(e["ref"])
                   for e in first["events"])
        counts = first["valid_ref_counts"]
        assert counts["vm"] == len(vms) and counts["host"] == 3 and counts["pool"] == 1
        assert re.fullmatch(r"[0-9]{20},[0-9]{20}", first["token"])
        certificates = _event_from(s, ["certificate"], "", 0.0)
        assert len(certificates["events"]) == 3
        started = time.monotonic()
        quiet = _event_from(s, ["certificate"], certificates["token"], 1.0)
        took = time.monotonic() - started
        assert quiet["events"] == [] and quiet["token"] == certificates["token"]
        assert 0.9 <= took < 15
        one = _event_from(s, [f"VM/{vms[0]}"], "", 0.0)
        assert [e["ref"] for e in one["events"]] == [vms[0]]
        everything = _event_from(s, ["*"], "", 0.0)
        classes = {e["class"] for e in everything["events"]}
        assert {"vm", "console", "host", "pool", "certificate"} <= classes
        # a power change is reported too
        pv = s.xenapi.VM.get_by_name_label("debian-pv")[0]
        s.xenapi.VM.clean_reboot(pv)
        batch = _event_from(s, ["vm"], first["token"], 10.0)
        rebooted = [e for e in batch["events"] if e["ref"] == pv]
        assert rebooted and rebooted[0]["operation"] == "mod"
        assert rebooted[0]["snapshot"]["domid"] == s.xenapi.VM.get_domid(pv)
        proxy = _raw(sim_pool.master.url)
        for token, code in (("not-a-token", "EVENT_FROM_TOKEN_PARSE_FAILURE"),
                            ("1,2,3", "EVENT_FROM_TOKEN_PARSE_FAILURE")):
            reply = getattr(proxy.event, "from")(s._session, ["vm"], token, 0.0)
            assert reply["ErrorDescription"] == [code, token]
        reply = getattr(proxy.event, "from")(s._session, ["vm", 5], "", 0.0)
        assert reply["ErrorDescription"] == ["EVENT_SUBSCRIPTION_PARSE_FAILURE", "5"]
        reply = getattr(proxy.event, "from")(s._session, ["vm"], "", "soon")
        assert reply["ErrorDescription"] == ["FIELD_TYPE_ERROR", "timeout"]
        reply = getattr(proxy.event, "from")(s._session, ["vm"], "")
        assert reply["ErrorDescription"][0] == "MESSAGE_PARAMETER_COUNT_MISMATCH"
    finally:
        s.xenapi.session.logout()


def _jsonrpc(url: str, method: str, params: list[Any]) -> Any:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).encode()
    request = urllib.request.Request(f"{url}/jsonrpc", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=ctx, timeout=30) as reply:
        return json.loads(reply.read())


def test_event_from_ends_when_its_session_logs_out(sim_pool: PoolProcess) -> None:
    s = sim_pool.session()
    sid = s._session
    token = _event_from(s, ["certificate"], "", 0.0)["token"]
    result: dict[str, Any] = {}

    def block() -> None:
        result["reply"] = getattr(_raw(sim_pool.master.url).event, "from")(
            sid, ["certificate"], token, 60.0)

    thread = threading.Thread(target=block, daemon=True)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive()
    assert _jsonrpc(sim_pool.master.url, "session.logout", [sid])["result"] == ""
    thread.join(15)
    assert not thread.is_alive()
    assert result["reply"]["ErrorDescription"] == ["SESSION_INVALID", sid]


_LIGHT_POOL = """
[[hosts]]
name_label = "host-a"
[[hosts]]
name_label = "host-b"
[[hosts]]
name_label = "host-c"

[[vm]]
name_label = "pv-b"
power_state = "Running"
hvm = false
backend = "vncterm"
host = "host-b"
"""


@pytest.fixture
def light_pool(start_sim, tmp_path: Path) -> PoolProcess:  # type: ignore[no-untyped-def]
    """A pool of three hosts with one PV guest (no QEMU), for tests that change the pool."""
    inventory = tmp_path / "pool.toml"
    inventory.write_text(_LIGHT_POOL)
    return launch_pool(start_sim, "--inventory", str(inventory))


def test_designate_new_master(light_pool: PoolProcess) -> None:
    pool = light_pool
    a, b, c = pool.hosts
    assert [h.name_label for h in pool.hosts] == ["host-a", "host-b", "host-c"]
    s = pool.session()
    sid = s._session
    hosts = s.xenapi.host.get_all_records()
    by_address = {rec["address"]: ref for ref, rec in hosts.items()}
    pool_ref = s.xenapi.pool.get_all()[0]
    token = _event_from(s, ["pool"], "", 0.0)["token"]
    assert s.xenapi.pool.get_master(pool_ref) == by_address[a.address]
    s.xenapi.pool.designate_new_master(by_address[b.address])
    # The old master is a member now: logins and calls name the new master.
    with pytest.raises(XenAPI.Failure) as caught:
        XenAPI.Session(a.url, ignore_ssl=True).xenapi.login_with_password(
            pool.sim.user, pool.sim.password, "2.21", "t")
    assert caught.value.details == _slave_reply(b, a)
    assert _raw(a.url).VM.get_all(sid)["ErrorDescription"] == _slave_reply(b, a)
    with pytest.raises(XenAPI.Failure) as caught:
        XenAPI.Session(c.url, ignore_ssl=True).xenapi.login_with_password(
            pool.sim.user, pool.sim.password, "2.21", "t")
    assert caught.value.details == _slave_reply(b, c)
    # The session made on the old master is still valid on the new one.
    follower = XenAPI.Session(b.url, ignore_ssl=True)
    follower._session = sid
    assert follower.xenapi.pool.get_master(pool_ref) == by_address[b.address]
    assert sorted(follower.xenapi.host.get_all()) == sorted(hosts)
    batch = _event_from(follower, ["pool"], token, 10.0)
    assert [(e["operation"], e["ref"]) for e in batch["events"]] == [("mod", pool_ref)]
    assert batch["events"][0]["snapshot"]["master"] == by_address[b.address]
    fresh = pool.session(b.url)  # the new master takes logins
    fresh.xenapi.session.logout()
    # Already the master: nothing happens; an unknown host is HANDLE_INVALID.
    follower.xenapi.pool.designate_new_master(by_address[b.address])
    reply = _raw(b.url).pool.designate_new_master(sid, "OpaqueRef:nope")
    assert reply["ErrorDescription"] == ["HANDLE_INVALID", "host", "OpaqueRef:nope"]
    # And back.
    follower.xenapi.pool.designate_new_master(by_address[a.address])
    assert s.xenapi.pool.get_master(pool_ref) == by_address[a.address]
    s.xenapi.session.logout()


def test_pool_console_options(light_pool: PoolProcess) -> None:
    s = light_pool.session()
    try:
        pool_ref = s.xenapi.pool.get_all()[0]
        token = _event_from(s, ["pool"], "", 0.0)["token"]
        assert s.xenapi.pool.get_limit_console_sessions(pool_ref) is False
        assert s.xenapi.pool.get_vm_console_idle_timeout(pool_ref) == "0"
        s.xenapi.pool.set_limit_console_sessions(pool_ref, True)
        s.xenapi.pool.set_vm_console_idle_timeout(pool_ref, 7)
        assert s.xenapi.pool.get_limit_console_sessions(pool_ref) is True
        assert s.xenapi.pool.get_vm_console_idle_timeout(pool_ref) == "7"  # ints as strings
        record = s.xenapi.pool.get_record(pool_ref)
        assert record["limit_console_sessions"] is True
        assert record["vm_console_idle_timeout"] == "7"
        batch = _event_from(s, ["pool"], token, 10.0)
        assert batch["events"][-1]["snapshot"]["vm_console_idle_timeout"] == "7"
        assert batch["events"][-1]["snapshot"]["limit_console_sessions"] is True
        proxy = _raw(light_pool.master.url)
        sid = s._session
        cases = [
            (proxy.pool.set_vm_console_idle_timeout, (pool_ref, -1),
             ["INVALID_VALUE", "vm_console_idle_timeout", "-1"]),
            (proxy.pool.set_vm_console_idle_timeout, (pool_ref, "soon"),
             ["FIELD_TYPE_ERROR", "value"]),
            (proxy.pool.set_limit_console_sessions, (pool_ref, "maybe"),
             ["FIELD_TYPE_ERROR", "value"]),
            (proxy.pool.set_limit_console_sessions, ("OpaqueRef:nope", False),
             ["HANDLE_INVALID", "pool", "OpaqueRef:nope"]),
        ]
        for method, args, expected in cases:
            assert method(sid, *args)["ErrorDescription"] == expected
        assert s.xenapi.pool.get_vm_console_idle_timeout(pool_ref) == "7"  # unchanged
        s.xenapi.pool.set_limit_console_sessions(pool_ref, False)
        s.xenapi.pool.set_vm_console_idle_timeout(pool_ref, 0)
        assert s.xenapi.pool.get_limit_console_sessions(pool_ref) is False
    finally:
        s.xenapi.session.logout()


def test_fixed_port_pool_names_the_bare_master_address(start_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Like a real pool (every host on 443): all hosts on one port, so HOST_IS_SLAVE names
    the address only; and a restart keeps every host's certificate."""
    import socket

    port = 0
    for _ in range(20):  # a port free on all three addresses, for the next moment
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            for address in ("127.0.0.2", "127.0.0.3"):
                with socket.socket() as probe:
                    probe.bind((address, port))
            break
        except OSError:
            continue
    inventory = tmp_path / "pool.toml"
    inventory.write_text(_LIGHT_POOL)
    state = tmp_path / "state"
    # (launch_sim puts --listen 127.0.0.1:0 first; the later --listen wins)
    sim = start_sim("--inventory", str(inventory), "--listen", f"127.0.0.1:{port}",
                    state_dir=state)
    pool = pool_of(sim)
    assert [h.port for h in pool.hosts] == [port] * 3
    member = pool.members[0]
    with pytest.raises(XenAPI.Failure) as caught:
        XenAPI.Session(member.url, ignore_ssl=True).xenapi.login_with_password(
            sim.user, sim.password, "2.21", "t")
    assert caught.value.details == ["HOST_IS_SLAVE", "127.0.0.1"]
    fingerprints = [h.fingerprint for h in pool.hosts]
    sim.stop()
    again = pool_of(start_sim("--inventory", str(inventory), "--listen", f"127.0.0.1:{port}",
                              state_dir=state))
    assert [h.fingerprint for h in again.hosts] == fingerprints
    assert [sha256_of(served_certificate(h.address, h.port)) for h in again.hosts] == \
        fingerprints
