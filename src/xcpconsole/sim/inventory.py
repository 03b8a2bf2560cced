"""Load the simulated host's inventory (a TOML file) into a :class:`SimModel`.

The file describes what a real host would have in its database: the pool,
the host, the control domain, guests and templates (see
``default_inventory.toml``).  Validation is strict so a typo fails at start-up
with a message naming the key, rather than producing a half-working host.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .model import HALTED, PAUSED, RUNNING, VM, Host, Pool, SimModel, new_ref, stable_uuid

_BACKENDS = ("qemu", "vncterm", "none", "stream", "echo")  # the last two: loadgen.py
_PROTOCOLS = ("rfb", "vt100")
_VM_KEYS = {
    "name_label", "name_description", "power_state", "hvm", "backend", "consoles",
    "memory_mib", "vcpus", "boot_script", "uuid", "other_config",
}


def default_inventory_text() -> str:
    return resources.files(__package__).joinpath("default_inventory.toml").read_text("utf-8")


def load_inventory(path: Path | None) -> dict[str, Any]:
    """Parse ``path`` (or the packaged default) into a plain dict."""
    try:
        text = default_inventory_text() if path is None else path.read_text("utf-8")
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
    inventory: dict[str, Any], *, user: str, password: str, address: str, port: int
) -> SimModel:
    """Create the database a host with this inventory would have, listening on ``address:port``."""
    pool_t = _get(inventory, "pool", dict, {}, "inventory")
    host_t = _get(inventory, "host", dict, {}, "inventory")
    dom0_t = dict(_get(inventory, "control_domain", dict, {}, "inventory"))
    hostname = _get(host_t, "hostname", str, "xcp-sim", "host")
    host = Host(
        ref=new_ref(),
        uuid=_get(host_t, "uuid", str, stable_uuid("host", hostname), "host"),
        name_label=_get(host_t, "name_label", str, hostname, "host"),
        hostname=hostname,
        address=address,
    )
    pool = Pool(
        ref=new_ref(),
        uuid=stable_uuid("pool", hostname),
        name_label=_get(pool_t, "name_label", str, "", "pool"),
        master=host.ref,
        limit_console_sessions=_get(pool_t, "limit_console_sessions", bool, False, "pool"),
    )
    style = _get(pool_t, "console_location", str, "ref", "pool")
    if style not in ("ref", "uuid"):
        raise ConfigError("inventory: pool.console_location must be 'ref' or 'uuid'")
    console_address = address if port == 443 else f"{address}:{port}"
    model = SimModel(
        pool=pool, host=host, user=user, password=password,
        console_address=console_address, location_style=style,
    )
    dom0_t.setdefault("name_label", f"Control domain on host: {hostname}")
    dom0_t.setdefault("backend", "vncterm")
    dom0_t["power_state"] = RUNNING
    dom0_t.setdefault("hvm", False)
    dom0 = _vm_from(dom0_t, "control_domain")
    dom0.is_control_domain = True
    dom0.uuid = dom0_t.get("uuid", stable_uuid("dom0", hostname))
    host.control_domain = dom0.ref
    model.add_vm(dom0)
    for i, table in enumerate(_get(inventory, "vm", list, [], "inventory")):
        model.add_vm(_vm_from(table, f"vm[{i}]"))
    for i, table in enumerate(_get(inventory, "template", list, [], "inventory")):
        model.add_vm(_vm_from(table, f"template[{i}]", template=True))
    names = [vm.uuid for vm in model.vms.values()]
    if len(set(names)) != len(names):
        raise ConfigError("inventory: two VMs share a uuid (or a name_label without uuid)")
    return model
