"""The real CLI (subprocess) against the simulated host: listings, errors, trust, proxy."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

XCPCONSOLE = Path(sys.executable).parent / "xcpconsole"
VNCDOTOOL = Path(sys.executable).parent / "vncdotool"


def env_for(sim, tmp_path: Path, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCP")}
    env.update(XCP_HOST=sim.url, XCP_USER=sim.user, XCP_PASSWORD=sim.password,
               XCP_FINGERPRINT=sim.fingerprint,
               XCPCONSOLE_KNOWN_HOSTS=str(tmp_path / "known_hosts"),
               XCPCONSOLE_CONFIG=str(tmp_path / "config.toml"))
    env.update(extra)
    return {k: v for k, v in env.items() if v != ""}


def cli(sim, tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([str(XCPCONSOLE), *args], env=env_for(sim, tmp_path, **extra),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def sdk_refs(sim) -> set[str]:  # type: ignore[no-untyped-def]
    s = sim.session()
    try:
        return set(s.xenapi.VM.get_all()) | set(s.xenapi.console.get_all())
    finally:
        s.xenapi.session.logout()


def only_object_refs(text: str, allowed: set[str]) -> None:
    """No OpaqueRef in output other than VM/console refs (so no session id)."""
    assert set(re.findall(r"OpaqueRef:[0-9a-f-]{36}", text)) <= allowed


def test_vms_table_and_json(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table = cli(sim_host, tmp_path, "vms")
    assert table.returncode == 0, table.stderr
    s = sim_host.session()
    try:
        records = {r["uuid"]: r for r in s.xenapi.VM.get_all_records().values()
                   if not r["is_a_template"] and not r["is_control_domain"]}
    finally:
        s.xenapi.session.logout()
    for uuid, rec in records.items():
        line = next(ln for ln in table.stdout.splitlines() if uuid in ln)
        assert rec["name_label"] in line and rec["power_state"] in line
    as_json = cli(sim_host, tmp_path, "vms", "--json")
    assert as_json.returncode == 0
    rows = json.loads(as_json.stdout)
    assert {r["uuid"]: (r["name_label"], r["power_state"]) for r in rows} == {
        u: (r["name_label"], r["power_state"]) for u, r in records.items()}
    only_object_refs(table.stdout + table.stderr + as_json.stdout, set())


def test_consoles_like_xe(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = cli(sim_host, tmp_path, "consoles", "alpine-pv-text")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("vm-name-label ( RO): alpine-pv-text") == 2
    assert "protocol ( RO)     : RFB" in out.stdout and "protocol ( RO)     : VT100" in out.stdout
    rows = json.loads(cli(sim_host, tmp_path, "consoles", "--json").stdout)
    s = sim_host.session()
    try:
        want = {(r["uuid"], r["location"]) for r in s.xenapi.console.get_all_records().values()}
    finally:
        s.xenapi.session.logout()
    assert {(r["uuid"], r["location"]) for r in rows} == want
    only_object_refs(out.stdout + out.stderr, sdk_refs(sim_host))


@pytest.mark.parametrize(("args", "code", "words"), [
    (("consoles", "no-such-vm"), 1, "no VM named 'no-such-vm'"),
    (("proxy", "centos-halted", "--listen", "127.0.0.1:0"), 1, "halted"),
    (("attach", "win-hvm"), 1, "no vt100 console"),
])
def test_user_errors(sim_host, tmp_path: Path, args: tuple[str, ...], code: int,  # type: ignore[no-untyped-def]
                     words: str) -> None:
    out = cli(sim_host, tmp_path, *args)
    assert out.returncode == code and words in out.stderr
    assert "Traceback" not in out.stderr


def test_ambiguous_name(start_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inv = tmp_path / "inv.toml"
    inv.write_text('[[vm]]\nname_label = "twin"\nuuid = "11111111-1111-4111-8111-111111111111"\n'
                   'backend = "none"\nconsoles = []\n'
                   '[[vm]]\nname_label = "twin"\nuuid = "22222222-2222-4222-8222-222222222222"\n'
                   'backend = "none"\nconsoles = []\n')
    sim = start_sim("--inventory", str(inv))
    out = cli(sim, tmp_path, "consoles", "twin")
    assert out.returncode == 1
    assert "11111111-1111-4111-8111-111111111111" in out.stderr
    assert "22222222-2222-4222-8222-222222222222" in out.stderr


def test_wrong_password(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = cli(sim_host, tmp_path, "vms", XCP_PASSWORD="not-the-password")
    assert out.returncode == 3 and "refused the user name or password" in out.stderr
    assert "not-the-password" not in out.stderr + out.stdout
    nopw = cli(sim_host, tmp_path, "vms", XCP_PASSWORD="")
    assert nopw.returncode == 3 and "XCP_PASSWORD" in nopw.stderr


def test_trust_failures(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    other = "SHA256:" + "ab" * 32
    wrong = cli(sim_host, tmp_path, "vms", "--fingerprint", other)
    assert wrong.returncode == 4 and "does not match the pinned" in wrong.stderr
    assert sim_host.fingerprint in wrong.stderr
    unknown = cli(sim_host, tmp_path, "vms", XCP_FINGERPRINT="")
    assert unknown.returncode == 4
    assert f"--fingerprint {sim_host.fingerprint}" in unknown.stderr
    assert f"XCP_FINGERPRINT={sim_host.fingerprint}" in unknown.stderr
    assert not (tmp_path / "known_hosts").exists()
    (tmp_path / "known_hosts").write_text(f"127.0.0.1:{sim_host.port} SHA256:{'CD' * 32}\n")
    changed = cli(sim_host, tmp_path, "vms", XCP_FINGERPRINT="")
    assert changed.returncode == 4 and "CHANGED" in changed.stderr
    assert ":".join(["CD"] * 32) in changed.stderr and sim_host.fingerprint in changed.stderr
    (tmp_path / "known_hosts").write_text(f"127.0.0.1:{sim_host.port} {sim_host.fingerprint}\n")
    known = cli(sim_host, tmp_path, "vms", XCP_FINGERPRINT="")
    assert known.returncode == 0 and "win-hvm" in known.stdout


def test_insecure_warns(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):
        out = cli(sim_host, tmp_path, "vms", "--insecure", XCP_FINGERPRINT="")
        assert out.returncode == 0 and "win-hvm" in out.stdout
        assert "WARNING: --insecure" in out.stderr


def test_proxy_with_vncdotool_gets_a_real_picture(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if not VNCDOTOOL.exists():
        pytest.fail("vncdotool missing from the venv")
    proxy = subprocess.Popen([str(XCPCONSOLE), "proxy", "win-hvm", "--listen", "127.0.0.1:0"],
                             env=env_for(sim_host, tmp_path), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proxy.stdout is not None
        line = proxy.stdout.readline()
        match = re.fullmatch(r"vncviewer 127\.0\.0\.1::(\d+)\n", line)
        assert match, line
        port = int(match.group(1))
        shots = []
        for i in range(2):  # two connections: two fresh tunnels
            png = tmp_path / f"shot{i}.png"
            subprocess.run([str(VNCDOTOOL), "-s", f"127.0.0.1::{port}", "capture", str(png)],
                           check=True, timeout=60, capture_output=True)
            shots.append(np.asarray(Image.open(png).convert("RGB")))
        for pixels in shots:
            assert pixels.shape == (400, 720, 3)
            assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1  # text on black
            assert (pixels > 128).any()
        proxy.send_signal(signal.SIGINT)
        out, err = proxy.communicate(timeout=30)
    finally:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait()
    assert proxy.returncode == 0, err
    assert "proxy stopped after 2 connection(s)" in err
    only_object_refs(line + out + err, set())


def test_session_id_never_in_output_or_logs(sim_host, tmp_path: Path,  # type: ignore[no-untyped-def]
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str],
                                            caplog: pytest.LogCaptureFixture) -> None:
    """In-process runs with every logger at DEBUG; the ids used are recorded at logout."""
    import logging

    from xcpconsole.cli import main as cli_main
    from xcpconsole.xapi import XapiSession

    caplog.set_level(logging.DEBUG)
    for key, value in env_for(sim_host, tmp_path).items():
        monkeypatch.setenv(key, value)
    seen: list[str] = []
    real_logout = XapiSession.logout

    async def recording_logout(self: XapiSession) -> None:
        if not self._closed:
            seen.append(self.session_id)
        await real_logout(self)

    monkeypatch.setattr(XapiSession, "logout", recording_logout)
    texts = []
    for argv in (["vms"], ["vms", "--json"], ["consoles"], ["consoles", "centos-halted"],
                 ["proxy", "centos-halted"], ["consoles", "nope"]):
        monkeypatch.setattr(sys, "argv", ["xcpconsole", *argv])
        with contextlib.suppress(SystemExit):
            cli_main.main()
        captured = capsys.readouterr()
        texts.append(captured.out + captured.err)
    assert len(seen) == 6
    everything = "\n".join(texts) + caplog.text
    for sid in seen:
        assert sid not in everything
    assert "no VM named 'nope'" in everything
