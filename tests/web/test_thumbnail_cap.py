"""Thumbnails are taken only of consoles up to ``thumbnail_max_pixels`` (finding 18 of
the hardening issue: every frame buffer used to be allowed up to 8192x8192, so a few
hostile bytes could make the gateway hold hundreds of MB for a picture of 160 pixels)."""

from __future__ import annotations

import pytest

from simproc import SimProcess
from xcpconsole.errors import LimitExceededError
from xcpconsole.settings import HostSettings
from xcpconsole.web.backend import default_backend
from xcpconsole.web.config import GatewayConfig


async def capture(sim: SimProcess, **overrides: int) -> bytes:
    settings = HostSettings(url=sim.url, user="", password="", fingerprint=sim.fingerprint,
                            known_hosts=sim.state_dir / "kh")
    backend = default_backend(GatewayConfig(host_settings=settings, **overrides))
    assert backend.capture is not None and backend.close is not None
    xapi = await backend.login(backend.make_settings(sim.user, sim.password))
    try:
        uuid = next(vm.uuid for vm in await xapi.vms() if vm.power_state == "Running"
                    and "rfb" in vm.console_protocols)
        return await backend.capture(xapi, uuid)
    finally:
        await xapi.logout()
        backend.close()


async def test_a_console_larger_than_the_thumbnail_cap_is_not_decoded(
        sim_host: SimProcess) -> None:
    assert (await capture(sim_host)).startswith(b"\x89PNG")  # the default cap: fine
    with pytest.raises(LimitExceededError):
        await capture(sim_host, thumbnail_max_pixels=320 * 200)
