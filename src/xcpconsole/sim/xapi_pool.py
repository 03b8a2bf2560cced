"""The pool's XenAPI calls: ``Certificate``, ``VM.pool_migrate``, ``pool.*``, ``event.from``.

Registered into :class:`~.xapi.XenApiDispatcher` next to the one-host calls;
parameter counts and the session are checked there first, as for every call,
then handles (``HANDLE_INVALID``) before the operation's own checks.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..errors import XapiError
from . import pool as rules
from .certificates import CertificateRecord
from .events import EventSource
from .model import VM, SimModel, XapiDate

Handler = Callable[[list[Any]], Awaitable[Any]]


class PoolControl(Protocol):
    """What the server does around a migration (the model has changed already)."""

    async def vm_migrated(self, vm: VM, old_host: str) -> None:
        """End the VM's console tunnels on ``old_host``."""


def _date(when: datetime.datetime) -> XapiDate:
    return XapiDate(when.astimezone(datetime.UTC).strftime("%Y%m%dT%H:%M:%SZ"))


def certificate_record(cert: CertificateRecord) -> dict[str, Any]:
    """A ``Certificate`` record as xapi sends it (``fingerprint`` = SHA-256, deprecated)."""
    return {
        "uuid": cert.uuid,
        "name": cert.name,
        "type": cert.type,
        "host": cert.host,
        "not_before": _date(cert.not_before),
        "not_after": _date(cert.not_after),
        "fingerprint": cert.fingerprint_sha256,
        "fingerprint_sha256": cert.fingerprint_sha256,
        "fingerprint_sha1": cert.fingerprint_sha1,
    }


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
#: A record with every field, for the generic field getters (``Certificate.get_<field>``).
PROBE_CERTIFICATE = certificate_record(
    CertificateRecord("", "", "", "host", "", "", _EPOCH, _EPOCH, ""))


def certificate_of(model: SimModel, ref: object) -> CertificateRecord:
    found = model.certificates.get(ref) if isinstance(ref, str) else None
    if found is None:
        raise XapiError("HANDLE_INVALID", ["Certificate", str(ref)])
    return found


def pool_methods(
    model: SimModel, lock: asyncio.Lock, control: PoolControl | None, events: EventSource,
) -> dict[str, tuple[int, Handler]]:
    """``name -> (parameter count including the session, handler)``."""
    m = model
    methods: dict[str, tuple[int, Handler]] = {}

    def add(name: str, count: int, fn: Callable[[list[Any]], Any]) -> None:
        async def run(p: list[Any]) -> Any:
            return fn(p)

        methods[name] = (count, run)

    def by_uuid(p: list[Any]) -> str:
        for cert in m.certificates.values():
            if cert.uuid == p[1]:
                return cert.ref
        raise XapiError("UUID_INVALID", ["Certificate", str(p[1])])

    def server_certificate(p: list[Any]) -> str:
        host = rules.host_of(m, p[1])
        for ref in host.certificates:
            cert = m.certificates.get(ref)
            if cert is not None and cert.type == "host":
                return cert.pem
        raise XapiError("INTERNAL_ERROR", [f"no server certificate for host {host.ref}"])

    add("Certificate.get_by_uuid", 2, by_uuid)
    add("host.get_server_certificate", 2, server_certificate)

    async def pool_migrate(p: list[Any]) -> str:
        vm = m.vm(p[1])
        host = rules.host_of(m, p[2])
        if not isinstance(p[3], dict):
            raise XapiError("FIELD_TYPE_ERROR", ["options"])
        async with lock:
            rules.check_migrate(m, vm, host)
            old = rules.commit_migrate(m, vm, host)
            if control is not None and old != host.ref:
                await control.vm_migrated(vm, old)
        return ""

    methods["VM.pool_migrate"] = (4, pool_migrate)

    def pool_ref(p: list[Any]) -> None:
        if p[1] != m.pool.ref:
            raise XapiError("HANDLE_INVALID", ["pool", str(p[1])])

    def designate(p: list[Any]) -> str:
        rules.designate_new_master(m, rules.host_of(m, p[1]))
        return ""

    def set_limit(p: list[Any]) -> str:
        pool_ref(p)
        rules.set_limit_console_sessions(m, p[2])
        return ""

    def set_idle(p: list[Any]) -> str:
        pool_ref(p)
        rules.set_vm_console_idle_timeout(m, p[2])
        return ""

    add("pool.designate_new_master", 2, designate)
    add("pool.set_limit_console_sessions", 3, set_limit)
    add("pool.set_vm_console_idle_timeout", 3, set_idle)

    async def event_from(p: list[Any]) -> dict[str, Any]:
        session = p[0]
        return await events.event_from(p[1], p[2], p[3], lambda: m.session(session))

    methods["event.from"] = (4, event_from)
    return methods
