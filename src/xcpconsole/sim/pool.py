"""The pool's rules: certificates, live migration, a new master.  Pure, no I/O.

``VM.pool_migrate`` moves a running VM's domain to another host: the guest
keeps running (the sim's console backend is the same process), but the old
host's tunnels end and, because every console URI names the resident host's
address, xapi destroys the console records and creates new ones (new refs and
UUIDs) with the new host's location (``xapi_xenops.ml``: consoles are keyed by
protocol *and* URI).  ``pool.designate_new_master`` only changes
``pool.master``: the database, and so every session, is the pool's.
"""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path

from ..errors import XapiError
from .certificates import host_certificate
from .model import RUNNING, VM, Host, SimModel, new_ref


def host_of(model: SimModel, ref: object) -> Host:
    """The host named ``ref``; ``HANDLE_INVALID`` otherwise."""
    found = model.hosts.get(ref) if isinstance(ref, str) else None
    if found is None:
        raise XapiError("HANDLE_INVALID", ["host", str(ref)])
    return found


def add_host_certificate(model: SimModel, host: Host, cert_path: Path) -> None:
    """Record the certificate ``host`` serves (``type=host``), as xapi does at start-up."""
    record = host_certificate(cert_path, ref=new_ref(), uuid=str(uuidlib.uuid4()), host=host.ref)
    model.certificates[record.ref] = record
    host.certificates.append(record.ref)
    model.journal.created("Certificate", record.ref)
    model.journal.modified("host", host.ref)


def check_migrate(model: SimModel, vm: VM, host: Host) -> None:
    """What xapi refuses before a live migration starts."""
    if vm.is_a_template:
        raise XapiError("VM_IS_TEMPLATE", [vm.ref])
    if vm.is_control_domain:
        raise XapiError("OPERATION_NOT_ALLOWED", ["This operation is not allowed on dom0"])
    if vm.power_state != RUNNING:
        raise XapiError("VM_BAD_POWER_STATE", [vm.ref, "running", vm.power_state.lower()])


def commit_migrate(model: SimModel, vm: VM, host: Host) -> str:
    """Move ``vm``'s domain to ``host``; returns the host it left.

    To the host it is on already, nothing changes (the console URIs stay the same).
    """
    old = vm.resident_on
    if old == host.ref:
        return old
    model.destroy_consoles(vm)
    vm.resident_on = host.ref
    model.create_consoles(vm)
    model.journal.modified("VM", vm.ref)
    model.journal.modified("host", old)
    model.journal.modified("host", host.ref)
    return old


def designate_new_master(model: SimModel, host: Host) -> None:
    """Make ``host`` the master; sessions live in the pool's database and so survive."""
    if model.pool.master == host.ref:
        return
    model.pool.master = host.ref
    model.journal.modified("pool", model.pool.ref)


def set_limit_console_sessions(model: SimModel, value: object) -> None:
    if not isinstance(value, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        else:
            raise XapiError("FIELD_TYPE_ERROR", ["value"])
    model.pool.limit_console_sessions = bool(value)
    model.journal.modified("pool", model.pool.ref)


def set_vm_console_idle_timeout(model: SimModel, value: object) -> None:
    """Seconds (an ``int``, XML-RPC sends it as a string); negative is ``INVALID_VALUE``."""
    try:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(value)
        seconds = int(value)
    except ValueError:
        raise XapiError("FIELD_TYPE_ERROR", ["value"]) from None
    if seconds < 0:
        raise XapiError("INVALID_VALUE", ["vm_console_idle_timeout", str(seconds)])
    model.pool.vm_console_idle_timeout = seconds
    model.journal.modified("pool", model.pool.ref)
