"""What the gateway needs of the host, as typed protocols.

The handlers only see :class:`HostSession` / :class:`HostVm` / :class:`HostConsole`:
the subset of :class:`~xcpconsole.xapi.XapiSession`, :class:`~xcpconsole.xapi.VmInfo`
and :class:`~xcpconsole.xapi.ConsoleInfo` they use (the test fakes implement the same).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any, Protocol

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HostVm(Protocol):
    """A VM as the VM list and console pages show it."""

    @property
    def uuid(self) -> str: ...
    @property
    def name_label(self) -> str: ...
    @property
    def power_state(self) -> str: ...
    @property
    def is_control_domain(self) -> bool: ...
    @property
    def console_protocols(self) -> Collection[str]: ...
    @property
    def resident_on(self) -> str: ...  # the ref of the host it runs on


class HostConsole(Protocol):
    """A console record: enough to open its tunnel and to act on its VM (XVP)."""

    @property
    def vm_ref(self) -> str: ...
    @property
    def vm_uuid(self) -> str: ...
    @property
    def protocol(self) -> str: ...


class HostSession(Protocol):
    """One signed-in user's XAPI session (all actions run with that user's rights)."""

    async def vms(self) -> Sequence[HostVm]: ...
    async def find_vm(self, name_or_uuid: str) -> HostVm: ...
    async def find_console(self, vm: str, protocol: str = "rfb") -> HostConsole: ...
    async def call(self, method: str, *args: Any) -> Any: ...
    async def host_names(self) -> dict[str, str]: ...  # host ref -> name-label
    async def logout(self) -> None: ...
