"""The pool's pure parts, without sockets: host plans, placement, the event journal,
migration rules, per-host certificates and the wire shape of ``event.from``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from xcpconsole.errors import ConfigError, XapiError
from xcpconsole.sim import pool as rules
from xcpconsole.sim.events import (
    EventSource,
    Journal,
    format_token,
    parse_subscriptions,
    parse_timeout,
    parse_token,
)
from xcpconsole.sim.hostplan import plan_hosts
from xcpconsole.sim.inventory import build_model, load_inventory
from xcpconsole.sim.model import NULL_REF, RUNNING
from xcpconsole.sim.tls import ensure_host_certificate
from xcpconsole.sim.xapi import XenApiDispatcher

MASTER = ("127.0.0.1", 8443)


def _pool(n: int, *, port: int = 8443, inventory: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    inv = load_inventory(None, pool=True) if inventory is None else inventory
    plans = plan_hosts(inv, count=n, master_listen=("127.0.0.1", port))
    plans = [dataclasses.replace(p, listen_port=port or 40000 + i) for i, p in enumerate(plans)]
    return build_model(inv, user="root", password="pw", address="unused", port=0,
                       hosts=plans, fill_empty_hosts=inventory is None)


def test_plan_default_pool_on_one_port() -> None:
    plans = plan_hosts({}, count=3, master_listen=MASTER)
    assert [(p.name_label, p.listen_host, p.listen_port, p.address) for p in plans] == [
        ("xcp-sim-1", "127.0.0.1", 8443, "127.0.0.1"),
        ("xcp-sim-2", "127.0.0.2", 8443, "127.0.0.2"),
        ("xcp-sim-3", "127.0.0.3", 8443, "127.0.0.3"),
    ]
    free = plan_hosts({}, count=2, master_listen=("127.0.0.1", 0))
    assert [(p.listen_host, p.listen_port) for p in free] == [("127.0.0.1", 0), ("127.0.0.2", 0)]
    # a member never takes the master's own loopback address
    skip = plan_hosts({}, count=2, master_listen=("127.0.0.2", 0))
    assert [p.listen_host for p in skip] == ["127.0.0.2", "127.0.0.3"]
    one = plan_hosts({"host": {"hostname": "h"}}, count=None, master_listen=MASTER)
    assert [(p.name_label, p.listen_port) for p in one] == [("h", 8443)]


def test_plan_from_inventory_hosts_and_member_listen() -> None:
    inv = {"hosts": [
        {"name_label": "a", "listen": "127.0.0.9:9000"},
        {"name_label": "b", "address": "10.0.0.2"},
        {"name_label": "c", "listen": "127.0.0.7:9001", "hostname": "c.example"},
    ]}
    explicit = plan_hosts(inv, count=None, master_listen=MASTER)
    assert explicit[0].listen_host == "127.0.0.1"  # --listen wins
    plans = plan_hosts(inv, count=3, master_listen=MASTER, master_listen_explicit=False)
    assert [(p.listen_host, p.listen_port) for p in plans] == [
        ("127.0.0.9", 9000), ("127.0.0.2", 9000), ("127.0.0.7", 9001)]
    assert plans[1].address == "10.0.0.2" and plans[2].hostname == "c.example"
    member = plan_hosts({}, count=None, master_listen=MASTER,
                        member_listen=("127.0.0.5", 7000))
    assert [(p.listen_host, p.listen_port) for p in member] == [
        ("127.0.0.1", 8443), ("127.0.0.5", 7000)]


@pytest.mark.parametrize(("inventory", "count", "member", "match"), [
    ({"hosts": [{"name_label": "a"}]}, 2, None, "--hosts 2 but the inventory lists 1"),
    ({"hosts": [{"name_label": "a"}, {"name_label": "a"}]}, None, None, "two hosts"),
    ({"hosts": [{"name_label": "a", "colour": "red"}]}, None, None, "colour"),
    ({"hosts": [{"listen": "127.0.0.2:1"}]}, None, None, "needs a name_label"),
    ({"hosts": [{"name_label": "a"}, {"name_label": "b", "listen": "127.0.0.1:8443"}]},
     None, None, "two hosts listen on"),
    ({"hosts": "a"}, None, None, "array of tables"),
    ({"hosts": [{"name_label": "a"}]}, None, ("127.0.0.2", 1), "member"),
    ({}, 1, ("127.0.0.2", 1), "--hosts 2 or more"),
    ({}, 99, None, "between 1 and"),
    ({"hosts": [{"name_label": 5}]}, None, None, "must be a string"),
])
def test_plan_errors(inventory: dict[str, Any], count: int | None,
                     member: tuple[str, int] | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        plan_hosts(inventory, count=count, master_listen=MASTER, member_listen=member)


def _running_guests(model) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {vm.name_label: model.hosts[vm.resident_on].name_label
            for vm in model.vms.values()
            if vm.power_state == RUNNING and not vm.is_control_domain}


def test_default_pool_inventory_spreads_the_guests() -> None:
    three = _pool(3)
    assert _running_guests(three) == {
        "win-hvm": "xcp-sim-2", "alpine-pv-text": "xcp-sim-3", "debian-pv": "xcp-sim-1"}
    two = _pool(2)  # numbers past the last host wrap round the members
    assert _running_guests(two) == {
        "win-hvm": "xcp-sim-2", "alpine-pv-text": "xcp-sim-2", "debian-pv": "xcp-sim-1"}
    four = _pool(4)
    assert _running_guests(four)["pv-xcp-sim-4"] == "xcp-sim-4"  # an empty host is filled
    for model in (two, three, four):
        dom0s = [vm for vm in model.vms.values() if vm.is_control_domain]
        assert sorted(model.hosts[d.resident_on].name_label for d in dom0s) == sorted(
            h.name_label for h in model.hosts.values())
        assert len({d.uuid for d in dom0s}) == len(dom0s)
        for console in model.consoles.values():
            host = model.hosts[model.vms[console.vm].resident_on]
            assert console.location == f"https://{host.console_address}/console?ref={console.ref}"
        assert model.master is model.host
        centos = next(vm for vm in model.vms.values() if vm.name_label == "centos-halted")
        assert centos.affinity == NULL_REF and centos.resident_on == NULL_REF


def test_console_address_has_the_port_unless_443() -> None:
    model = _pool(2, port=443)
    assert [h.console_address for h in model.hosts.values()] == ["127.0.0.1", "127.0.0.2"]
    model = _pool(2, port=0)
    assert [h.console_address for h in model.hosts.values()] == [
        "127.0.0.1:40000", "127.0.0.2:40001"]


def test_unplaced_guests_are_dealt_round_the_hosts_and_host_keys_are_checked() -> None:
    inv = {"vm": [{"name_label": f"g{i}", "power_state": "Running", "backend": "none"}
                  for i in range(4)]}
    assert _running_guests(_pool(3, inventory=inv)) == {
        "g0": "xcp-sim-1", "g1": "xcp-sim-2", "g2": "xcp-sim-3", "g3": "xcp-sim-1"}
    for vm, match in (({"host": "nowhere"}, "names no host"), ({"host": 0}, "host must be"),
                      ({"host": True}, "host must be")):
        bad = {"vm": [{"name_label": "x", "backend": "none", **vm}]}
        with pytest.raises(ConfigError, match=match):
            _pool(2, inventory=bad)
    with pytest.raises(ConfigError, match="template"):
        _pool(2, inventory={"template": [{"name_label": "t", "host": 1}]})


def test_journal_add_mod_del() -> None:
    journal = Journal(max_deleted=2)
    journal.created("VM", "a")
    journal.created("VM", "b")
    token = journal.generation
    journal.modified("VM", "a")
    journal.created("console", "c")
    journal.modified("console", "c")  # created since: only an add
    journal.created("console", "d")
    journal.deleted("console", "d")  # created and gone since: nothing
    journal.deleted("VM", "b")
    journal.modified("VM", "unknown")  # not a row: ignored
    changes = journal.changes_since(token, lambda cls, ref: True)
    assert [(op, cls, ref) for op, cls, ref, _ in changes] == [
        ("mod", "vm", "a"), ("add", "console", "c"), ("del", "vm", "b")]
    assert [gen for *_, gen in changes] == sorted(gen for *_, gen in changes)
    assert journal.changes_since(journal.generation, lambda cls, ref: True) == []
    assert [c[2] for c in journal.changes_since(0, lambda cls, ref: cls == "vm")] == ["a"]
    for ref in ("e", "f", "g"):
        journal.created("host", ref)
        journal.deleted("host", ref)
    assert len(journal._deleted) == 2  # bounded


def test_tokens_subscriptions_and_timeouts() -> None:
    assert parse_token("") == 0
    assert parse_token(format_token(42)) == 42
    assert format_token(42) == "00000000000000000042,00000000000000000000"
    for bad in ("x", "1", "1,2,3", "1,x", " 1,2", 5):
        with pytest.raises(XapiError) as caught:
            parse_token(bad)
        assert caught.value.code == "EVENT_FROM_TOKEN_PARSE_FAILURE"
    subs = parse_subscriptions(["*", "VM", "console/OpaqueRef:1"])
    assert subs[0].matches("host", "x") and subs[1].matches("vm", "y")
    assert subs[2].matches("console", "OpaqueRef:1") and not subs[2].matches("console", "z")
    for bad_classes in ("vm", ["vm", 1], None):
        with pytest.raises(XapiError) as caught:
            parse_subscriptions(bad_classes)
        assert caught.value.code == "EVENT_SUBSCRIPTION_PARSE_FAILURE"
    assert parse_timeout("2.5") == 2.5 and parse_timeout(-3) == 0.0
    assert parse_timeout(1e9) == 3600.0
    for bad_timeout in ("soon", None, True, float("nan")):
        with pytest.raises(XapiError, match="FIELD_TYPE_ERROR"):
            parse_timeout(bad_timeout)


async def test_event_source_blocks_until_a_change() -> None:
    journal = Journal()
    journal.created("VM", "a")
    source = EventSource(journal, lambda cls, ref: {"ref": ref}, lambda: {"vm": 1})
    first = await source.event_from(["vm"], "", 0.0, lambda: None)
    assert [e["operation"] for e in first["events"]] == ["add"]
    waiting = asyncio.ensure_future(source.event_from(["vm"], first["token"], 30.0, lambda: None))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    journal.created("host", "h")  # not subscribed: still waiting
    await asyncio.sleep(0.2)
    assert not waiting.done()
    journal.modified("VM", "a")
    batch = await asyncio.wait_for(waiting, 5)
    assert [(e["operation"], e["ref"], e["snapshot"]) for e in batch["events"]] == [
        ("mod", "a", {"ref": "a"})]
    assert batch["token"] > first["token"]
    quiet = await source.event_from(["vm"], batch["token"], 0.2, lambda: None)
    assert quiet["events"] == [] and quiet["token"] == batch["token"]

    def gone() -> None:
        raise XapiError("SESSION_INVALID", ["s"])

    ending = asyncio.ensure_future(source.event_from(["vm"], batch["token"], 30.0, gone))
    await asyncio.sleep(0.1)
    journal.wake()
    with pytest.raises(XapiError, match="SESSION_INVALID"):
        await asyncio.wait_for(ending, 5)


class _NoBackends:
    async def vm_starting(self, vm: object) -> None: ...
    async def vm_stopped(self, vm: object) -> None: ...
    async def vm_rebooting(self, vm: object) -> None: ...


async def test_migration_rules_and_event_from_on_the_wire() -> None:
    model = _pool(3)
    rpc = XenApiDispatcher(model, _NoBackends())
    sid = model.login("root", "pw")
    start = json.loads(await rpc.handle_jsonrpc(json.dumps(
        {"jsonrpc": "2.0", "method": "event.from", "params": [sid, ["vm"], "", 0], "id": 1}
    ).encode()))["result"]
    vm = next(v for v in model.vms.values() if v.name_label == "win-hvm")
    old_consoles, old_host = list(vm.consoles), vm.resident_on
    target = model.master
    rules.check_migrate(model, vm, target)
    assert rules.commit_migrate(model, vm, target) == old_host
    assert vm.resident_on == target.ref and vm.consoles and not set(vm.consoles) & set(old_consoles)
    assert all(model.consoles[c].location.startswith(f"https://{target.console_address}/")
               for c in vm.consoles)
    assert vm.ref in model.resident_vms(target.ref)
    assert vm.ref not in model.resident_vms(old_host)
    body = xmlrpc.client.dumps((sid, ["vm", "console"], start["token"], 0.0), "event.from")
    (reply,), _ = xmlrpc.client.loads(await rpc.handle_xmlrpc(body.encode()))
    value = reply["Value"]
    assert isinstance(value["valid_ref_counts"]["vm"], int)  # an XML-RPC <int>, not a string
    ops = {(e["operation"], e["ref"]) for e in value["events"]}
    assert ("mod", vm.ref) in ops and {("del", c) for c in old_consoles} <= ops
    assert all(e["id"].isdigit() and e["timestamp"] == "0.0" for e in value["events"])
    halted = next(v for v in model.vms.values() if v.name_label == "centos-halted")
    with pytest.raises(XapiError, match="VM_BAD_POWER_STATE"):
        rules.check_migrate(model, halted, target)
    assert rules.commit_migrate(model, vm, target) == target.ref  # same host: nothing
    with pytest.raises(XapiError, match="HANDLE_INVALID"):
        rules.host_of(model, "OpaqueRef:nope")


def test_pool_setters() -> None:
    model = _pool(2)
    rules.set_limit_console_sessions(model, "true")
    assert model.pool.limit_console_sessions is True
    rules.set_vm_console_idle_timeout(model, "12")
    assert model.pool.vm_console_idle_timeout == 12
    for value in (-1, "x", 1.5, True):
        with pytest.raises(XapiError):
            rules.set_vm_console_idle_timeout(model, value)
    with pytest.raises(XapiError, match="FIELD_TYPE_ERROR"):
        rules.set_limit_console_sessions(model, 1)
    member = list(model.hosts.values())[1]
    rules.designate_new_master(model, member)
    assert model.master is member and model.pool.master == member.ref


def test_host_certificate_is_kept_and_names_its_address(tmp_path: Path) -> None:
    cert, _ = ensure_host_certificate(tmp_path / "a", "127.0.0.2")
    first = cert.read_bytes()
    assert ensure_host_certificate(tmp_path / "a", "127.0.0.2")[0].read_bytes() == first
    parsed = x509.load_pem_x509_certificate(first)
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.2"]
    moved, _ = ensure_host_certificate(tmp_path / "a", "127.0.0.3")  # address changed
    assert moved.read_bytes() != first
    named, _ = ensure_host_certificate(tmp_path / "b", "host.example")
    san = x509.load_pem_x509_certificate(named.read_bytes()).extensions \
        .get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["host.example"]
    assert (tmp_path / "a" / "sim-key.pem").stat().st_mode & 0o077 == 0
