"""Load the simulated host's inventory (a TOML file) into a :class:`SimModel`.

The file describes what a real host would have in its database: the pool,
the host, the control domain, guests and templates (see
``default_inventory.toml``).  Validation is strict so a typo fails at start-up
with a message naming the key, rather than producing a half-working host.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ..address import format_hostport
from ..errors import ConfigError
from .hostplan import HostPlan
from .model import (
    HALTED,
    NULL_REF,
    PAUSED,
    RUNNING,
    VM,
    Host,
    Pool,
    SimModel,
    new_ref,
    stable_uuid,
)
from .rbac import ROLES, SimUser

_BACKENDS = ("qemu", "vncterm", "none", "stream", "echo")  # the last two: loadgen.py
_PROTOCOLS = ("rfb", "vt100")
_VM_KEYS = {
    "name_label", "name_description", "power_state", "hvm", "backend", "consoles",
    "memory_mib", "vcpus", "boot_script", "uuid", "other_config", "host",
}


def default_inventory_text(*, pool: bool = False) -> str:
    """The packaged inventory: one host, or (``pool``) the pool of ``--hosts N``."""
    name = "default_pool_inventory.toml" if pool else "default_inventory.toml"
    return resources.files(__package__).joinpath(name).read_text("utf-8")


def load_inventory(path: Path | None, *, pool: bool = False) -> dict[str, Any]:
    """Parse ``path`` (or the packaged default, the pool one with ``pool``) into a dict."""
    try:
        text = default_inventory_text(pool=pool) if path is None else path.read_text("utf-8")
        return tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"cannot read inventory {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"inventory {path or 'default'} is not valid TOML: {exc}") from exc


def _get(table: dict[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    value = table.get(key, default)
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"inventory: {where}.{key} must be an integer")
    if not isinstance(value, kind):
        raise ConfigError(f"inventory: {where}.{key} must be a {kind.__name__}")
    return value


def _vm_from(table: dict[str, Any], where: str, *, template: bool = False) -> VM:
    unknown = set(table) - _VM_KEYS
    if unknown:
        raise ConfigError(f"inventory: unknown key(s) in {where}: {', '.join(sorted(unknown))}")
    name = _get(table, "name_label", str, None, where) if "name_label" in table else None
    if not name:
        raise ConfigError(f"inventory: {where} needs a name_label")
    power = _get(table, "power_state", str, HALTED, where)
    if power not in (HALTED, RUNNING, PAUSED):
        raise ConfigError(f"inventory: {where}.power_state must be Running, Paused or Halted")
    if template and power != HALTED:
        raise ConfigError(f"inventory: template {name!r} cannot be {power}")
    backend = _get(table, "backend", str, "none" if template else "qemu", where)
    if backend not in _BACKENDS:
        raise ConfigError(f"inventory: {where}.backend must be one of {', '.join(_BACKENDS)}")
    consoles = _get(table, "consoles", list, ["rfb"], where)
    if not all(c in _PROTOCOLS for c in consoles):
        raise ConfigError(f"inventory: {where}.consoles may only hold rfb and vt100")
    if backend == "qemu" and "vt100" in consoles:
        raise ConfigError(f"inventory: {where}: the qemu backend has no vt100 console")
    other = _get(table, "other_config", dict, {}, where)
    return VM(
        ref=new_ref(),
        uuid=_get(table, "uuid", str, stable_uuid("vm", name), where),
        name_label=name,
        name_description=_get(table, "name_description", str, "", where),
        power_state=power,
        is_a_template=template,
        is_default_template=template,
        hvm=_get(table, "hvm", bool, True, where),
        backend=backend,
        boot_script=_get(table, "boot_script", str, "linux", where),
        console_protocols=tuple(consoles),
        memory=_get(table, "memory_mib", int, 64, where) * 1024 * 1024,
        vcpus=_get(table, "vcpus", int, 1, where),
        other_config={str(k): str(v) for k, v in other.items()},
    )


def _idle_timeout_of(pool_t: dict[str, Any]) -> int:
    """``[pool] vm_console_idle_timeout`` (seconds, 0 = never), see sim/idle.py."""
    timeout: int = _get(pool_t, "vm_console_idle_timeout", int, 0, "pool")
    if timeout < 0:
        raise ConfigError("inventory: pool.vm_console_idle_timeout must be 0 or more seconds")
    return timeout


def _add_user(model: SimModel, table: Any, where: str) -> None:
    """One ``[[users]]`` entry: ``name``, ``password``, ``role`` (sim/rbac.py)."""
    if not isinstance(table, dict):
        raise ConfigError(f"inventory: {where} must be a table")
    unknown = set(table) - {"name", "password", "role"}
    if unknown:
        raise ConfigError(f"inventory: unknown key(s) in {where}: {', '.join(sorted(unknown))}")
    name: str = _get(table, "name", str, "", where)
    password: str = _get(table, "password", str, "", where)
    role: str = _get(table, "role", str, "", where)
    if not name or not password:
        raise ConfigError(f"inventory: {where} needs a name and a password")
    if role not in ROLES:
        raise ConfigError(f"inventory: {where}.role must be one of {', '.join(ROLES)}")
    if name in model.users:
        raise ConfigError(f"inventory: {where}: user {name!r} exists already")
    model.add_user(SimUser(name, password, role, sid=stable_uuid("subject", name)))


def member_listen_of(inventory: dict[str, Any]) -> str | None:
    """``[member] listen = "HOST:PORT"``: where the pool member listens, if anywhere."""
    table = _get(inventory, "member", dict, {}, "inventory")
    unknown = set(table) - {"listen"}
    if unknown:
        raise ConfigError(f"inventory: unknown key(s) in member: {', '.join(sorted(unknown))}")
    if "listen" not in table:
        return None
    listen: str = _get(table, "listen", str, "", "member")
    return listen


def build_model(
    inventory: dict[str, Any], *, user: str, password: str, address: str, port: int,
    hosts: Sequence[HostPlan] | None = None, fill_empty_hosts: bool = False,
) -> SimModel:
    """Create the database a host with this inventory would have, listening on ``address:port``.

    With ``hosts`` (their actual ports filled in; ``address``/``port`` are then
    unused) it is a pool: one ``host`` record and control domain per host, the
    first one the master, VMs placed by their ``host`` key or spread over the
    hosts; ``fill_empty_hosts`` gives a host without a running guest a PV one.
    """
    pool_t = _get(inventory, "pool", dict, {}, "inventory")
    host_t = _get(inventory, "host", dict, {}, "inventory")
    dom0_t = dict(_get(inventory, "control_domain", dict, {}, "inventory"))
    if hosts:
        pool_hosts = [_host_of(plan) for plan in hosts]
        hostname = pool_hosts[0].hostname
    else:
        hostname = _get(host_t, "hostname", str, "xcp-sim", "host")
        pool_hosts = [Host(
            ref=new_ref(),
            uuid=_get(host_t, "uuid", str, stable_uuid("host", hostname), "host"),
            name_label=_get(host_t, "name_label", str, hostname, "host"),
            hostname=hostname,
            address=address,
            console_address=_console_address(address, port),
        )]
    host = pool_hosts[0]
    pool = Pool(
        ref=new_ref(),
        uuid=stable_uuid("pool", hostname),
        name_label=_get(pool_t, "name_label", str, "", "pool"),
        master=host.ref,
        limit_console_sessions=_get(pool_t, "limit_console_sessions", bool, False, "pool"),
        vm_console_idle_timeout=_idle_timeout_of(pool_t),
    )
    style = _get(pool_t, "console_location", str, "ref", "pool")
    if style not in ("ref", "uuid"):
        raise ConfigError("inventory: pool.console_location must be 'ref' or 'uuid'")
    model = SimModel(
        pool=pool, host=host, user=user, password=password,
        console_address=host.console_address, location_style=style,
    )
    model.journal.created("pool", pool.ref)
    for member in pool_hosts:
        model.hosts[member.ref] = member
        model.journal.created("host", member.ref)
    dom0_t.setdefault("backend", "vncterm")
    dom0_t["power_state"] = RUNNING
    dom0_t.setdefault("hvm", False)
    for member in pool_hosts:
        table = dict(dom0_t)
        if hosts:  # in a pool each is named after its host and has its own uuid
            table["name_label"] = f"Control domain on host: {member.hostname}"
            table.pop("uuid", None)
        table.setdefault("name_label", f"Control domain on host: {member.hostname}")
        dom0 = _vm_from(table, "control_domain")
        dom0.is_control_domain = True
        dom0.uuid = table.get("uuid", stable_uuid("dom0", member.hostname))
        dom0.affinity = member.ref
        member.control_domain = dom0.ref
        model.add_vm(dom0)
    for i, table in enumerate(_get(inventory, "users", list, [], "inventory")):
        _add_user(model, table, f"users[{i}]")
    spread = itertools.count()
    for i, table in enumerate(_get(inventory, "vm", list, [], "inventory")):
        vm = _vm_from(table, f"vm[{i}]")
        vm.affinity = _placement(table, vm, pool_hosts, spread, f"vm[{i}]")
        model.add_vm(vm)
    if fill_empty_hosts and hosts:
        _fill_empty_hosts(model, pool_hosts)
    for i, table in enumerate(_get(inventory, "template", list, [], "inventory")):
        if "host" in table:
            raise ConfigError(f"inventory: template[{i}] cannot be placed on a host")
        model.add_vm(_vm_from(table, f"template[{i}]", template=True))
    names = [vm.uuid for vm in model.vms.values()]
    if len(set(names)) != len(names):
        raise ConfigError("inventory: two VMs share a uuid (or a name_label without uuid)")
    return model


def _console_address(address: str, port: int) -> str:
    return address if port == 443 else format_hostport(address.strip("[]"), port)


def _host_of(plan: HostPlan) -> Host:
    return Host(
        ref=new_ref(),
        uuid=plan.uuid or stable_uuid("host", plan.hostname),
        name_label=plan.name_label,
        hostname=plan.hostname,
        address=plan.address,
        console_address=_console_address(plan.address, plan.listen_port),
    )


def _placement(
    table: dict[str, Any], vm: VM, hosts: list[Host], spread: Iterator[int], where: str
) -> str:
    """The host a VM starts on: its ``host`` key (a host's name_label, or its number:
    1 is the master, numbers past the last host wrap round the members), else for a
    running VM of a pool the next host in turn, else the master (NULL)."""
    want = table.get("host")
    if want is None:
        if len(hosts) > 1 and vm.power_state in (RUNNING, PAUSED):
            return hosts[next(spread) % len(hosts)].ref
        return NULL_REF
    if isinstance(want, str):
        for host in hosts:
            if host.name_label == want:
                return host.ref
        raise ConfigError(f"inventory: {where}.host names no host: {want!r}")
    if isinstance(want, bool) or not isinstance(want, int) or want < 1:
        raise ConfigError(f"inventory: {where}.host must be a host name_label or number")
    if want <= len(hosts):
        return hosts[want - 1].ref
    return hosts[1 + (want - 2) % (len(hosts) - 1)].ref if len(hosts) > 1 else hosts[0].ref


def _fill_empty_hosts(model: SimModel, hosts: list[Host]) -> None:
    """Give every host without a running guest a PV guest, so each has a console to open."""
    for host in hosts:
        busy = any(
            vm.affinity == host.ref and vm.power_state == RUNNING and not vm.is_control_domain
            for vm in model.vms.values()
        )
        if not busy:
            name = f"pv-{host.name_label}"
            model.add_vm(VM(
                ref=new_ref(), uuid=stable_uuid("vm", name), name_label=name,
                name_description=f"PV guest placed on {host.name_label}",
                power_state=RUNNING, hvm=False, backend="vncterm", affinity=host.ref,
            ))
