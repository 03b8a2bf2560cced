"""The gateway against a real simulated host whose sessions end or slow down.

Finding 6 of the hardening issue: the host restarts with the user's password changed.
The SDK's automatic re-login used to try the old password on every 5-second poll (an
account lock-out under PAM or AD rules) while the user got a 502 each time.  Now one
refused re-login signs the user out.  Finding 4: sign-ins run on threads of their own,
so sign-ins held by a slow host (PAM's failure delay) do not stall signed-in users.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from simproc import SimProcess, launch_sim
from xcpconsole.settings import HostSettings
from xcpconsole.web.app import create_app
from xcpconsole.web.config import GatewayConfig
from xcpconsole.web.gateway import GATEWAY

from .test_gateway import Clock, Gw


async def real_gateway(sim: SimProcess, **overrides: Any) -> Gw:
    settings = HostSettings(url=sim.url, user="", password="", fingerprint=sim.fingerprint,
                            known_hosts=sim.state_dir / "kh")
    app = create_app(GatewayConfig(host_settings=settings, thumbnails=False, **overrides))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return Gw(client, None, Clock())  # type: ignore[arg-type]


def statuses_so_far(tasks: list[asyncio.Task[int]]) -> list[int | None]:
    return [t.result() if t.done() else None for t in tasks]


def refused_logins(sim: SimProcess) -> int:
    return (sim.state_dir / "sim.log").read_text(errors="replace").count("login refused")


@pytest.fixture
async def restarted(tmp_path: Path) -> AsyncIterator[list[SimProcess]]:
    sims = [launch_sim(tmp_path / "sim")]
    yield sims
    sims[-1].stop()


async def test_password_changed_on_the_host_signs_the_user_out_after_one_try(
        restarted: list[SimProcess]) -> None:
    sim = restarted[0]
    gw = await real_gateway(sim)
    try:
        assert (await gw.login(sim.user, sim.password)).status == 303
        assert (await gw.client.get("/api/vms")).status == 200
        sim.stop()  # the host restarts: every session is gone, and the password changed
        sim = launch_sim(sim.state_dir, password="a-new-password", port=sim.port)
        restarted.append(sim)
        answers = [(await gw.client.get("/api/vms", allow_redirects=False)).status
                   for _ in range(6)]  # the page polls every 5 s
        assert answers[0] == 401  # signed out: the page goes to the sign-in page
        assert all(a in (303, 401) for a in answers[1:]), answers
        assert refused_logins(sim) == 1  # one re-login with the old password, no more
        page = await (await gw.client.get("/login?ended=1")).text()
        assert "no longer accepts the password" in page
        # the new password works
        assert (await gw.login(sim.user, "a-new-password")).status == 303
        assert (await gw.client.get("/api/vms")).status == 200
        assert refused_logins(sim) == 1
    finally:
        await gw.client.close()


async def test_sign_ins_stuck_at_the_host_do_not_stall_signed_in_users(
        tmp_path: Path) -> None:
    sim = launch_sim(tmp_path / "sim", "--auth-fail-delay", "4")
    gw = await real_gateway(sim, signins_in_flight=4, signins_per_address=8)
    try:
        assert (await gw.login(sim.user, sim.password)).status == 303
        async def guess(n: int) -> int:
            async with aiohttp.ClientSession(gw.origin) as other:  # a browser of its own
                form = await (await other.get("/login")).text()
                found = re.search(r'name="csrf" value="([^"]+)"', form)
                assert found
                gate = found.group(1)
                resp = await other.post("/login", data={"username": f"user{n}",
                                                        "password": "x", "csrf": gate},
                                        headers={"Origin": gw.origin}, allow_redirects=False)
                return resp.status

        guesses = [asyncio.create_task(guess(n)) for n in range(12)]
        await asyncio.sleep(1.0)  # the first four are with the host for 4 s each
        stuck = [t for t in threading.enumerate() if t.name.startswith("xapi-signin")]
        assert len(stuck) == 4, statuses_so_far(guesses)
        # a signed-in user's calls run on the other pool meanwhile
        resp = await asyncio.wait_for(gw.client.get("/api/vms"), 3.0)
        assert resp.status == 200
        statuses = await asyncio.gather(*guesses)
        assert sorted(set(statuses)) == [401, 503]  # four refused by the host, the rest busy
        assert statuses.count(401) == 4
        assert gw.client.app[GATEWAY].signins._in_flight == 0
    finally:
        await gw.client.close()
        sim.stop()
