"""Which hosts a simulated pool has and where each listens (``--hosts``, ``[[hosts]]``).

A real pool's hosts each have their own management address and all listen on
443.  The sim gives every member its own loopback address (all of 127/8 is
loopback on Linux): ``127.0.0.2``, ``127.0.0.3``, … on the master's port, so
master and members share a port like a real pool; with port 0 every host picks
a free port on its own address.  Pure: nothing is bound here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..address import connectable_host, format_host, format_hostport, parse_hostport
from ..errors import ConfigError

_HOST_KEYS = {"name_label", "hostname", "uuid", "listen", "address"}
#: The most hosts one sim runs (each has a listener, a certificate and a control domain).
MAX_HOSTS = 16


@dataclass(frozen=True)
class HostPlan:
    """One host of the pool before it listens."""

    name_label: str
    hostname: str
    listen_host: str
    listen_port: int  # 0: any free port
    address: str  # host.address and the host part of its console locations
    uuid: str | None = None


def _str(table: dict[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"inventory: {where}.{key} must be a string")
    return value


def _public(listen_host: str) -> str:
    return format_host(connectable_host(listen_host))


def _loopbacks(taken: set[str]) -> Iterator[str]:
    """127.0.0.2, 127.0.0.3, … skipping addresses some host already uses."""
    candidate = ipaddress.ip_address("127.0.0.2")
    while True:
        if str(candidate) not in taken:
            yield str(candidate)
        candidate += 1


def plan_hosts(
    inventory: dict[str, Any], *, count: int | None, master_listen: tuple[str, int],
    master_listen_explicit: bool = True, member_listen: tuple[str, int] | None = None,
) -> list[HostPlan]:
    """The pool's hosts, master first.

    ``count`` is ``--hosts`` (None: not given); ``[[hosts]]`` in the inventory
    names them (then ``count``, if given, must agree); otherwise they are
    ``<hostname>-1`` … ``<hostname>-N`` after ``[host] hostname``.  The master
    listens on ``master_listen`` unless that was not given explicitly and its
    ``[[hosts]]`` entry says ``listen``.  ``member_listen`` (``--member-listen``
    or ``[member] listen``) is where the first member listens.
    """
    tables = inventory.get("hosts", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError("inventory: hosts must be an array of tables ([[hosts]])")
    if count is not None and not 1 <= count <= MAX_HOSTS:
        raise ConfigError(f"--hosts must be between 1 and {MAX_HOSTS}")
    if tables:
        if count is not None and count != len(tables):
            raise ConfigError(f"--hosts {count} but the inventory lists {len(tables)} hosts")
        if member_listen is not None:
            raise ConfigError("[[hosts]] already places every host: drop the member listen")
        if len(tables) > MAX_HOSTS:
            raise ConfigError(f"inventory: at most {MAX_HOSTS} hosts")
    else:
        n = count if count is not None else (2 if member_listen is not None else 1)
        if member_listen is not None and n < 2:
            raise ConfigError("a pool member needs --hosts 2 or more")
        host_t = inventory.get("host", {})
        base = host_t.get("hostname", "xcp-sim") if isinstance(host_t, dict) else "xcp-sim"
        if not isinstance(base, str) or not base:
            raise ConfigError("inventory: host.hostname must be a string")
        if n == 1:
            return [HostPlan(base, base, *master_listen, _public(master_listen[0]))]
        tables = [{"name_label": f"{base}-{i}"} for i in range(1, n + 1)]
        if member_listen is not None:
            tables[1]["listen"] = format_hostport(*member_listen)
    return _place(tables, master_listen, master_listen_explicit)


def _place(
    tables: list[dict[str, Any]], master_listen: tuple[str, int], master_explicit: bool
) -> list[HostPlan]:
    listens: list[tuple[str, int] | None] = []
    for i, table in enumerate(tables):
        where = f"hosts[{i}]"
        unknown = set(table) - _HOST_KEYS
        if unknown:
            raise ConfigError(f"inventory: unknown key(s) in {where}: {', '.join(sorted(unknown))}")
        text = _str(table, "listen", where)
        listens.append(parse_hostport(text, f"inventory {where}.listen") if text else None)
    if master_explicit or listens[0] is None:
        listens[0] = master_listen
    taken = {lst[0] for lst in listens if lst is not None}
    free = _loopbacks(taken)
    master_port = listens[0][1] if listens[0] is not None else 0
    plans: list[HostPlan] = []
    seen_names: set[str] = set()
    bound: set[tuple[str, int]] = set()
    for i, (table, listen) in enumerate(zip(tables, listens, strict=True)):
        where = f"hosts[{i}]"
        name = _str(table, "name_label", where)
        if not name:
            raise ConfigError(f"inventory: {where} needs a name_label")
        if name in seen_names:
            raise ConfigError(f"inventory: two hosts are called {name!r}")
        seen_names.add(name)
        if listen is None:
            listen = (next(free), master_port)
        if listen[1] != 0:
            if listen in bound:
                raise ConfigError(f"inventory: two hosts listen on {listen[0]}:{listen[1]}")
            bound.add(listen)
        plans.append(HostPlan(
            name_label=name,
            hostname=_str(table, "hostname", where) or name,
            listen_host=listen[0],
            listen_port=listen[1],
            address=_str(table, "address", where) or _public(listen[0]),
            uuid=_str(table, "uuid", where),
        ))
    return plans
