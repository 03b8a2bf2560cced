"""Power control: start, shut down, reboot, suspend, resume, pause and unpause a VM.

One table, :data:`POWER_ACTIONS`, says for each action which XenAPI call makes it
(and which one ``force`` makes it), in which power states the host allows that call
(xapi's ``Xapi_vm_lifecycle.allowed_power_states``) and which state it leads to.

:func:`change_power` checks the VM's state first, so that a wrong one is one line
naming the command that would work ("it is paused: xcpconsole unpause NAME"), then
makes the call in its ``Async.`` form and follows the host's ``task`` (its progress is
reported) and then the VM's ``power_state`` until the target state is reached.  The
asynchronous form is why ``timeout`` can bound the whole wait: a synchronous
``VM.clean_shutdown`` blocks the session until the guest has shut down, however long
that takes.  When the time is up the host carries on; only the waiting stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import AuthError, UsageError, XapiError, XcpConsoleError
from .models import VmInfo
from .session import XapiSession, _map_error, _sdk

HALTED = "Halted"
RUNNING = "Running"
PAUSED = "Paused"
SUSPENDED = "Suspended"

#: the default of ``timeout``: a clean shutdown waits for the guest, which may be slow
DEFAULT_TIMEOUT = 300.0
POLL_INTERVAL = 0.25

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PowerCall:
    """A XenAPI call (its arguments after the VM) and the states the host allows it in."""

    method: str
    allowed: tuple[str, ...]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class PowerAction:
    """What ``xcpconsole ACTION VM`` does: ``clean``, or ``hard`` with ``--force``."""

    name: str
    doing: str
    target: str
    clean: PowerCall
    hard: PowerCall | None = None

    def call(self, force: bool) -> PowerCall:
        if not force:
            return self.clean
        if self.hard is None:
            raise UsageError(f"--force applies to shutdown and reboot, not to {self.name}")
        return self.hard


#: action -> calls, allowed states, target state (the one table; see the module doc)
POWER_ACTIONS: dict[str, PowerAction] = {a.name: a for a in (
    PowerAction("start", "starting", RUNNING,
                PowerCall("VM.start", (HALTED,), (False, False))),  # not paused, not forced
    PowerAction("shutdown", "shutting down", HALTED,
                PowerCall("VM.clean_shutdown", (RUNNING,)),
                PowerCall("VM.hard_shutdown", (PAUSED, SUSPENDED, RUNNING))),
    PowerAction("reboot", "rebooting", RUNNING,
                PowerCall("VM.clean_reboot", (RUNNING,)),
                PowerCall("VM.hard_reboot", (PAUSED, RUNNING))),
    PowerAction("suspend", "suspending", SUSPENDED, PowerCall("VM.suspend", (RUNNING,))),
    PowerAction("resume", "resuming", RUNNING,
                PowerCall("VM.resume", (SUSPENDED,), (False, False))),
    PowerAction("pause", "pausing", PAUSED, PowerCall("VM.pause", (RUNNING,))),
    PowerAction("unpause", "unpausing", RUNNING, PowerCall("VM.unpause", (PAUSED,))),
)}


@dataclass(frozen=True)
class PowerResult:
    """What :func:`change_power` did: ``power_state`` is None when it did not wait."""

    vm: VmInfo
    action: str
    power_state: str | None
    seconds: float


def command_line(action: str, vm: str, *, force: bool = False) -> str:
    """``xcpconsole ACTION [--force] VM``, the name quoted for a shell."""
    return f"xcpconsole {action}{' --force' if force else ''} {shlex.quote(vm)}"


def way_to(target: str, state: str, vm: str) -> str | None:
    """The command that takes VM ``vm`` from ``state`` to ``target`` in one step
    (a halted VM to Running: ``xcpconsole start VM``; a paused one: ``unpause``)."""
    for action in POWER_ACTIONS.values():
        if action.target == target and state in action.clean.allowed:
            return command_line(action.name, vm)
    for action in POWER_ACTIONS.values():
        if action.hard and action.target == target and state in action.hard.allowed:
            return command_line(action.name, vm, force=True)
    return None


def wrong_state_message(action: str, state: str, vm: str) -> str:
    """One line: VM ``vm`` cannot undergo ``action`` in ``state``, and what would work."""
    rule = POWER_ACTIONS[action]
    shown = state.lower()
    if state == rule.target and action != "reboot":
        return f"VM {vm!r} is already {shown}"
    head = f"cannot {action} VM {vm!r}: it is {shown}"
    if rule.hard is not None and state in rule.hard.allowed:
        return f"{head}: {command_line(action, vm, force=True)}"
    fix = way_to(rule.target, state, vm)
    if fix is not None:
        return f"{head}: {fix}"
    for needed in rule.clean.allowed:  # e.g. suspend a paused VM: unpause it first
        fix = way_to(needed, state, vm)
        if fix is not None:
            return f"{head}: {fix} first"
    return head


def _wrong_state(info: VmInfo, action: str, state: str, vm: str, expected: str) -> XapiError:
    return XapiError("VM_BAD_POWER_STATE", [info.ref, expected, state.lower()],
                     wrong_state_message(action, state, vm))


def _host_error(error_info: Any, method: str, info: VmInfo, action: str,
                vm: str) -> XcpConsoleError:
    """A failed call's ErrorDescription (or a task's ``error_info``) as our error."""
    details = [str(d) for d in error_info] if isinstance(error_info, list) else []
    error = _map_error(_sdk().Failure(details or ["INTERNAL_ERROR", "no error_info"]), method)
    return _refine(error, info, action, vm)


def _refine(error: XcpConsoleError, info: VmInfo, action: str, vm: str) -> XcpConsoleError:
    if isinstance(error, XapiError):
        if error.code == "VM_BAD_POWER_STATE" and len(error.params) >= 3:
            return _wrong_state(info, action, error.params[2].capitalize(), vm, error.params[1])
        shown = " ".join([error.code, *(p for p in error.params
                                        if not p.startswith("OpaqueRef:"))])
        return XapiError(error.code, error.params,
                         f"the host refused to {action} VM {vm!r}: {shown}")
    return error


async def change_power(
    xapi: XapiSession, vm: VmInfo | str, action: str, *, force: bool = False,
    wait: bool = True, timeout: float = DEFAULT_TIMEOUT, progress: Progress | None = None,
    poll_interval: float = POLL_INTERVAL, used: float = 0.0,
) -> PowerResult:
    """Do ``action`` (a key of :data:`POWER_ACTIONS`) to ``vm`` (a name, uuid or
    :class:`VmInfo`); with ``wait``, return once its power state is the target.

    ``timeout`` bounds the call and the wait together; ``used``: seconds of it already
    spent by the caller (signing in), so that one limit covers a whole command.
    Errors: the VM is in the wrong state (one line naming what would work) -> :class:`XapiError`
    ``VM_BAD_POWER_STATE``; the user's role may not -> :class:`AuthError`; the time
    is up -> :class:`XcpConsoleError`; ``force`` where there is no hard form, or a bad
    ``timeout`` -> :class:`UsageError`.
    """
    rule = POWER_ACTIONS.get(action)
    if rule is None:
        raise UsageError(f"unknown power action {action!r} (one of {', '.join(POWER_ACTIONS)})")
    call = rule.call(force)
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"the timeout must be a positive number of seconds, not {timeout!r}")
    name = vm if isinstance(vm, str) else vm.name_label
    info = await xapi.find_vm(vm) if isinstance(vm, str) else vm
    if info.power_state not in call.allowed:
        raise _wrong_state(info, action, info.power_state, name,
                           ", ".join(s.lower() for s in call.allowed))
    say: Progress = progress or (lambda _text: None)
    loop = asyncio.get_running_loop()
    started = loop.time()
    say(f"{rule.doing} {name} ({info.power_state.lower()} -> {rule.target.lower()})")
    try:
        async with asyncio.timeout_at(started + max(0.0, timeout - used)):
            if not wait:  # the task would refuse it, but nobody would look
                await _check_permission(xapi, call.method)
            task = await _start(xapi, call, info, action, name)
            if not wait:
                say(f"{rule.doing} {name}: asked the host; not waiting")
                return PowerResult(info, action, None, loop.time() - started)
            if task is not None:
                await _follow_task(xapi, task, call, info, action, name, say, poll_interval)
            while (state := str(await xapi.call("VM.get_power_state", info.ref))) != rule.target:
                await asyncio.sleep(poll_interval)
    except TimeoutError:
        now = await _state_now(xapi, info)
        raise XcpConsoleError(
            f"VM {name!r} did not become {rule.target.lower()} within {timeout:g} s"
            f" (it is {now}); the host carries on with the {action}") from None
    elapsed = loop.time() - started
    say(f"{name} is {state.lower()} ({elapsed:.1f} s)")
    return PowerResult(info, action, state, elapsed)


async def _check_permission(xapi: XapiSession, method: str) -> None:
    """AuthError when the session's role clearly lacks ``method`` (the local superuser
    may do everything; other sessions list their permissions, in lower case)."""
    record = await xapi.call("session.get_record", xapi.session_id)
    if not isinstance(record, dict) or record.get("is_local_superuser") is not False:
        return
    permissions = record.get("rbac_permissions")
    if isinstance(permissions, list) and method.lower() not in {
            str(p).lower() for p in permissions}:
        raise AuthError(f"permission denied for {method}: the role of user "
                        f"{record.get('auth_user_name') or '?'!s} lacks {method.lower()}")


async def _start(xapi: XapiSession, call: PowerCall, info: VmInfo, action: str,
                 vm: str) -> str | None:
    """``Async.<method>``: the task's ref; a host without it gets the plain call (None)."""
    try:
        try:
            return str(await xapi.call(f"Async.{call.method}", info.ref, *call.args))
        except XapiError as exc:
            if exc.code != "MESSAGE_METHOD_UNKNOWN":
                raise
        await xapi.call(call.method, info.ref, *call.args)
        return None
    except XcpConsoleError as exc:
        raise _refine(exc, info, action, vm) from None


