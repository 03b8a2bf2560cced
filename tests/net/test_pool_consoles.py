"""The client against a simulated 3-host pool: trust the master once, verify every member.

Every host of the pool has its own self-signed certificate.  The user pins (or has
answered trust-on-first-use for) the master only; consoles of VMs on members must work,
each member's certificate checked against what the master lists for it, and a host that
presents another certificate must be refused before it receives a byte.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_attach import OutputWatcher

from sim.simpool import PoolProcess, pool_of
from sim.textshot import expected_row, load_png, rows_matching
from simproc import launch_sim
from tlspeer import TlsPeer, make_cert
from xcpconsole.errors import TrustError
from xcpconsole.net.tunnel import open_tunnel
from xcpconsole.settings import HostSettings
from xcpconsole.xapi import ConsoleInfo, XapiSession

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peers"))
from peerutil import free_tcp_port, need, stop, wait_for_socket
from test_real_clients import _find as find_console
from test_real_clients import xvfb  # noqa: F401 - a fixture

pytestmark = pytest.mark.peers

BIN = Path(sys.executable).parent
QEMU_VM = "win-hvm"  # on member 1 (host 2)
TEXT_VM = "alpine-pv-text"  # on member 2 (host 3), rfb + vt100


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolProcess]:
    sim = launch_sim(tmp_path_factory.mktemp("pool"), "--hosts", "3")
    try:
        yield pool_of(sim)
    finally:
        sim.stop()


def env_for(pool: PoolProcess, known_hosts: Path, *, pin: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCP")}
    env.update(XCP_HOST=pool.master.url, XCP_USER=pool.sim.user, XCP_PASSWORD=pool.sim.password,
               XCPCONSOLE_KNOWN_HOSTS=str(known_hosts),
               XCPCONSOLE_CONFIG="/nonexistent/xcpconsole.toml")
    if pin:
        env["XCP_FINGERPRINT"] = pool.master.fingerprint
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "xcpconsole"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def resident_address(pool: PoolProcess, vm_name: str) -> str:
    s = pool.session()
    try:
        vm = s.xenapi.VM.get_by_name_label(vm_name)[0]
        return str(s.xenapi.host.get_address(s.xenapi.VM.get_resident_on(vm)))
    finally:
        s.xenapi.session.logout()


def test_the_vms_used_here_run_on_members(pool: PoolProcess) -> None:
    members = {h.address for h in pool.members}
    assert len(members) == 2
    assert {resident_address(pool, QEMU_VM), resident_address(pool, TEXT_VM)} == members
    assert len({h.fingerprint for h in pool.hosts}) == 3  # a certificate of its own each


@pytest.mark.parametrize("trust", ["pinned master", "known master"])
def test_screenshot_and_type_on_members_trusting_only_the_master(
        pool: PoolProcess, tmp_path: Path, trust: str) -> None:
    known = tmp_path / "known_hosts"
    if trust == "known master":  # what a "yes" to the trust-on-first-use question wrote
        master = pool.master
        known.write_text(f"{master.address}:{master.port} SHA256:{master.fingerprint}\n")
    env = env_for(pool, known, pin=trust == "pinned master")
    before = known.read_text() if known.exists() else ""
    # QEMU on member 1: SeaBIOS's screen
    r = cli(env, "screenshot", QEMU_VM, str(tmp_path / "qemu.png"))
    assert r.returncode == 0, r.stderr
    qemu = load_png(tmp_path / "qemu.png")
    assert qemu.shape[:2] in ((400, 720), (480, 640)) and qemu.max() > 0
    # the virtual terminal on member 2: type, then read the typed text off the screen
    marker = f"pool-{trust.split()[0]}-ok"
    r = cli(env, "type", TEXT_VM, marker)
    assert r.returncode == 0, r.stderr
    for attempt in range(30):
        r = cli(env, "screenshot", TEXT_VM, str(tmp_path / f"text{attempt}.png"))
        assert r.returncode == 0, r.stderr
        img = load_png(tmp_path / f"text{attempt}.png")
        if _shows(img, marker):
            break
    else:
        pytest.fail(f"{marker!r} never showed on {TEXT_VM}'s screen")
    # no member was added to known_hosts and nothing asked a question
    assert (known.read_text() if known.exists() else "") == before
    assert "certificate" not in r.stderr.lower()


def _shows(img: np.ndarray, text: str) -> bool:
    """Whether ``text`` stands somewhere on the virtual terminal's screen (glyph pixels
    computed from the font file, not by the terminal)."""
    glyphs = expected_row(text)[:, :len(text) * 8]
    for row in range(img.shape[0] // 16):
        strip = img[row * 16:(row + 1) * 16]
        for col in range(0, 81 - len(text)):
            if np.array_equal(strip[:, col * 8:(col + len(text)) * 8], glyphs):
                return True
    return False


def test_attach_to_a_member_trusting_only_the_master(pool: PoolProcess, tmp_path: Path) -> None:
    env = env_for(pool, tmp_path / "kh", pin=True)
    proc = subprocess.Popen([str(BIN / "xcpconsole"), "attach", TEXT_VM], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        out = OutputWatcher(proc.stdout)  # type: ignore[arg-type]
        pos = out.wait_for(b"login:")
        proc.stdin.write(b"attach-on-member\r")
        proc.stdin.flush()
        out.wait_for(b"attach-on-member", pos)  # the member's guest echoed it
        proc.stdin.write(b"\x1d")
        proc.stdin.flush()
        assert proc.wait(30) == 0
        err = proc.stderr.read() if proc.stderr else b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"detached" in err and b"certificate" not in err.lower()


def test_proxy_and_vncviewer_to_a_member(pool: PoolProcess, tmp_path: Path,
                                         xvfb: dict[str, str]) -> None:  # noqa: F811
    """Stock viewers through ``xcpconsole proxy`` to a member, the master pinned only:
    vncdotool's capture equals ours, and TigerVNC's vncviewer (under Xvfb) shows it."""
    env = env_for(pool, tmp_path / "kh", pin=True)
    port = free_tcp_port()
    log = tmp_path / "proxy.log"
    with log.open("wb") as fh:
        proxy = subprocess.Popen([str(BIN / "xcpconsole"), "proxy", TEXT_VM, "--listen",
                                  f"127.0.0.1:{port}"], env=env, stdout=fh,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_socket(("127.0.0.1", port), proc=proxy, log=log)
        ours = tmp_path / "ours.png"
        r = cli(env, "screenshot", f"vnc://127.0.0.1:{port}", str(ours))
        assert r.returncode == 0, r.stderr
        theirs = tmp_path / "vncdo.png"
        r2 = subprocess.run([str(BIN / "vncdo"), "-s", f"127.0.0.1::{port}", "--nocursor",
                             "capture", str(theirs)], capture_output=True, text=True,
                            timeout=60)
        assert r2.returncode == 0, r2.stderr
        a, b = load_png(ours), load_png(theirs)
        assert a.shape == b.shape == (384, 640, 3)
        assert (a == b).all()
        assert rows_matching(a, expected_row("")) != []  # a text screen, blank rows included
        viewer_log = (tmp_path / "viewer.log").open("wb")
        viewer = subprocess.Popen(
            [need("vncviewer"), "-geometry", "+0+0", "-RemoteResize=0", "-FullScreen=0",
             "-AutoSelect=0", "-PreferredEncoding=ZRLE", f"127.0.0.1::{port}"],
            env=xvfb, stdout=viewer_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            capture, region = tmp_path / "xvfb.png", None
            for _ in range(100):
                assert viewer.poll() is None, (tmp_path / "viewer.log").read_text()
                subprocess.run([need("import"), "-window", "root", f"png:{capture}"],
                               env=xvfb, capture_output=True, timeout=30, check=True)
                region = find_console(load_png(capture), a)
                if (region == a).all():
                    break
                time.sleep(0.2)
            assert region is not None and (region == a).all()
        finally:
            stop(viewer)
            viewer_log.close()
    finally:
        stop(proxy)


async def test_a_member_with_another_certificate_gets_nothing(pool: PoolProcess,
                                                              tmp_path: Path) -> None:
    """An impostor on a member's address: the master lists another certificate for that
    host, so the tunnel is refused with both fingerprints and no byte is sent."""
    member = pool.members[0]
    files = make_cert(tmp_path, "impostor")[0]
    impostor = TlsPeer(files, reply=b"HTTP/1.1 200 OK\r\n\r\n", host=member.address)
    settings = HostSettings(url=pool.master.url, user=pool.sim.user,
                            password=pool.sim.password, fingerprint=pool.master.fingerprint,
                            known_hosts=tmp_path / "kh")
    try:
        async with await XapiSession.login(settings) as xapi:
            real = await xapi.find_console(QEMU_VM)
            fake = ConsoleInfo(**{**real.__dict__, "location":
                                  f"https://{member.address}:{impostor.port}/console?ref={real.ref}"})
            with pytest.raises(TrustError) as info:
                await open_tunnel(xapi, fake, timeout=5)
            message = str(info.value)
            assert member.fingerprint in message and files.fingerprint in message
            assert "pool master" in message
            sid = xapi.session_id
        await asyncio.to_thread(impostor.close)
    finally:
        impostor.close()
    assert all(not got for got in impostor.received)  # no CONNECT, no session id
    assert all(sid.encode() not in got for got in impostor.received)


def test_hosts_lists_the_pool(pool: PoolProcess, tmp_path: Path) -> None:
    import json

    env = env_for(pool, tmp_path / "kh", pin=True)
    r = cli(env, "hosts", "--json")
    assert r.returncode == 0, r.stderr
    rows: list[dict[str, Any]] = json.loads(r.stdout)
    assert [row["role"] for row in rows] == ["master", "member", "member"]
    assert [(row["address"], row["certificate_sha256"]) for row in rows] == [
        (h.address, h.fingerprint) for h in pool.hosts]
    table = cli(env, "hosts")
    assert table.returncode == 0, table.stderr
    for h in pool.hosts:  # verbatim: hex like ":CD:" must not become an emoji
        assert h.fingerprint in table.stdout and h.address in table.stdout
    placed = {vm for row in rows for vm in row["resident_vms"]}
    assert {QEMU_VM, TEXT_VM} <= placed
    r = cli(env, "vms", "--json")
    assert r.returncode == 0, r.stderr
    on = {vm["name_label"]: vm["resident_on"] for vm in json.loads(r.stdout)}
    names = {h.address: h.name_label for h in pool.hosts}
    assert on[QEMU_VM] == names[resident_address(pool, QEMU_VM)]
