"""``screenshot``: ``-`` is stdout, the format follows the name, the mode follows the umask,
and a name it cannot honour is refused before connecting."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clirun import XCPCONSOLE, PtyProcess, assert_one_error_line, cli, env_for
from PIL import Image, features

VM = "win-hvm"  # 720x400, text on black


def shot(sim: Any, tmp_path: Path, *args: str, umask: int = 0o022,
         cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    def set_umask() -> None:
        os.umask(umask)

    return subprocess.run([str(XCPCONSOLE), "screenshot", VM, *args],
                          env=env_for(sim, tmp_path), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=60, preexec_fn=set_umask, cwd=cwd)


def test_dash_writes_png_to_stdout(sim_host: Any, tmp_path: Path) -> None:
    out = shot(sim_host, tmp_path, "-", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    image = Image.open(io.BytesIO(out.stdout))
    assert (image.format, image.size) == ("PNG", (720, 400))
    assert len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 1
    assert out.stderr.decode().strip().splitlines()[-1] == "stdout: 720x400 PNG"
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize(("name", "fmt"), [
    ("a.png", "PNG"), ("b.jpg", "JPEG"), ("c.JPEG", "JPEG"), ("d.ppm", "PPM"),
    pytest.param("e.webp", "WEBP", marks=pytest.mark.skipif(
        not features.check("webp"), reason="this Pillow has no WebP")),
])
def test_the_format_follows_the_name(sim_host: Any, tmp_path: Path, name: str,
                                     fmt: str) -> None:
    out = shot(sim_host, tmp_path, str(tmp_path / name))
    assert out.returncode == 0, out.stderr
    image = Image.open(tmp_path / name)
    assert (image.format, image.size) == (fmt, (720, 400))
    assert out.stdout.decode() == f"{tmp_path / name}: 720x400 {fmt}\n"
    pixels = np.asarray(image.convert("RGB"))
    assert (pixels > 128).any() and (pixels < 32).any()  # text on black, not a blank page


def test_quality_changes_the_jpeg(sim_host: Any, tmp_path: Path) -> None:
    low, high = tmp_path / "low.jpg", tmp_path / "high.jpg"
    assert shot(sim_host, tmp_path, str(low), "--quality", "5").returncode == 0
    assert shot(sim_host, tmp_path, str(high), "-q", "100").returncode == 0
    assert low.stat().st_size < high.stat().st_size


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_the_mode_follows_the_umask(sim_host: Any, tmp_path: Path, umask: int,
                                    mode: int) -> None:
    target = tmp_path / "shot.png"
    out = shot(sim_host, tmp_path, str(target), umask=umask)
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_names_are_refused_before_connecting(tmp_path: Path) -> None:
    """No host at all: the name is judged first, so the error is about the name."""
    for args, code, words in [((str(tmp_path / "x.gif"),), 2, "image format"),
                              ((str(tmp_path / "x.png"), "-q", "80"), 2, "--quality"),
                              ((str(tmp_path),), 1, "it is a directory"),
                              (("/nonexistent/dir/x.png",), 1, "no directory")]:
        out = cli(None, tmp_path, "screenshot", VM, *args)
        assert_one_error_line(out, code, words)
        assert "no host" not in out.stderr


def test_no_picture_on_a_terminal(sim_host: Any, tmp_path: Path) -> None:
    term = PtyProcess([str(XCPCONSOLE), "screenshot", VM, "-"], env_for(sim_host, tmp_path))
    try:
        code = term.wait()
    finally:
        term.close()
    assert code == 2, term.output
    assert "not writing a picture to a terminal" in term.output
    assert "\x89PNG" not in term.output
