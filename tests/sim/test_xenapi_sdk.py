"""The official XenAPI SDK, unmodified, against the simulated host."""

from __future__ import annotations

import json
import ssl
import urllib.request
import xmlrpc.client

import pytest
import XenAPI

from .conftest import read_exactly, tls_connect


def raw_proxy(sim_host) -> xmlrpc.client.ServerProxy:  # type: ignore[no-untyped-def]
    ctx = ssl._create_unverified_context()
    return xmlrpc.client.ServerProxy(sim_host.url, context=ctx, allow_none=True)


def test_login_lists_vms_and_consoles(sim_host) -> None:  # type: ignore[no-untyped-def]
    s = sim_host.session()
    try:
        assert s.API_version == "2.21"
        vms = s.xenapi.VM.get_all_records()
        by_name = {rec["name_label"]: (ref, rec) for ref, rec in vms.items()}
        dom0 = [rec for rec in vms.values() if rec["is_control_domain"]]
        templates = [rec for rec in vms.values() if rec["is_a_template"]]
        assert len(dom0) == 1 and dom0[0]["power_state"] == "Running"
        assert templates and all(t["power_state"] == "Halted" for t in templates)
        ref, hvm = by_name["win-hvm"]
        assert hvm["power_state"] == "Running"
        assert hvm["HVM_boot_policy"] == "BIOS order"
        assert hvm["memory_static_max"] == str(64 * 1024 * 1024)  # ints travel as strings
        assert by_name["centos-halted"][1]["consoles"] == []
        assert by_name["centos-halted"][1]["resident_on"] == "OpaqueRef:NULL"
        host = s.xenapi.host.get_all()[0]
        assert hvm["resident_on"] == host
        assert s.xenapi.session.get_this_host(s._session) == host

        consoles = s.xenapi.console.get_all_records()
        pv_text = by_name["alpine-pv-text"][1]
        assert sorted(consoles[c]["protocol"] for c in pv_text["consoles"]) == ["rfb", "vt100"]
        for cref, rec in consoles.items():
            assert rec["location"] == f"{sim_host.url}/console?ref={cref}"
            assert s.xenapi.console.get_location(cref) == rec["location"]
            assert s.xenapi.console.get_VM(cref) == rec["VM"]
            assert cref in vms[rec["VM"]]["consoles"]
        assert s.xenapi.VM.get_consoles(ref) == hvm["consoles"]
        assert s.xenapi.VM.get_by_uuid(hvm["uuid"]) == ref
        assert s.xenapi.VM.get_by_name_label("win-hvm") == [ref]
        assert s.xenapi.VM.get_power_state(ref) == "Running"
    finally:
        s.xenapi.session.logout()


def test_wrong_password_fails_authentication(sim_host) -> None:  # type: ignore[no-untyped-def]
    s = XenAPI.Session(sim_host.url, ignore_ssl=True)
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.login_with_password(sim_host.user, sim_host.password + "x", "2.21", "t")
    assert info.value.details[0] == "SESSION_AUTHENTICATION_FAILED"
    assert info.value.details[1] == sim_host.user


def test_session_invalid_after_logout(sim_host) -> None:  # type: ignore[no-untyped-def]
    s = sim_host.session()
    old = s._session
    s.xenapi.session.logout()
    reply = raw_proxy(sim_host).VM.get_all(old)
    assert reply == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", old]}
    with pytest.raises(xmlrpc.client.Fault):  # the SDK has no credentials left to retry with
        s.xenapi.VM.get_all()


def test_error_codes(sim_host) -> None:  # type: ignore[no-untyped-def]
    s = sim_host.session()
    proxy = raw_proxy(sim_host)
    sid = s._session
    try:
        vm = s.xenapi.VM.get_by_name_label("win-hvm")[0]
        cases = [
            (proxy.VM.frobnicate(sid), ["MESSAGE_METHOD_UNKNOWN", "VM.frobnicate"]),
            (proxy.VM.get_record(sid), ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record",
                                        "2", "1"]),
            (proxy.VM.get_record(sid, "OpaqueRef:nope"), ["HANDLE_INVALID", "VM",
                                                          "OpaqueRef:nope"]),
            (proxy.console.get_record(sid, vm), ["HANDLE_INVALID", "console", vm]),
            (proxy.VM.get_by_uuid(sid, "not-a-uuid"), ["UUID_INVALID", "VM", "not-a-uuid"]),
            (proxy.VM.start(sid, vm, False, False), ["VM_BAD_POWER_STATE", vm, "halted",
                                                     "running"]),
        ]
        for reply, expected in cases:
            assert reply == {"Status": "Failure", "ErrorDescription": expected}
    finally:
        s.xenapi.session.logout()


