"""A host that closes an idle keep-alive connection does not break the next XenAPI call.

Real xapi closes idle connections too; a long-lived session (the web gateway's) must
reconnect instead of failing its next call.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from xcpconsole.settings import HostSettings
from xcpconsole.sim import HttpLimits, SimConfig, serve
from xcpconsole.xapi import XapiSession


async def test_call_after_the_host_closed_an_idle_connection(tmp_path: Path) -> None:
    host = await serve(SimConfig(state_dir=tmp_path, password="pw", listen_port=0,
                                 limits=HttpLimits(idle_timeout=0.3)))
    try:
        settings = HostSettings(url=host.url, user="root", password="pw",
                                fingerprint=host.fingerprint)
        xapi = await XapiSession.login(settings)
        try:
            first = {vm.uuid for vm in await xapi.vms()}
            await asyncio.sleep(1.0)  # the host drops the idle keep-alive connection
            assert {vm.uuid for vm in await xapi.vms()} == first
            await asyncio.sleep(1.0)
            await xapi.call("VM.get_all")
        finally:
            await xapi.logout()
    finally:
        await host.close()


class _FlakySdk:
    """Stands for XenAPI.Session: the first request finds the connection closed."""

    def __init__(self, error: BaseException) -> None:
        self.error: BaseException | None = error
        self.closed = 0
        self.transport = self

    def close(self) -> None:
        self.closed += 1

    def xenapi_request(self, method: str, args: tuple[object, ...]) -> object:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return [method, *args]


async def test_each_way_a_dead_connection_shows_is_retried_once() -> None:
    import http.client
    import ssl

    for error in (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
                  ConnectionResetError(104, "reset"), http.client.RemoteDisconnected("x")):
        sdk = _FlakySdk(error)
        xapi = XapiSession(sdk, HostSettings(url="https://h", user="u", password="p"))
        assert await xapi.call("VM.get_all", 1) == ["VM.get_all", 1]
        assert sdk.closed == 1
