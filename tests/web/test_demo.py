"""`xcpconsole demo`: the simulated host and the gateway in one process, signed in by a link."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp


async def test_demo_link_signs_in_once_and_the_cli_lines_work(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "xcpconsole"
    proc = subprocess.Popen(
        [str(exe), "demo", "--listen", "127.0.0.1:0", "--web-listen", "127.0.0.1:0",
         "--state-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "XCPSIM_PASSWORD": "demo-secret-pw"},
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Stop with Ctrl-C" in line:
                break
        text = "".join(lines)
        link = re.search(r"(http://127\.0\.0\.1:\d+/login/link\?code=\S+)", text)
        assert link, text
        assert "demo-secret-pw" not in text  # the password came from the environment
        fp = re.search(r"XCP_FINGERPRINT=([0-9A-F:]{95})", text)
        host = re.search(r"XCP_HOST=(https://127\.0\.0\.1:\d+)", text)
        assert fp and host

        # cookies for an IP address host need an "unsafe" jar in aiohttp (browsers keep them)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as web, web.get(link.group(1)) as resp:
            page = await resp.text()
            assert resp.status == 200 and resp.url.path == "/vms"
            for name in ("win-hvm", "debian-pv", "alpine-pv-text", "centos-halted"):
                assert name in page
        async with aiohttp.ClientSession() as web, web.get(link.group(1)) as again:
            assert again.status == 403  # single use

        env = {"PATH": "/usr/bin:/bin", "XCP_HOST": host.group(1), "XCP_USER": "root",
               "XCP_PASSWORD": "demo-secret-pw", "XCP_FINGERPRINT": fp.group(1),
               "XCPCONSOLE_CONFIG": str(tmp_path / "none.toml")}
        out = subprocess.run([str(exe), "vms", "--json"], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert '"debian-pv"' in out.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert not (tmp_path / "demo" / "sim.json").exists()
