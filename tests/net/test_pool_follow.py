"""Consoles follow their VM across a live migration, and sessions follow a new master.

A 3-host simulated pool, the master pinned only.  During an open ``proxy`` and an open
``attach``, the VM moves to another member (``VM.pool_migrate``): the host closes the
old tunnels, the console records are re-created with the new host's location, and the
client must end up on the new host, with the guest's own screen and text there.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_attach import OutputWatcher

from sim.simpool import PoolProcess, pool_of
from sim.textshot import load_png
from simproc import launch_sim
from xcpconsole.settings import HostSettings
from xcpconsole.xapi import XapiSession

pytestmark = pytest.mark.peers

BIN = Path(sys.executable).parent
TEXT_VM = "alpine-pv-text"


@pytest.fixture
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolProcess]:
    """A fresh pool per test: these tests move VMs and masters around."""
    sim = launch_sim(tmp_path_factory.mktemp("pool"), "--hosts", "3")
    try:
        yield pool_of(sim)
    finally:
        sim.stop()


def env_for(pool: PoolProcess, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCP")}
    env.update(XCP_HOST=pool.master.url, XCP_USER=pool.sim.user, XCP_PASSWORD=pool.sim.password,
               XCP_FINGERPRINT=pool.master.fingerprint,
               XCPCONSOLE_KNOWN_HOSTS=str(tmp_path / "kh"),
               XCPCONSOLE_CONFIG="/nonexistent/xcpconsole.toml")
    return env


def migrate(pool: PoolProcess, vm_name: str) -> str:
    """Move ``vm_name`` to another member; returns the new host's address."""
    s = pool.session()
    try:
        vm = s.xenapi.VM.get_by_name_label(vm_name)[0]
        here = s.xenapi.VM.get_resident_on(vm)
        target = next(ref for ref in s.xenapi.host.get_all()
                      if ref != here and ref != s.xenapi.pool.get_master(
                          s.xenapi.pool.get_all()[0]))
        s.xenapi.VM.pool_migrate(vm, target, {})
        assert s.xenapi.VM.get_resident_on(vm) == target
        return str(s.xenapi.host.get_address(target))
    finally:
        s.xenapi.session.logout()


def screenshot(env: dict[str, str], target: str, path: Path) -> None:
    r = subprocess.run([str(BIN / "xcpconsole"), "screenshot", target, str(path)], env=env,
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr


def test_proxy_follows_a_migration(pool: PoolProcess, tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peers"))
    from peerutil import free_tcp_port, stop, wait_for_socket

    env = env_for(pool, tmp_path)
    port = free_tcp_port()
    log = tmp_path / "proxy.log"
    with log.open("wb") as fh:
        proxy = subprocess.Popen([str(BIN / "xcpconsole"), "proxy", TEXT_VM, "--listen",
                                  f"127.0.0.1:{port}"], env=env, stdout=fh,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_socket(("127.0.0.1", port), proc=proxy, log=log)
        screenshot(env, f"vnc://127.0.0.1:{port}", tmp_path / "before.png")
        migrate(pool, TEXT_VM)
        # the next viewer through the same proxy reaches the VM on its new host
        screenshot(env, f"vnc://127.0.0.1:{port}", tmp_path / "after.png")
        screenshot(env, TEXT_VM, tmp_path / "direct.png")
        after, direct = load_png(tmp_path / "after.png"), load_png(tmp_path / "direct.png")
        assert after.shape == (384, 640, 3) and (after == direct).all()
        text = log.read_text(errors="replace")
        assert "no longer running on" in text, text
        assert proxy.poll() is None
    finally:
        stop(proxy)


def test_attach_follows_a_migration(pool: PoolProcess, tmp_path: Path) -> None:
    env = env_for(pool, tmp_path)
    proc = subprocess.Popen([str(BIN / "xcpconsole"), "attach", TEXT_VM], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        out = OutputWatcher(proc.stdout)  # type: ignore[arg-type]
        err = OutputWatcher(proc.stderr)  # type: ignore[arg-type]
        pos = out.wait_for(b"login:")
        new_address = migrate(pool, TEXT_VM)
        err.wait_for(f"reconnecting to {TEXT_VM} on {new_address}".encode())
        proc.stdin.write(b"typed-after-move\r")
        proc.stdin.flush()
        out.wait_for(b"typed-after-move", pos)  # echoed by the guest, now on the new host
        proc.stdin.write(b"\x1d")
        proc.stdin.flush()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_session_follows_a_new_master(pool: PoolProcess, tmp_path: Path) -> None:
    """After ``pool.designate_new_master`` the old master answers HOST_IS_SLAVE; the
    session moves on (xapi keeps sessions), the new master trusted as the old one
    described it, and consoles still open."""
    settings = HostSettings(url=pool.master.url, user=pool.sim.user,
                            password=pool.sim.password, fingerprint=pool.master.fingerprint,
                            known_hosts=tmp_path / "kh")
    async with await XapiSession.login(settings) as xapi:
        hosts = await xapi.pool_hosts()  # what a long-lived client (the gateway) holds
        assert len(hosts) == 3
        sid = xapi.session_id
        new = pool.members[0]
        pool_ref = (await xapi.call("pool.get_all"))[0]
        new_ref = next(h.ref for h in hosts if h.address == new.address)
        await xapi.call("pool.designate_new_master", new_ref)
        vms = await xapi.vms()  # the old master now says HOST_IS_SLAVE: followed
        assert {vm.name_label for vm in vms} >= {TEXT_VM}
        assert xapi.settings.host == new.address and xapi.session_id == sid
        assert await xapi.call("pool.get_master", pool_ref) == new_ref
        console = await xapi.find_console(TEXT_VM, "vt100")
        from xcpconsole.net.tunnel import open_tunnel

        reader, writer = await open_tunnel(xapi, console, timeout=10)
        writer.write(b"\r")
        assert await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
