"""Who may do what: xapi's roles, the permissions the simulated host guards, the checks.

xapi's RBAC (``ocaml/idl/datamodel_roles.ml``, ``ocaml/xapi/rbac.ml``): six static
roles in decreasing order of privilege; every API call and HTTP action has a
permission, and the roles allowed it are always "this role and every role above it"
(``roles_gte``).  A permission is the call's name in lower case (``vm.start``) or
``http/`` + the HTTP action (``http/connect_console``); the control domain's console
needs the extra ``http/connect_console/host_console``.  The local superuser (the
sim's ``--user``) may do everything.  A denied call fails with
``RBAC_PERMISSION_DENIED [permission, "No permission in user session. (Roles with
this permission: …)"]``, the roles listed in the order of :data:`ROLES`.

Only the permissions below are guarded; everything else the sim serves (getters,
``get_all_records``, ``event.from``, ``session.*``) is open to every role, as it is
on xapi (``_R_READ_ONLY``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import XapiError

POOL_ADMIN = "pool-admin"
POOL_OPERATOR = "pool-operator"
VM_POWER_ADMIN = "vm-power-admin"
VM_ADMIN = "vm-admin"
VM_OPERATOR = "vm-operator"
READ_ONLY = "read-only"

#: xapi's static roles, most privileged first (``Datamodel_roles.roles_all``).
ROLES = (POOL_ADMIN, POOL_OPERATOR, VM_POWER_ADMIN, VM_ADMIN, VM_OPERATOR, READ_ONLY)

CONNECT_CONSOLE = "http/connect_console"
CONNECT_CONSOLE_WS = "http/connect_console_ws"
HOST_CONSOLE = "http/connect_console/host_console"

#: permission -> the least privileged role that has it (xapi's ``~allowed_roles``).
LEAST_ROLE: dict[str, str] = {
    # datamodel.ml http_actions: connect_console(_ws) are _R_VM_OP; the host console's
    # sub-permission is _R_POOL_ADMIN (console.ml: rbac_check_for_control_domain)
    CONNECT_CONSOLE: VM_OPERATOR,
    CONNECT_CONSOLE_WS: VM_OPERATOR,
    HOST_CONSOLE: POOL_ADMIN,
    # datamodel_vm.ml: power operations are _R_VM_OP, migration _R_VM_POWER_ADMIN
    "vm.start": VM_OPERATOR,
    "vm.clean_shutdown": VM_OPERATOR,
    "vm.hard_shutdown": VM_OPERATOR,
    "vm.shutdown": VM_OPERATOR,
    "vm.clean_reboot": VM_OPERATOR,
    "vm.hard_reboot": VM_OPERATOR,
    "vm.suspend": VM_OPERATOR,
    "vm.resume": VM_OPERATOR,
    "vm.pause": VM_OPERATOR,
    "vm.unpause": VM_OPERATOR,
    "vm.pool_migrate": VM_POWER_ADMIN,
    # datamodel_pool.ml: designate_new_master _R_POOL_OP; the two console options are
    # RW fields with ~writer_roles:_R_POOL_OP
    "pool.designate_new_master": POOL_OPERATOR,
    "pool.set_limit_console_sessions": POOL_OPERATOR,
    "pool.set_vm_console_idle_timeout": POOL_OPERATOR,
}


def roles_with(permission: str) -> tuple[str, ...]:
    """Every role that has ``permission`` (all roles for an unguarded one), in xapi's order."""
    least = LEAST_ROLE.get(permission, READ_ONLY)
    return ROLES[: ROLES.index(least) + 1]


def _role_table() -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = {role: set() for role in ROLES}
    for permission in LEAST_ROLE:
        for role in roles_with(permission):
            table[role].add(permission)
    return {role: frozenset(perms) for role, perms in table.items()}


#: role -> the guarded permissions it has (derived from :data:`LEAST_ROLE`).
ROLE_PERMISSIONS: dict[str, frozenset[str]] = _role_table()


@dataclass(frozen=True)
class SimUser:
    """A user who can log in: the local superuser (``--user``) or an inventory user.

    Inventory users stand for the external (AD) subjects a real pool gives roles to:
    they are not local superusers and carry exactly their role's permissions.
    """

    name: str
    password: str
    role: str = POOL_ADMIN
    superuser: bool = False
    sid: str = ""

    def __repr__(self) -> str:  # never show the password
        return f"SimUser({self.name!r}, role={self.role!r}, superuser={self.superuser})"


def is_allowed(role: str, superuser: bool, permission: str) -> bool:
    """Whether a session of ``role`` (or the superuser) has ``permission``."""
    if superuser or permission not in LEAST_ROLE:
        return True
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def denial(permission: str) -> XapiError:
    """``RBAC_PERMISSION_DENIED`` as ``Rbac.check`` raises it."""
    roles = ", ".join(roles_with(permission))
    return XapiError(
        "RBAC_PERMISSION_DENIED",
        [permission, f"No permission in user session. (Roles with this permission: {roles})"],
    )


def check(role: str, superuser: bool, permission: str) -> None:
    """Raise :func:`denial` unless a session of ``role`` has ``permission``."""
    if not is_allowed(role, superuser, permission):
        raise denial(permission)


def permission_of_call(method: str) -> str:
    """An API call's permission: its name in lower case (``Rbac.permission_of_action``)."""
    return method.lower()


def session_permissions(role: str, superuser: bool) -> list[str]:
    """A session's ``rbac_permissions`` field: empty for the superuser, as on xapi."""
    return [] if superuser else sorted(ROLE_PERMISSIONS.get(role, frozenset()))
