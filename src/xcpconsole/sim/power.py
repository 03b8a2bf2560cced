"""``VM.suspend`` / ``resume`` / ``pause`` / ``unpause``, the ``Async.VM.*`` power calls
and the ``task`` records they create; the guest's time to shut down.

As on xapi (``xapi_vm.ml``, ``xapi_vm_lifecycle.ml``, ``xapi_xenops.ml``):

- ``pause`` / ``unpause``: the domain stays, and so do its console records (a paused
  VM's ``/console`` is refused, ``console.ml`` wants ``Running``).
- ``suspend``: the memory image is saved and the domain destroyed: no console
  records, no ``resident_on``, ``domid`` -1; the console backend stops.
- ``resume(vm, start_paused, force)``: like a start, a new domain on the VM's host
  (new domid, new console records); the console backend starts again.
- ``Async.<call>``: parameters and session are checked at once (by the dispatcher);
  the call itself, its RBAC check included (xapi's generated server runs ``Rbac.check``
  inside the task), runs in a ``task`` whose ``status`` goes from ``pending`` to
  ``success`` or ``failure`` (``error_info`` = the error's code and parameters),
  ``progress`` from 0 to 1.  The caller destroys it (``task.destroy``).
- A clean shutdown or reboot waits for the guest to shut down: instantly, unless the
  VM's ``other_config`` has ``sim_shutdown_seconds`` (a guest taking that long); a
  hard shutdown or reboot meanwhile cancels it (``TASK_CANCELLED``, task ``cancelled``).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol

from ..errors import XapiError
from . import rbac
from .model import NULL_REF, RUNNING, VM, SimModel, Task, XapiDate, new_ref

log = logging.getLogger(__name__)

Handler = Callable[[list[Any]], Awaitable[Any]]

#: ``other_config`` key: seconds the guest takes to shut down cleanly (sim only)
SHUTDOWN_SECONDS = "sim_shutdown_seconds"
#: finished tasks beyond this many are forgotten, oldest first (xapi's GC is time-based)
MAX_TASKS = 1000
#: the calls served as ``Async.<call>`` too (xapi has an async form of each)
ASYNC_CALLS = (
    "VM.start", "VM.clean_shutdown", "VM.hard_shutdown", "VM.shutdown", "VM.clean_reboot",
    "VM.hard_reboot", "VM.suspend", "VM.resume", "VM.pause", "VM.unpause", "VM.pool_migrate",
)

_current_task: ContextVar[Task | None] = ContextVar("sim_current_task", default=None)


class BackendControl(Protocol):
    """What suspend and resume ask of the server (``xapi.PowerControl`` has these)."""

    async def vm_starting(self, vm: VM) -> None: ...

    async def vm_stopped(self, vm: VM) -> None: ...


def _now() -> XapiDate:
    return XapiDate(datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H:%M:%SZ"))


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _seconds(text: str | None) -> float:
    try:
        value = float(text or 0)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def report_progress(fraction: float) -> None:
    """Set the progress of the task running the current call (if it is an async one)."""
    task = _current_task.get()
    if task is not None and task.status == "pending":
        task.progress = round(max(task.progress, min(fraction, 1.0)), 3)


async def guest_shutdown(vm: VM) -> None:
    """Wait while the guest shuts down (``other_config:sim_shutdown_seconds``).

    A hard shutdown or reboot meanwhile cancels the wait, as xapi's ``hard_shutdown``
    cancels a clean shutdown in progress: ``TASK_CANCELLED [task]``."""
    seconds = _seconds(vm.other_config.get(SHUTDOWN_SECONDS))
    if not seconds:
        return
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    domid = vm.domid
    while (left := end - loop.time()) > 0:
        if vm.power_state != RUNNING or vm.domid != domid:
            task = _current_task.get()
            raise XapiError("TASK_CANCELLED", [task.ref if task is not None else new_ref()])
        report_progress(0.9 * (1.0 - left / seconds))
        await asyncio.sleep(min(0.05, left))


def task_record(task: Task) -> dict[str, Any]:
    """A ``task`` record as xapi sends it."""
    return {
        "uuid": task.uuid,
        "name_label": task.name_label,
        "name_description": "",
        "allowed_operations": [],
        "current_operations": {},
        "created": task.created,
        "finished": task.finished,
        "status": task.status,
        "resident_on": task.resident_on,
        "progress": task.progress,
        "type": "<none/>",
        "result": task.result,
        "error_info": list(task.error_info),
        "other_config": {},
        "subtask_of": NULL_REF,
        "subtasks": [],
        "backtrace": "()",
    }


def _task_of(model: SimModel, ref: object) -> Task:
    found = model.tasks.get(ref) if isinstance(ref, str) else None
    if found is None:
        raise XapiError("HANDLE_INVALID", ["task", str(ref)])
    return found


def _new_task(model: SimModel, name_label: str) -> Task:
    if len(model.tasks) >= MAX_TASKS:
        for ref in [r for r, t in model.tasks.items() if t.status != "pending"]:
            del model.tasks[ref]
            if len(model.tasks) < MAX_TASKS:
                break
    task = Task(new_ref(), str(uuidlib.uuid4()), name_label, model.master.ref, _now())
    model.tasks[task.ref] = task
    return task


def _finish(task: Task, *, result: str = "", error: list[str] | None = None) -> None:
    task.finished = _now()
    if error is None:
        task.status, task.progress, task.result = "success", 1.0, result
    else:
        task.status, task.error_info = "failure", error


def power_methods(
    model: SimModel, lock: asyncio.Lock, backends: BackendControl,
    methods: dict[str, tuple[int, Handler]],
) -> dict[str, tuple[int, Handler]]:
    """``name -> (parameter count including the session, handler)``: the four power
    calls, ``Async.*`` of :data:`ASYNC_CALLS` (of these and of ``methods``) and ``task.*``."""
    m = model
    out: dict[str, tuple[int, Handler]] = {}
    running: set[asyncio.Task[None]] = set()  # strong references to the async calls

    async def suspend(p: list[Any]) -> str:
        vm = m.vm(p[1])
        async with lock:
            m.check_power(vm, "suspend")
            m.commit_suspend(vm)
            await backends.vm_stopped(vm)
        return ""

    async def resume(p: list[Any]) -> str:
        vm = m.vm(p[1])
        async with lock:
            m.check_power(vm, "resume")
            await backends.vm_starting(vm)
            m.commit_resume(vm, _as_bool(p[2]))
        return ""

    def pause(paused: bool) -> Handler:
        async def run(p: list[Any]) -> str:
            vm = m.vm(p[1])
            async with lock:
                m.check_power(vm, "pause" if paused else "unpause")
                m.commit_pause(vm, paused)
            return ""

        return run

    out["VM.suspend"] = (2, suspend)
    out["VM.resume"] = (4, resume)
    out["VM.pause"] = (2, pause(True))
    out["VM.unpause"] = (2, pause(False))

    def asynchronous(name: str, handler: Handler) -> Handler:
        permission = rbac.permission_of_call(name)

        async def start(p: list[Any]) -> str:
            session = m.session(p[0])
            task = _new_task(m, f"Async.{name}")

            async def run() -> None:
                _current_task.set(task)
                try:
                    rbac.check(session.role, session.superuser, permission)
                    value = await handler(p)
                except XapiError as exc:
                    _finish(task, error=[exc.code, *exc.params])
                    if exc.code == "TASK_CANCELLED":
                        task.status = "cancelled"
                except Exception as exc:  # a failing backend must not leave it pending
                    log.exception("%s failed", name)
                    _finish(task, error=["INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"])
                else:
                    _finish(task, result=value if isinstance(value, str) else "")

            job = asyncio.create_task(run())
            running.add(job)
            job.add_done_callback(running.discard)
            return task.ref

        return start

    for name in ASYNC_CALLS:
        entry = out.get(name) or methods.get(name)
        if entry is not None:
            out[f"Async.{name}"] = (entry[0], asynchronous(name, entry[1]))

    def add(name: str, count: int, fn: Callable[[list[Any]], Any]) -> None:
        async def run(p: list[Any]) -> Any:
            return fn(p)

        out[name] = (count, run)

    def by_uuid(p: list[Any]) -> str:
        for task in m.tasks.values():
            if task.uuid == p[1]:
                return task.ref
        raise XapiError("UUID_INVALID", ["task", str(p[1])])

    def destroy(p: list[Any]) -> str:
        m.tasks.pop(_task_of(m, p[1]).ref)
        return ""

    add("task.get_all", 1, lambda p: list(m.tasks))
    add("task.get_all_records", 1, lambda p: {r: task_record(t) for r, t in m.tasks.items()})
    add("task.get_record", 2, lambda p: task_record(_task_of(m, p[1])))
    add("task.get_by_uuid", 2, by_uuid)
    add("task.get_by_name_label", 2,
        lambda p: [r for r, t in m.tasks.items() if t.name_label == p[1]])
    add("task.destroy", 2, destroy)
    def getter(field: str) -> Callable[[list[Any]], Any]:
        return lambda p: task_record(_task_of(m, p[1]))[field]

    for field in task_record(Task("", "", "", "", _now())):
        add(f"task.get_{field}", 2, getter(field))
    return out
