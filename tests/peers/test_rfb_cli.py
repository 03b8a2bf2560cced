"""``xcpconsole info / screenshot / type / key`` against Xvnc.

Typing is checked by its effect: an xterm on the Xvnc display runs a shell, we
type a command that writes a file, and the file's bytes must be what we typed
(mixed case and shifted symbols included, so keysym mapping errors show).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from peerutil import XVNC_PASSWORD, Xvnc, load_png, need

from xcpconsole.errors import AuthError

pytestmark = pytest.mark.peers


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the xcpconsole command line (the real entry point, as a user would)."""
    exe = Path(sys.executable).parent / "xcpconsole"
    return subprocess.run([str(exe), *args], capture_output=True, text=True,
                          timeout=60, env=env or dict(os.environ), stdin=subprocess.DEVNULL)


def test_screenshot_cli(xvnc: Xvnc, tmp_path: Path) -> None:
    out = tmp_path / "shot.png"
    r = cli("screenshot", xvnc.target, str(out))
    assert r.returncode == 0, r.stderr
    assert xvnc.picture is not None
    assert (load_png(out) == xvnc.picture).all()
    assert [p.name for p in tmp_path.iterdir()] == ["shot.png"]  # no temporary file left


def test_screenshot_cli_display_syntax(xvnc: Xvnc, tmp_path: Path) -> None:
    out = tmp_path / "shot.png"
    r = cli("screenshot", f"127.0.0.1::{xvnc.port}", str(out), "--encodings", "hextile")
    assert r.returncode == 0, r.stderr
    assert (load_png(out) == xvnc.picture).all()


def test_info_cli(xvnc: Xvnc) -> None:
    r = cli("info", xvnc.target, "--seconds", "0.5", "--encodings", "zrle,raw")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "RFB version:      3.8" in text
    assert "1024x768" in text
    assert "Security:         NONE" in text
    assert "ZRLE, Raw, DesktopSize, LastRect" in text
    assert "rectangles:" in text and "ZRLE" in text.split("rectangles:")[1]


def test_vnc_password_from_env(xvnc_auth: Xvnc, tmp_path: Path) -> None:
    out = tmp_path / "auth.png"
    env = {**os.environ, "VNC_PASSWORD": XVNC_PASSWORD}
    r = cli("screenshot", xvnc_auth.target, str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert (load_png(out) == xvnc_auth.picture).all()
    env["VNC_PASSWORD"] = "nope"
    r = cli("screenshot", xvnc_auth.target, str(out), env=env)
    assert r.returncode == AuthError.exit_code, r.stderr
    assert "nope" not in r.stderr and "Traceback" not in r.stderr


def test_bad_key_name_fails_before_connecting() -> None:
    r = cli("key", "vnc://127.0.0.1:1", "ctrl-nosuchkey")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "nosuchkey" in r.stderr


def _wait_file(path: Path, expected: bytes, timeout: float = 15) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        if path.exists():
            data = path.read_bytes()
            if data == expected:
                break
        time.sleep(0.1)
    return data


def test_type_and_key_into_a_shell(xvnc_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server: Xvnc = xvnc_factory()
    need("xterm")
    server.spawn_x("xterm", "-geometry", "100x30+0+0", "-e", "sh")
    for _ in range(100):
        if server.run_x(need("xdotool"), "search", "--class", "xterm").returncode == 0:
            break
        time.sleep(0.1)
    # xterm takes keyboard input only with the pointer inside (no window manager)
    server.run_x(need("xdotool"), "mousemove", "200", "200")
    time.sleep(0.5)
    typed = tmp_path / "typed.txt"
    text = "Hello, World! #1 ~x_y {a|b} \"q\" <3 $HOME% ^&*()+=`"
    r = cli("type", server.target, f"printf '%s\\n' '{text}' > {typed}", "--enter")
    assert r.returncode == 0, r.stderr
    assert _wait_file(typed, text.encode() + b"\n") == text.encode() + b"\n"

    catted = tmp_path / "cat.txt"
    r = cli("type", server.target, f"cat > {catted}", "--enter")
    assert r.returncode == 0, r.stderr
    r = cli("type", server.target, "abc")
    assert r.returncode == 0, r.stderr
    r = cli("key", server.target, "Return", "ctrl-d")
    assert r.returncode == 0, r.stderr
    assert _wait_file(catted, b"abc\n") == b"abc\n"
