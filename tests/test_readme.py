"""The README's library example runs as written against the simulated host."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_python_example_runs(sim_host: Any, tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block is not None
    env = {"XCP_HOST": sim_host.url, "XCP_USER": sim_host.user,
           "XCP_PASSWORD": sim_host.password, "XCP_FINGERPRINT": sim_host.fingerprint,
           "XCPCONSOLE_CONFIG": str(tmp_path / "none.toml"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", block.group(1)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    shot = np.asarray(Image.open(tmp_path / "after-login.png").convert("RGB"))
    assert shot.shape == (384, 640, 3)
    assert len(np.unique(shot.reshape(-1, 3), axis=0)) >= 2
    assert sim_host.password not in result.stdout + result.stderr
