"""Every XenAPI call ends by its deadline, and a host restart costs no viewer.

A host that drips its answer a byte at a time never trips a per-read timeout; the
deadline covers the call as a whole (finding 8 of the hardening issue).  After a host
restart the idle keep-alive connection is dead: the re-login must not use it (finding 7).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from simproc import launch_sim
from tlspeer import TlsPeer, make_cert
from xcpconsole.errors import NetworkError
from xcpconsole.settings import HostSettings
from xcpconsole.xapi import XapiSession

SLOW_REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nX-Pad: " + b"a" * 400 + b"\r\n\r\n"


async def test_a_dripping_host_cannot_hold_the_login_past_its_deadline(tmp_path: Path) -> None:
    cert = make_cert(tmp_path, "drip")[0]
    peer = TlsPeer(cert, reply=SLOW_REPLY, drip=0.2)  # ~90 s for the whole head
    try:
        settings = HostSettings(url=f"https://127.0.0.1:{peer.port}", user="root",
                                password="pw", fingerprint=cert.fingerprint)
        started = time.monotonic()
        with pytest.raises(NetworkError, match="did not answer the login within 1 s"):
            await asyncio.wait_for(XapiSession.login(settings, timeout=1.0), 30)
        # the thread that was reading is unblocked too: its socket was shut down
        deadline = time.monotonic() + 10
        while not peer.received and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert peer.received, "the dripping connection was not closed"
        assert time.monotonic() - started < 25
    finally:
        peer.close()


async def test_a_call_on_a_host_that_stopped_answering_ends_and_the_next_works(
        tmp_path: Path) -> None:
    """The host process stops (SIGSTOP: connections accepted by the kernel, nothing
    answered); the call ends at its deadline; once the host runs again the next call
    works on a fresh connection (the old one is left half-read)."""
    sim = launch_sim(tmp_path / "sim")
    try:
        settings = HostSettings(url=sim.url, user=sim.user, password=sim.password,
                                fingerprint=sim.fingerprint)
        xapi = await XapiSession.login(settings, timeout=1.0)
        try:
            names = {vm.uuid for vm in await xapi.vms()}
            os.kill(sim.pid, signal.SIGSTOP)
            try:
                with pytest.raises(NetworkError, match="timed out"):
                    await asyncio.wait_for(xapi.call("VM.get_all_records"), 30)
            finally:
                os.kill(sim.pid, signal.SIGCONT)
            assert {vm.uuid for vm in await xapi.vms()} == names
        finally:
            await xapi.logout()
    finally:
        sim.stop()


async def test_relogin_after_a_host_restart_uses_a_fresh_connection(tmp_path: Path) -> None:
    """The host dies (kill -9: its TLS connections end without close_notify) and comes
    back on the same address: the re-login a console tunnel makes on its 401 works the
    first time (it used the dead keep-alive connection and failed)."""
    sim = launch_sim(tmp_path / "sim")
    settings = HostSettings(url=sim.url, user=sim.user, password=sim.password,
                            fingerprint=sim.fingerprint)
    xapi = await XapiSession.login(settings)
    try:
        await xapi.vms()  # the keep-alive connection is open now
        sim.proc.kill()
        sim.proc.wait(10)
        sim = launch_sim(tmp_path / "sim", password=sim.password, port=sim.port)
        await xapi.relogin()
        assert await xapi.vms()
    finally:
        await xapi.logout()
        sim.stop()
