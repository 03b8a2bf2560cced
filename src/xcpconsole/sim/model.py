"""The simulated host's database: pool, host, VMs, consoles and sessions.

Pure data and rules, no I/O: the XenAPI dispatcher (:mod:`.xapi`) and the
``/console`` handler (:mod:`.console`) read and change it, the server starts
and stops console backends around the power transitions.  The lifecycle
follows xapi: a VM's console records exist only while it has a domain
(``xapi_xenops.ml`` creates them when xenopsd reports consoles and destroys
them when they go away), so a shutdown + start gives new console refs while a
reboot keeps them.
"""

from __future__ import annotations

import secrets
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import XapiError
from .certificates import CertificateRecord
from .events import Journal
from .rbac import POOL_ADMIN, SimUser, session_permissions

NULL_REF = "OpaqueRef:NULL"

HALTED = "Halted"
RUNNING = "Running"
PAUSED = "Paused"
SUSPENDED = "Suspended"
POWER_STATES = (HALTED, PAUSED, RUNNING, SUSPENDED)

#: power operation -> the states it is allowed in, in xapi's order
#: (``Xapi_vm_lifecycle.allowed_power_states``), which ``VM_BAD_POWER_STATE`` lists
ALLOWED_POWER_STATES: dict[str, tuple[str, ...]] = {
    "start": (HALTED,),
    "clean_shutdown": (RUNNING,),
    "hard_shutdown": (PAUSED, SUSPENDED, RUNNING),
    "clean_reboot": (RUNNING,),
    "hard_reboot": (PAUSED, RUNNING),
    "suspend": (RUNNING,),
    "resume": (SUSPENDED,),
    "pause": (RUNNING,),
    "unpause": (PAUSED,),
}

#: xapi's API version of the XCP-ng 8.3 / XenServer 8 era (host.API_version_*).
API_VERSION = (2, 21)


class XapiDate(str):
    """A XenAPI ``datetime`` value: ``dateTime.iso8601`` in XML-RPC, a string in JSON."""


EPOCH = XapiDate("19700101T00:00:00Z")


def new_ref() -> str:
    """A fresh opaque reference, shaped like xapi's."""
    return f"OpaqueRef:{uuidlib.uuid4()}"


