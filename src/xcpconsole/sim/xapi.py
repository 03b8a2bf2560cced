"""XenAPI over XML-RPC and JSON-RPC, answered from the simulated host's model.

Wire shapes follow xapi's ``ocaml/doc/wire-protocol.md``: XML-RPC results are
``{"Status": "Success", "Value": v}`` or ``{"Status": "Failure",
"ErrorDescription": [code, *params]}`` with 64-bit ints sent as decimal
strings; JSON-RPC v1 answers ``{"result", "error": [code, ...], "id"}`` and v2
``{"jsonrpc": "2.0", "result" | "error": {"code": 1, "message": code, "data":
params}, "id"}`` with ints as numbers.  As in xapi's generated server, a
call's parameter count is checked first, then the session, then the handles.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import xmlrpc.client
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..errors import ProtocolError, XapiError
from . import pool as rules
from . import rbac
from .events import EventSource, Int32
from .model import VM, Console, Session, SimModel, XapiDate
from .power import guest_shutdown, power_methods
from .xapi_pool import (
    PROBE_CERTIFICATE,
    PoolControl,
    certificate_of,
    certificate_record,
    pool_methods,
)

log = logging.getLogger("xcpconsole.sim.xapi")

#: Characters XML 1.0 cannot carry at all, not even as references (a VM name with an ESC
#: in it would make the whole reply unparsable): sent as U+FFFD, like a lossy decoder.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

class PowerControl(Protocol):
    """What the dispatcher asks of the server around power transitions."""

    async def vm_starting(self, vm: VM) -> None:
        """Start the VM's console backend; raise to make ``VM.start`` fail."""

    async def vm_stopped(self, vm: VM) -> None:
        """Stop the VM's console backend."""

    async def vm_rebooting(self, vm: VM) -> None:
        """Restart the VM's console backend (a new domain boots)."""


class RequestParseError(ProtocolError):
    """The RPC body could not be parsed (answered with HTTP 500 like xapi)."""


Handler = Callable[[list[Any]], Awaitable[Any]]


