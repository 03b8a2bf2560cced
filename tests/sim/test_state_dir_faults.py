"""Issue 11, finding 15: the sim on a full or read-only state directory says so in one
line naming the file, exit code 2, and leaves no half-written key behind.

The full and the read-only filesystem are real: small tmpfs mounts made by the test
(the test machine runs as root, as CI does)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from simproc import XCPCONSOLE


def _mount(target: Path, *options: str) -> None:
    target.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs",
                           str(target)], capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"these tests mount a tmpfs (run as root): {done.stderr.strip()}")


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for sub in ("full", "ro"):
        if os.path.ismount(tmp_path / sub):
            subprocess.run(["umount", str(tmp_path / sub)], check=True)


def _sim(state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(XCPCONSOLE), "sim", "--listen", "127.0.0.1:0", "--state-dir",
                           str(state)], env=dict(os.environ, XCPSIM_PASSWORD="pw"),
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_a_full_state_dir_is_one_line_and_leaves_nothing(mounts: Path) -> None:
    full = mounts / "full"
    _mount(full, "size=8k")
    (full / "filler").write_bytes(b"\0" * 8192)  # full: room for a directory, not a key
    out = _sim(full / "state")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"xcpconsole: error: cannot write {full / 'state' / 'sim-key.pem'}: "
        "No space left on device"], out.stderr
    assert sorted(p.name for p in (full / "state").iterdir()) == []  # no 0-byte key


def test_a_read_only_state_dir_is_one_line(mounts: Path) -> None:
    ro = mounts / "ro"
    _mount(ro, "ro", "size=1m")
    out = _sim(ro)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"xcpconsole: error: cannot use --state-dir {ro}: not writable"], out.stderr