def stable_uuid(kind: str, name: str) -> str:
    """A UUID that stays the same across restarts for the same inventory entry."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"xcpconsole-sim:{kind}:{name}"))


@dataclass
class Console:
    ref: str
    uuid: str
    protocol: str
    vm: str
    location: str
    other_config: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "protocol": self.protocol,
            "location": self.location,
            "VM": self.vm,
            "other_config": dict(self.other_config),
        }


@dataclass
class VM:
    """One VM (or template, or the control domain).

    ``backend`` names the console server used while it runs (``qemu``,
    ``vncterm`` or ``none``); ``console_protocols`` the console records it
    gets when it starts.
    """

    ref: str
    uuid: str
    name_label: str
    name_description: str = ""
    power_state: str = HALTED
    is_a_template: bool = False
    is_default_template: bool = False
    is_control_domain: bool = False
    hvm: bool = True
    backend: str = "none"
    boot_script: str = "linux"
    console_protocols: tuple[str, ...] = ("rfb",)
    memory: int = 64 * 1024 * 1024
    vcpus: int = 1
    resident_on: str = NULL_REF
    #: the host it starts on (xapi's ``affinity``); NULL: the master
    affinity: str = NULL_REF
    domid: int = -1
    consoles: list[str] = field(default_factory=list)
    other_config: dict[str, str] = field(default_factory=dict)

    def allowed_operations(self) -> list[str]:
        if self.is_a_template:
            return ["clone", "copy", "export", "provision", "destroy"]
        if self.is_control_domain:
            return []
        if self.power_state == HALTED:
            return ["start", "start_on", "clone", "copy", "export", "destroy"]
        if self.power_state == RUNNING:
            return ["clean_shutdown", "hard_shutdown", "clean_reboot", "hard_reboot", "pause",
                    "suspend"]
        if self.power_state == PAUSED:
            return ["unpause", "hard_shutdown", "hard_reboot"]
        return ["resume", "hard_shutdown"]

    def record(self) -> dict[str, Any]:
        """The fields of a real ``VM`` record (those a client may plausibly read)."""
        mem = self.memory
        return {
            "uuid": self.uuid,
            "allowed_operations": self.allowed_operations(),
            "current_operations": {},
            "name_label": self.name_label,
            "name_description": self.name_description,
            "power_state": self.power_state,
            "user_version": 1,
            "is_a_template": self.is_a_template,
            "is_default_template": self.is_default_template,
            "is_a_snapshot": False,
            "snapshot_of": NULL_REF,
            "snapshots": [],
            "snapshot_time": EPOCH,
            "is_control_domain": self.is_control_domain,
            "suspend_VDI": NULL_REF,
            "resident_on": self.resident_on,
            "scheduled_to_be_resident_on": NULL_REF,
            "affinity": self.affinity,
            "memory_overhead": 1024 * 1024,
            "memory_target": mem if self.power_state != HALTED else 0,
            "memory_static_max": mem,
            "memory_dynamic_max": mem,
            "memory_dynamic_min": mem,
            "memory_static_min": min(mem, 16 * 1024 * 1024),
            "VCPUs_params": {},
            "VCPUs_max": self.vcpus,
            "VCPUs_at_startup": self.vcpus,
            "actions_after_shutdown": "destroy",
            "actions_after_reboot": "restart",
            "actions_after_crash": "restart",
            "consoles": list(self.consoles),
            "VIFs": [],
            "VBDs": [],
            "VUSBs": [],
            "crash_dumps": [],
            "VTPMs": [],
            "VGPUs": [],
            "attached_PCIs": [],
            "PV_bootloader": "" if self.hvm or self.is_control_domain else "pygrub",
            "PV_kernel": "",
            "PV_ramdisk": "",
            "PV_args": "",
            "PV_bootloader_args": "",
            "PV_legacy_args": "",
            "HVM_boot_policy": "BIOS order" if self.hvm else "",
            "HVM_boot_params": {"order": "cd"} if self.hvm else {},
            "HVM_shadow_multiplier": 1.0,
            "platform": {"acpi": "1", "apic": "true", "pae": "true", "viridian": "false"},
            "PCI_bus": "",
            "other_config": dict(self.other_config),
            "domid": self.domid,
            "domarch": "x64" if self.power_state != HALTED else "",
            "last_boot_CPU_flags": {},
            "metrics": NULL_REF,
            "guest_metrics": NULL_REF,
            "last_booted_record": "",
            "recommendations": "",
            "xenstore_data": {},
            "ha_always_run": False,
            "ha_restart_priority": "",
            "tags": [],
            "blocked_operations": {},
            "blobs": {},
            "bios_strings": {},
            "parent": NULL_REF,
            "children": [],
            "appliance": NULL_REF,
            "start_delay": 0,
            "shutdown_delay": 0,
            "order": 0,
            "suspend_SR": NULL_REF,
            "version": 0,
            "generation_id": "",
            "hardware_platform_version": 0,
            "has_vendor_device": False,
            "requires_reboot": False,
            "reference_label": "",
            "domain_type": "hvm" if self.hvm else "pv",
            "NVRAM": {},
            "pending_guidances": [],
        }


@dataclass
class Host:
    ref: str
    uuid: str
    name_label: str
    hostname: str
    address: str
    control_domain: str = NULL_REF
    name_description: str = "Simulated XenServer host"
    #: ``address[:port]`` written into the locations of consoles resident here
    console_address: str = ""
    certificates: list[str] = field(default_factory=list)

    def record(self, resident_vms: list[str]) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "name_label": self.name_label,
            "name_description": self.name_description,
            "hostname": self.hostname,
            "address": self.address,
            "enabled": True,
            "API_version_major": API_VERSION[0],
            "API_version_minor": API_VERSION[1],
            "API_version_vendor": "XenSource",
            "API_version_vendor_implementation": {},
            "software_version": {
                "product_brand": "XCP-ng",
                "product_version": "8.3.0",
                "platform_name": "XCP",
                "xapi": f"{API_VERSION[0]}.{API_VERSION[1]}",
                "xcpconsole_sim": "1",
            },
            "capabilities": [],
            "other_config": {},
            "resident_VMs": resident_vms,
            "control_domain": self.control_domain,
            "allowed_operations": ["provision", "vm_start", "vm_resume", "evacuate"],
            "current_operations": {},
            "tags": [],
            "console_idle_timeout": 0,
            "certificates": list(self.certificates),
        }


@dataclass
class Pool:
    ref: str
    uuid: str
    name_label: str
    master: str
    limit_console_sessions: bool = False
    vm_console_idle_timeout: int = 0

    def record(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "name_label": self.name_label,
            "name_description": "",
            "master": self.master,
            "default_SR": NULL_REF,
            "suspend_image_SR": NULL_REF,
            "crash_dump_SR": NULL_REF,
            "other_config": {},
            "ha_enabled": False,
            "tags": [],
            "limit_console_sessions": self.limit_console_sessions,
            "vm_console_idle_timeout": self.vm_console_idle_timeout,
        }


@dataclass
class Session:
    ref: str
    uuid: str
    user: str
    this_host: str
    originator: str = ""
    temporary: bool = False
    role: str = POOL_ADMIN  # sim/rbac.py
    superuser: bool = True  # the local root account; inventory users are not
    sid: str = ""

    def record(self, pool: str) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "this_host": self.this_host,
            "this_user": NULL_REF,
            "last_active": EPOCH,
            "pool": False,
            "other_config": {},
            "is_local_superuser": self.superuser,
            "subject": NULL_REF,
            "validation_time": EPOCH,
            "auth_user_sid": self.sid,
            "auth_user_name": self.user,
            "rbac_permissions": session_permissions(self.role, self.superuser),
            "tasks": [],
            "parent": NULL_REF,
            "originator": self.originator,
            "client_certificate": False,
        }


@dataclass
class Task:
    """The task of an ``Async.*`` call (records built by sim/power.py)."""

    ref: str
    uuid: str
    name_label: str
    resident_on: str
    created: XapiDate
    status: str = "pending"  # success | failure | cancelling | cancelled
    progress: float = 0.0
    finished: XapiDate = EPOCH
    result: str = ""
    error_info: list[str] = field(default_factory=list)


class SimModel:
    """Everything the simulated host knows, and the rules that change it.

    ``console_address`` is the ``host[:port]`` written into console
    locations (the address clients reach the sim on); ``location_style`` is
    ``"ref"`` (``?ref=<console ref>``) or ``"uuid"`` (``?uuid=<console uuid>``,
    what current xapi writes for guest consoles).  In a pool, ``hosts`` holds
    every host (``host`` is the first one, the only one of a one-host sim) and
    each host's ``console_address`` is used for the VMs resident on it; every
    change is written to ``journal`` for ``event.from`` (sim/events.py).
    """

    def __init__(
        self,
        *,
        pool: Pool,
        host: Host,
        user: str,
        password: str,
        console_address: str,
        location_style: str = "ref",
    ) -> None:
        self.pool = pool
        self.host = host
        self.user = user
        self._password = password
        self.console_address = console_address
        self.location_style = location_style
        self.vms: dict[str, VM] = {}
        self.consoles: dict[str, Console] = {}
        self.sessions: dict[str, Session] = {}
        #: who may log in, by name: the superuser first, then inventory users (sim/rbac.py)
        self.users: dict[str, SimUser] = {user: SimUser(user, password, superuser=True)}
        self._next_domid = 1
        self.hosts: dict[str, Host] = {host.ref: host}
        self.certificates: dict[str, CertificateRecord] = {}
        self.tasks: dict[str, Task] = {}
        self.journal = Journal()

    @property
    def master(self) -> Host:
        """The pool master (``pool.master``)."""
        return self.hosts.get(self.pool.master, self.host)

    # -- building --------------------------------------------------------------------
    def add_vm(self, vm: VM) -> VM:
        self.vms[vm.ref] = vm
        self.journal.created("VM", vm.ref)
        if vm.power_state in (RUNNING, PAUSED):
            self._bring_up(vm)
        return vm

    def _bring_up(self, vm: VM) -> None:
        host = self.hosts.get(vm.affinity) or self.master
        vm.resident_on = host.ref
        if vm.is_control_domain:
            vm.domid = 0
        else:
            vm.domid = self._next_domid
            self._next_domid += 1
        self.create_consoles(vm)
        self.journal.modified("VM", vm.ref)
        self.journal.modified("host", host.ref)

    def create_consoles(self, vm: VM) -> None:
        """New console records (new refs and UUIDs) naming the VM's resident host."""
        host = self.hosts.get(vm.resident_on)
        address = (host.console_address if host is not None else "") or self.console_address
        for protocol in vm.console_protocols:
            ref = new_ref()
            cuuid = str(uuidlib.uuid4())
            query = f"uuid={cuuid}" if self.location_style == "uuid" else f"ref={ref}"
            location = f"https://{address}/console?{query}"
            self.consoles[ref] = Console(ref, cuuid, protocol, vm.ref, location)
            vm.consoles.append(ref)
            self.journal.created("console", ref)

    def destroy_consoles(self, vm: VM) -> None:
        for ref in vm.consoles:
            if self.consoles.pop(ref, None) is not None:
                self.journal.deleted("console", ref)
        vm.consoles = []

    def _tear_down(self, vm: VM) -> None:
        host = vm.resident_on
        self.destroy_consoles(vm)
        vm.resident_on = NULL_REF
        vm.domid = -1
        self.journal.modified("VM", vm.ref)
        self.journal.modified("host", host)

    # -- sessions --------------------------------------------------------------------
    def login(
        self, user: str, password: str, originator: str = "", *, temporary: bool = False
    ) -> str:
        """Check credentials and open a session; ``SESSION_AUTHENTICATION_FAILED`` else.

        The session carries the user's role (sim/rbac.py), fixed at login as on xapi.
        """
        found: SimUser | None = None
        for known in self.users.values():  # compare with every user: no early exit
            ok_user = secrets.compare_digest(user.encode(), known.name.encode())
            ok_pw = secrets.compare_digest(password.encode(), known.password.encode())
            if ok_user and ok_pw:
                found = known
        if found is None:
            raise XapiError(
                "SESSION_AUTHENTICATION_FAILED",
                [user, "Authentication failure"],
            )
        ref = new_ref()
        self.sessions[ref] = Session(
            ref, str(uuidlib.uuid4()), user, self.master.ref, originator, temporary,
            role=found.role, superuser=found.superuser, sid=found.sid,
        )
        return ref

    def add_user(self, user: SimUser) -> None:
        """Let ``user`` log in (an inventory ``[[users]]`` entry)."""
        if user.name in self.users:
            raise ValueError(f"user {user.name!r} exists already")
        self.users[user.name] = user

    def logout(self, session: str) -> None:
        self.sessions.pop(session, None)

    def session(self, ref: object) -> Session:
        """The live session named ``ref``; ``SESSION_INVALID`` otherwise."""
        found = self.sessions.get(ref) if isinstance(ref, str) else None
        if found is None:
            raise XapiError("SESSION_INVALID", [str(ref)])
        return found

    # -- lookups ---------------------------------------------------------------------
    def vm(self, ref: object) -> VM:
        found = self.vms.get(ref) if isinstance(ref, str) else None
        if found is None:
            raise XapiError("HANDLE_INVALID", ["VM", str(ref)])
        return found

    def console(self, ref: object) -> Console:
        found = self.consoles.get(ref) if isinstance(ref, str) else None
        if found is None:
            raise XapiError("HANDLE_INVALID", ["console", str(ref)])
        return found

    def vm_by_uuid(self, uuid: object) -> VM:
        for vm in self.vms.values():
            if vm.uuid == uuid:
                return vm
        raise XapiError("UUID_INVALID", ["VM", str(uuid)])

    def console_by_uuid(self, uuid: object) -> Console:
        for console in self.consoles.values():
            if console.uuid == uuid:
                return console
        raise XapiError("UUID_INVALID", ["console", str(uuid)])

    def resident_vms(self, host_ref: str | None = None) -> list[str]:
        here = self.host.ref if host_ref is None else host_ref
        return [vm.ref for vm in self.vms.values() if vm.resident_on == here]

    # -- power transitions -------------------------------------------------------------
    def _check_state(self, vm: VM, allowed: tuple[str, ...]) -> None:
        if vm.is_a_template:
            raise XapiError("VM_IS_TEMPLATE", [vm.ref])
        if vm.is_control_domain:
            raise XapiError("OPERATION_NOT_ALLOWED", ["This operation is not allowed on dom0"])
        if vm.power_state not in allowed:
            raise XapiError(
                "VM_BAD_POWER_STATE",
                [vm.ref, ", ".join(s.lower() for s in allowed), vm.power_state.lower()],
            )

    def check_power(self, vm: VM, operation: str) -> None:
        """``VM_BAD_POWER_STATE`` (or template / control domain errors) unless ``vm`` may
        undergo ``operation`` (a key of :data:`ALLOWED_POWER_STATES`) now."""
        self._check_state(vm, ALLOWED_POWER_STATES[operation])

    def check_start(self, vm: VM) -> None:
        self.check_power(vm, "start")

    def commit_start(self, vm: VM, paused: bool) -> None:
        vm.power_state = PAUSED if paused else RUNNING
        self._bring_up(vm)

    def check_shutdown(self, vm: VM, hard: bool) -> None:
        self.check_power(vm, "hard_shutdown" if hard else "clean_shutdown")

    def commit_shutdown(self, vm: VM) -> None:
        vm.power_state = HALTED
        self._tear_down(vm)

    def check_reboot(self, vm: VM, hard: bool) -> None:
        self.check_power(vm, "hard_reboot" if hard else "clean_reboot")

    def commit_reboot(self, vm: VM) -> None:
        """A reboot gives a new domain (new domid) but keeps the console records."""
        vm.power_state = RUNNING
        vm.domid = self._next_domid
        self._next_domid += 1
        self.journal.modified("VM", vm.ref)

    def commit_suspend(self, vm: VM) -> None:
        """The memory image is saved and the domain destroyed: no console records."""
        vm.power_state = SUSPENDED
        self._tear_down(vm)

    def commit_resume(self, vm: VM, paused: bool) -> None:
        """A new domain (new domid, new console records) on the VM's host, as a start."""
        self.commit_start(vm, paused)

    def commit_pause(self, vm: VM, paused: bool) -> None:
        """Pause or unpause: the domain and its console records stay."""
        vm.power_state = PAUSED if paused else RUNNING
        self.journal.modified("VM", vm.ref)