def _to_xmlrpc(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return "" if value is None else value
    if isinstance(value, Int32):
        return int(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, XapiDate):
        return xmlrpc.client.DateTime(str(value))
    if isinstance(value, dict):
        return {str(k): _to_xmlrpc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_xmlrpc(v) for v in value]
    return value


def _to_json(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, XapiDate):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


class XenApiDispatcher:
    """Routes ``class.method`` calls to the model; one instance per host.

    With ``master_address`` set it answers as a pool member (a "slave") does:
    ``session.login_with_password`` fails with ``HOST_IS_SLAVE [master
    address]`` whatever the credentials (``xapi_session.ml`` checks the pool
    role before the password), and so does every call made with a valid
    session, because the sessions of external clients are only honoured by
    the master (``session_check.ml``); an unknown session is still
    ``SESSION_INVALID``, and parameter counts are checked first as usual.
    In a pool the role can change (``pool.designate_new_master``): then
    ``slave_of()`` says, at each call, what this host's ``HOST_IS_SLAVE``
    names (None while it is the master).  ``pool`` is told about migrations;
    ``power_lock`` is shared by the dispatchers of one pool.
    """

    def __init__(
        self, model: SimModel, power: PowerControl, *, master_address: str | None = None,
        slave_of: Callable[[], str | None] | None = None, pool: PoolControl | None = None,
        power_lock: asyncio.Lock | None = None, auth_fail_delay: float = 0.0,
    ) -> None:
        self.model = model
        self.power = power
        self._auth_fail_delay = auth_fail_delay
        self._slave_of = slave_of if slave_of is not None else (lambda: master_address)
        self._methods: dict[str, tuple[int, Handler]] = {}
        # one power transition at a time, like a task queue
        self._power_lock = power_lock if power_lock is not None else asyncio.Lock()
        self._register()
        events = EventSource(model.journal, self._snapshot, self._counts)
        self._methods.update(pool_methods(model, self._power_lock, pool, events))
        self._methods.update(power_methods(model, self._power_lock, power, self._methods))

    @property
    def master_address(self) -> str | None:
        """What ``HOST_IS_SLAVE`` names now, or None when this host is the master."""
        return self._slave_of()

    # -- wire formats ----------------------------------------------------------------
    async def handle_xmlrpc(self, body: bytes) -> bytes:
        """Answer one XML-RPC request body; raise :class:`RequestParseError` if unparsable."""
        try:
            params, method = xmlrpc.client.loads(body, use_builtin_types=True)
        except Exception as exc:  # expat and xmlrpc raise many unrelated types
            reason = type(exc).__name__
            raise RequestParseError(f"XML-RPC body could not be parsed: {reason}") from exc
        if not isinstance(method, str):
            raise RequestParseError("XML-RPC body has no methodName")
        try:
            value = await self.call(method, list(params))
            reply: dict[str, Any] = {"Status": "Success", "Value": _to_xmlrpc(value)}
        except XapiError as exc:
            reply = {"Status": "Failure", "ErrorDescription": [exc.code, *exc.params]}
        text = xmlrpc.client.dumps((reply,), methodresponse=True, allow_none=False)
        return _XML_ILLEGAL.sub("\ufffd", text).encode()

    async def handle_jsonrpc(self, body: bytes) -> bytes:
        """Answer one JSON-RPC (v1 or v2) request body."""
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestParseError("JSON-RPC body is not JSON") from exc
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            raise RequestParseError("JSON-RPC body is not a call object")
        params = request.get("params", [])
        if not isinstance(params, list):
            params = [params]
        v2 = request.get("jsonrpc") == "2.0"
        call_id = request.get("id")
        reply: dict[str, Any]
        try:
            value = _to_json(await self.call(request["method"], params))
            reply = {"jsonrpc": "2.0", "result": value} if v2 else {"result": value, "error": None}
        except XapiError as exc:
            if v2:
                error = {"code": 1, "message": exc.code, "data": exc.params}
                reply = {"jsonrpc": "2.0", "error": error}
            else:
                reply = {"result": None, "error": [exc.code, *exc.params]}
        reply["id"] = call_id
        return json.dumps(reply).encode()

    # -- dispatch --------------------------------------------------------------------
    async def call(self, method: str, params: list[Any]) -> Any:
        """Run one XenAPI call; failures are :class:`XapiError` with xapi's code and params."""
        entry = self._methods.get(method) or self._generic(method)
        if entry is None:
            raise XapiError("MESSAGE_METHOD_UNKNOWN", [method])
        count, handler = entry
        session: Session | None = None
        if method == "session.login_with_password":
            if not 2 <= len(params) <= 4:
                raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", [method, "4", str(len(params))])
        elif len(params) != count:
            raise XapiError(  # xapi names an async call without its "Async." (gen_server.ml)
                "MESSAGE_PARAMETER_COUNT_MISMATCH",
                [method.removeprefix("Async."), str(count), str(len(params))],
            )
        else:
            session = self.model.session(params[0])
        master = self._slave_of()
        if master is not None:
            raise XapiError("HOST_IS_SLAVE", [master])
        if session is not None:
            # generated server code: session check, then Rbac.check, then the call
            rbac.check(session.role, session.superuser, rbac.permission_of_call(method))
        return await handler(params)

    def _generic(self, method: str) -> tuple[int, Handler] | None:
        """Field getters (``VM.get_name_label``...) derived from the records."""
        cls, _, name = method.partition(".")
        if not name.startswith("get_") or cls not in self._record_getters:
            return None
        field = name[4:]
        getter = self._record_getters[cls]

        async def get_field(p: list[Any]) -> Any:
            record = getter(p[1])
            return record[field]

        probe = self._probe_record(cls)
        if probe is not None and field not in probe:
            return None
        return 2, get_field

    def _probe_record(self, cls: str) -> dict[str, Any] | None:
        m = self.model
        if cls == "VM":
            return next(iter(m.vms.values())).record() if m.vms else None
        if cls == "console":
            return Console("", "", "", "", "").record()
        if cls == "host":
            return m.host.record([])
        if cls == "pool":
            return m.pool.record()
        if cls == "Certificate":
            return PROBE_CERTIFICATE
        return None

    def _snapshot(self, cls: str, ref: str) -> dict[str, Any]:
        """The current record of an ``event.from`` row (class names are lower case there)."""
        for name, getter in self._record_getters.items():
            if name.lower() == cls:
                return getter(ref)
        raise XapiError("HANDLE_INVALID", [cls, ref])

    def _counts(self) -> dict[str, int]:
        m = self.model
        return {
            "vm": len(m.vms), "console": len(m.consoles), "host": len(m.hosts), "pool": 1,
            "certificate": len(m.certificates), "session": len(m.sessions),
        }

    # -- handlers --------------------------------------------------------------------
    @property
    def _record_getters(self) -> dict[str, Callable[[Any], dict[str, Any]]]:
        m = self.model
        return {
            "VM": lambda ref: m.vm(ref).record(),
            "console": lambda ref: m.console(ref).record(),
            "host": self._host_record,
            "pool": self._pool_record,
            "Certificate": lambda ref: certificate_record(certificate_of(m, ref)),
        }

    def _host_record(self, ref: Any) -> dict[str, Any]:
        host = rules.host_of(self.model, ref)
        return host.record(self.model.resident_vms(host.ref))

    def _pool_record(self, ref: Any) -> dict[str, Any]:
        if ref != self.model.pool.ref:
            raise XapiError("HANDLE_INVALID", ["pool", str(ref)])
        return self.model.pool.record()

    def _register(self) -> None:
        m = self.model
        add = self._add

        async def login(p: list[Any]) -> str:
            user, pwd = str(p[0]), str(p[1])
            originator = str(p[3]) if len(p) > 3 else ""
            try:
                return m.login(user, pwd, originator)
            except XapiError as exc:
                if exc.code == "SESSION_AUTHENTICATION_FAILED":
                    # xapi logs each refused login; PAM answers it late (pam_faildelay)
                    log.info("login refused for user %s", ascii(user[:64]))
                    await asyncio.sleep(self._auth_fail_delay)
                raise

        async def logout(p: list[Any]) -> str:
            m.logout(p[0])
            m.journal.wake()  # a blocked event.from of that session fails now
            return ""

        def session_rec(ref: Any) -> dict[str, Any]:
            found = m.sessions.get(ref) if isinstance(ref, str) else None
            if found is None:
                raise XapiError("HANDLE_INVALID", ["session", str(ref)])
            return found.record(m.pool.ref)

        add("session.login_with_password", 4, login)
        add("session.logout", 1, logout)
        for field in Session("", "", "", "").record(""):
            add(f"session.get_{field}", 2, _field_of(session_rec, field))
        add("session.get_record", 2, _wrap(lambda p: session_rec(p[1])))

        getters = self._record_getters
        tables: dict[str, Callable[[], list[str]]] = {
            "VM": lambda: list(m.vms),
            "console": lambda: list(m.consoles),
            "host": lambda: list(m.hosts),
            "pool": lambda: [m.pool.ref],
            "Certificate": lambda: list(m.certificates),
        }
        for cls, refs in tables.items():
            self._add_class(cls, refs, getters[cls])

        add("VM.get_by_uuid", 2, _wrap(lambda p: m.vm_by_uuid(p[1]).ref))
        add("console.get_by_uuid", 2, _wrap(lambda p: m.console_by_uuid(p[1]).ref))
        add("host.get_by_uuid", 2, _wrap(lambda p: self._host_by_uuid(p[1])))
        add("pool.get_by_uuid", 2,
            _wrap(lambda p: self._by_uuid("pool", m.pool.uuid, m.pool.ref, p[1])))
        add("VM.get_by_name_label", 2,
            _wrap(lambda p: [vm.ref for vm in m.vms.values() if vm.name_label == p[1]]))
        add("host.get_by_name_label", 2,
            _wrap(lambda p: [h.ref for h in m.hosts.values() if h.name_label == p[1]]))

        async def start(p: list[Any]) -> str:
            vm = m.vm(p[1])
            async with self._power_lock:
                m.check_start(vm)
                await self.power.vm_starting(vm)
                m.commit_start(vm, _as_bool(p[2]))
            return ""

        def shutdown(hard: bool) -> Handler:
            async def run(p: list[Any]) -> str:
                vm = m.vm(p[1])
                if not hard:  # the guest shuts down first (sim/power.py)
                    m.check_shutdown(vm, hard)
                    await guest_shutdown(vm)
                async with self._power_lock:
                    m.check_shutdown(vm, hard)
                    m.commit_shutdown(vm)
                    await self.power.vm_stopped(vm)
                return ""

            return run

        def reboot(hard: bool) -> Handler:
            async def run(p: list[Any]) -> str:
                vm = m.vm(p[1])
                if not hard:
                    m.check_reboot(vm, hard)
                    await guest_shutdown(vm)
                async with self._power_lock:
                    m.check_reboot(vm, hard)
                    m.commit_reboot(vm)
                    await self.power.vm_rebooting(vm)
                return ""

            return run

        add("VM.start", 4, start)
        add("VM.clean_shutdown", 2, shutdown(False))
        add("VM.hard_shutdown", 2, shutdown(True))
        add("VM.shutdown", 2, shutdown(False))
        add("VM.clean_reboot", 2, reboot(False))
        add("VM.hard_reboot", 2, reboot(True))

    def _add_class(
        self, cls: str, refs: Callable[[], list[str]], getter: Callable[[Any], dict[str, Any]]
    ) -> None:
        """get_all, get_all_records and get_record of one class."""
        self._add(f"{cls}.get_all", 1, _wrap(lambda p: refs()))
        self._add(f"{cls}.get_all_records", 1, _wrap(lambda p: {r: getter(r) for r in refs()}))
        self._add(f"{cls}.get_record", 2, _wrap(lambda p: getter(p[1])))

    def _host_by_uuid(self, asked: Any) -> str:
        for host in self.model.hosts.values():
            if host.uuid == asked:
                return host.ref
        raise XapiError("UUID_INVALID", ["host", str(asked)])

    def _by_uuid(self, cls: str, have: str, ref: str, asked: Any) -> str:
        if asked != have:
            raise XapiError("UUID_INVALID", [cls, str(asked)])
        return ref

    def _add(self, name: str, count: int, handler: Handler) -> None:
        self._methods[name] = (count, handler)


def _wrap(fn: Callable[[list[Any]], Any]) -> Handler:
    async def run(p: list[Any]) -> Any:
        return fn(p)

    return run


def _field_of(getter: Callable[[Any], dict[str, Any]], field: str) -> Handler:
    return _wrap(lambda p: getter(p[1])[field])
