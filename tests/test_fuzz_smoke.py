"""A short run of ``make fuzz`` (every target under atheris for a few thousand inputs), and
every corpus and crash file replayed through its target: a crash once found stays fixed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fuzz.seeds import SEEDS
from fuzz.targets import TARGETS

REPO = Path(__file__).resolve().parent.parent
FUZZ = REPO / "fuzz"


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_saved_input_replays_cleanly(name: str) -> None:
    files = [p for d in ("corpus", "crashes") if (FUZZ / d / name).is_dir()
             for p in sorted((FUZZ / d / name).iterdir()) if p.is_file()]
    for data in [*SEEDS.get(name, []), *(p.read_bytes() for p in files)]:
        TARGETS[name](data)  # raises on a finding


def test_known_crashes_are_kept() -> None:
    """The surrogate cookie the fuzzer found (Signer.unsign raised UnicodeEncodeError)."""
    assert any((FUZZ / "crashes" / "web_auth").iterdir())


def test_a_short_campaign_runs_every_target(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "fuzz.run", "--runs", "2000", "--scratch",
                          str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    rows = [line.split() for line in out.stdout.splitlines()[1:-1]]
    assert {r[0] for r in rows} == set(TARGETS)
    assert all(int(r[1]) >= 2000 and r[4] == "no" for r in rows), out.stdout
    assert "PASS" in out.stdout