def _jsonrpc(sim_host, payload: dict) -> dict:  # type: ignore[no-untyped-def]
    req = urllib.request.Request(
        sim_host.url + "/jsonrpc", data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    ctx = ssl._create_unverified_context()
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        assert resp.headers["Content-Type"] == "application/json"
        return json.loads(resp.read())


def test_jsonrpc_v2_and_v1(sim_host) -> None:  # type: ignore[no-untyped-def]
    login = _jsonrpc(sim_host, {
        "jsonrpc": "2.0", "method": "session.login_with_password",
        "params": [sim_host.user, sim_host.password, "2.21", "t"], "id": 7,
    })
    assert set(login) == {"jsonrpc", "result", "id"} and login["id"] == 7
    sid = login["result"]
    vms = _jsonrpc(sim_host, {"jsonrpc": "2.0", "method": "VM.get_all_records",
                              "params": [sid], "id": "x"})["result"]
    hvm = next(rec for rec in vms.values() if rec["name_label"] == "win-hvm")
    assert hvm["memory_static_max"] == 64 * 1024 * 1024  # a JSON number, not a string
    bad = _jsonrpc(sim_host, {"jsonrpc": "2.0", "method": "VM.get_all",
                              "params": ["OpaqueRef:gone"], "id": 3})
    assert bad == {"jsonrpc": "2.0", "error": {"code": 1, "message": "SESSION_INVALID",
                                               "data": ["OpaqueRef:gone"]}, "id": 3}
    v1 = _jsonrpc(sim_host, {"method": "VM.get_all", "params": ["OpaqueRef:gone"], "id": 4})
    assert v1 == {"result": None, "error": ["SESSION_INVALID", "OpaqueRef:gone"], "id": 4}
    # A session from JSON-RPC works over XML-RPC too, as on a real host.
    assert raw_proxy(sim_host).VM.get_all(sid)["Status"] == "Success"
    _jsonrpc(sim_host, {"jsonrpc": "2.0", "method": "session.logout", "params": [sid], "id": 9})


OK_REPLY = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"


def _console_answers(sim_host, cref: str, sid: str) -> bytes:  # type: ignore[no-untyped-def]
    """The first bytes of a /console tunnel: the reply head and the RFB greeting (if any)."""
    with tls_connect(sim_host.port) as sock:
        sock.sendall(f"CONNECT /console?ref={cref}&session_id={sid} HTTP/1.0\r\n\r\n".encode())
        return read_exactly(sock, len(OK_REPLY) + 12)


def test_power_cycle_stops_and_starts_console(sim_host) -> None:  # type: ignore[no-untyped-def]
    s = sim_host.session()
    sid = s._session
    ok = OK_REPLY + b"RFB 003.008\n"
    try:
        vm = s.xenapi.VM.get_by_name_label("win-hvm")[0]
        [before] = s.xenapi.VM.get_consoles(vm)
        assert _console_answers(sim_host, before, sid) == ok

        s.xenapi.VM.clean_reboot(vm)  # a reboot keeps the console records
        assert s.xenapi.VM.get_consoles(vm) == [before]
        assert _console_answers(sim_host, before, sid) == ok

        s.xenapi.VM.clean_shutdown(vm)
        assert s.xenapi.VM.get_power_state(vm) == "Halted"
        assert s.xenapi.VM.get_consoles(vm) == []
        assert s.xenapi.VM.get_domid(vm) == "-1"
        assert _console_answers(sim_host, before, sid).startswith(b"HTTP/1.0 500 Internal Error")
        assert _console_answers(sim_host, vm, sid).startswith(b"HTTP/1.0 500 Internal Error")
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM.clean_shutdown(vm)
        assert info.value.details == ["VM_BAD_POWER_STATE", vm, "running", "halted"]

        s.xenapi.VM.start(vm, False, False)
        assert s.xenapi.VM.get_power_state(vm) == "Running"
        [after] = s.xenapi.VM.get_consoles(vm)
        assert after != before  # new domain, new console record (as xapi_xenops does)
        assert _console_answers(sim_host, after, sid) == ok
        assert _console_answers(sim_host, vm, sid) == ok  # a VM ref means its rfb console
    finally:
        if s.xenapi.VM.get_power_state(vm) == "Halted":
            s.xenapi.VM.start(vm, False, False)
        s.xenapi.session.logout()