async def _follow_task(xapi: XapiSession, task: str, call: PowerCall, info: VmInfo,
                       action: str, vm: str, say: Progress, poll_interval: float) -> None:
    """Poll the task until it ends, reporting its progress in tens of percent; a
    finished task is destroyed (a pending one is left to the host when time is up)."""
    shown = 0
    while True:
        record = await xapi.call("task.get_record", task)
        status = record.get("status") if isinstance(record, dict) else None
        if status in ("success", "failure", "cancelled"):
            await _destroy(xapi, task)
            if status == "success":
                return
            if status == "cancelled":
                raise XcpConsoleError(f"the {action} of VM {vm!r} was cancelled on the host")
            raise _host_error(record.get("error_info"), call.method, info, action, vm)
        try:
            percent = int(float(record.get("progress", 0)) * 10) * 10
        except (TypeError, ValueError):
            percent = 0
        if shown < percent < 100:
            shown = percent
            say(f"{vm}: {percent}%")
        await asyncio.sleep(poll_interval)


async def _destroy(xapi: XapiSession, task: str) -> None:
    with contextlib.suppress(XcpConsoleError):  # the host forgets old tasks on its own
        await xapi.call("task.destroy", task)


async def _state_now(xapi: XapiSession, info: VmInfo) -> str:
    """The VM's power state for a timeout message, if the host answers quickly."""
    try:
        return str(await asyncio.wait_for(xapi.call("VM.get_power_state", info.ref),
                                          5.0)).lower()
    except (TimeoutError, XcpConsoleError):
        return "in an unknown state"
