"""The role table (sim/rbac.py) and the dispatcher's RBAC gate, without sockets."""

from __future__ import annotations

from typing import Any

import pytest

from xcpconsole.errors import XapiError
from xcpconsole.sim import rbac
from xcpconsole.sim.inventory import build_model, load_inventory
from xcpconsole.sim.model import VM
from xcpconsole.sim.xapi import XenApiDispatcher


class _NoBackends:
    async def vm_starting(self, vm: VM) -> None:
        pass

    async def vm_stopped(self, vm: VM) -> None:
        pass

    async def vm_rebooting(self, vm: VM) -> None:
        pass


def test_roles_are_xapis_and_each_has_the_roles_below_it() -> None:
    assert rbac.ROLES == ("pool-admin", "pool-operator", "vm-power-admin", "vm-admin",
                          "vm-operator", "read-only")
    table = rbac.ROLE_PERMISSIONS
    assert table["read-only"] == frozenset()
    for higher, lower in zip(rbac.ROLES, rbac.ROLES[1:], strict=False):
        assert table[lower] <= table[higher], (lower, higher)
    assert "http/connect_console" in table["vm-operator"]
    assert "vm.pool_migrate" in table["vm-power-admin"] - table["vm-admin"]
    assert "pool.designate_new_master" in table["pool-operator"] - table["vm-power-admin"]
    assert table["pool-admin"] - table["pool-operator"] == {rbac.HOST_CONSOLE}


def test_denial_is_shaped_like_rbac_ml() -> None:
    err = rbac.denial("vm.pool_migrate")
    assert (err.code, err.params) == ("RBAC_PERMISSION_DENIED", [
        "vm.pool_migrate",
        "No permission in user session. (Roles with this permission: pool-admin, "
        "pool-operator, vm-power-admin)",
    ])
    assert rbac.is_allowed("read-only", False, "vm.get_all_records")  # not guarded
    assert not rbac.is_allowed("read-only", False, "vm.start")
    assert rbac.is_allowed("read-only", True, rbac.HOST_CONSOLE)  # the superuser
    assert "viewer-password" not in repr(rbac.SimUser("v", "viewer-password", "read-only"))


INVENTORY_USERS = [
    {"name": "ro", "password": "ro-pw", "role": "read-only"},
    {"name": "op", "password": "op-pw", "role": "vm-operator"},
    {"name": "power", "password": "power-pw", "role": "vm-power-admin"},
    {"name": "poolop", "password": "poolop-pw", "role": "pool-operator"},
]


def _dispatcher() -> XenApiDispatcher:
    inventory = load_inventory(None)
    inventory["users"] = INVENTORY_USERS
    model = build_model(inventory, user="root", password="pw", address="127.0.0.1", port=443)
    return XenApiDispatcher(model, _NoBackends())


async def _call(d: XenApiDispatcher, method: str, *params: Any) -> Any:
    return await d.call(method, list(params))


@pytest.mark.parametrize(("method", "allowed", "denied"), [
    ("pool.designate_new_master", ["root", "poolop"], ["power", "op", "ro"]),
    ("pool.set_limit_console_sessions", ["root", "poolop"], ["power", "op", "ro"]),
    ("pool.set_vm_console_idle_timeout", ["root", "poolop"], ["power", "op", "ro"]),
    ("VM.pool_migrate", ["root", "poolop", "power"], ["op", "ro"]),
])
async def test_pool_calls_are_guarded(method: str, allowed: list[str],
                                      denied: list[str]) -> None:
    d = _dispatcher()
    m = d.model
    vm = next(v.ref for v in m.vms.values() if v.name_label == "debian-pv")
    args: dict[str, list[Any]] = {
        "pool.designate_new_master": [m.host.ref],
        "pool.set_limit_console_sessions": [m.pool.ref, False],
        "pool.set_vm_console_idle_timeout": [m.pool.ref, 0],
        "VM.pool_migrate": [vm, m.host.ref, {}],
    }
    if method not in d._methods:  # until the pool calls exist: a stand-in handler

        async def stand_in(p: list[Any]) -> str:
            return "ran"

        d._add(method, 1 + len(args[method]), stand_in)
    passwords = {"root": "pw", **{u["name"]: u["password"] for u in INVENTORY_USERS}}
    for name in denied:
        sid = await _call(d, "session.login_with_password", name, passwords[name])
        with pytest.raises(XapiError) as caught:
            await _call(d, method, sid, *args[method])
        assert caught.value.code == "RBAC_PERMISSION_DENIED", name
        assert caught.value.params[0] == method.lower()
    for name in allowed:
        sid = await _call(d, "session.login_with_password", name, passwords[name])
        try:
            await _call(d, method, sid, *args[method])
        except XapiError as exc:  # the call itself may refuse (same host...), RBAC may not
            assert exc.code != "RBAC_PERMISSION_DENIED", name


async def test_sessions_carry_the_role_fixed_at_login() -> None:
    d = _dispatcher()
    sid = await _call(d, "session.login_with_password", "op", "op-pw")
    record = await _call(d, "session.get_record", sid, sid)
    assert record["auth_user_name"] == "op" and record["is_local_superuser"] is False
    assert record["auth_user_sid"]
    assert set(record["rbac_permissions"]) == rbac.ROLE_PERMISSIONS["vm-operator"]
    root = await _call(d, "session.login_with_password", "root", "pw")
    assert (await _call(d, "session.get_is_local_superuser", root, root)) is True
    with pytest.raises(XapiError) as caught:
        await _call(d, "session.login_with_password", "op", "pw")
    assert caught.value.params == ["op", "Authentication failure"]
