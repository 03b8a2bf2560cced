"""``make fuzz``: every target of :mod:`fuzz.targets` under atheris, one process each.

``python -m fuzz.run [--runs N] [--only NAME ...] [--max-len BYTES]`` prints, per parser,
the inputs run, inputs per second, new corpus entries, crashes and the peak RSS, and exits
non-zero if any target found an unhandled exception (libFuzzer keeps the input under
``fuzz/crashes/NAME/``; ``tests/test_fuzz_smoke.py`` replays every file there).  The corpus
of each target lives in ``fuzz/corpus/NAME/``, seeded with valid messages (``fuzz/seeds.py``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from fuzz.seeds import write_seeds
from fuzz.targets import TARGETS

HERE = Path(__file__).resolve().parent


def run_one(name: str, runs: int, max_len: int, scratch: Path | None) -> dict[str, object]:
    base = scratch if scratch is not None else HERE
    corpus = base / "corpus" / name
    crashes = base / "crashes" / name
    crashes.mkdir(parents=True, exist_ok=True)
    write_seeds(name, corpus)
    before = len(list(corpus.iterdir()))
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz.one", name, f"-runs={runs}", f"-max_len={max_len}",
         "-print_final_stats=1", "-rss_limit_mb=2048", "-timeout=10",
         f"-artifact_prefix={crashes}/", str(corpus)],
        cwd=HERE.parent, capture_output=True, text=True)
    took = time.monotonic() - started
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", proc.stderr))
    executed = int(stats.get("number_of_executed_units", 0))
    return {"name": name, "runs": executed, "per_s": executed / took if took else 0.0,
            "new": len(list(corpus.iterdir())) - before,
            "crashed": proc.returncode != 0, "rss": int(stats.get("peak_rss_mb", 0)),
            "tail": proc.stderr[-3000:] if proc.returncode else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--max-len", type=int, default=4096)
    ap.add_argument("--scratch", type=Path, default=None,
                    help="keep corpus and crashes here, not in fuzz/ (the smoke test)")
    args = ap.parse_args()
    names = args.only or list(TARGETS)
    print(f"{'parser':24} {'inputs':>10} {'inputs/s':>9} {'new':>5} {'crash':>5} {'RSS MB':>7}")
    failed = False
    for name in names:
        r = run_one(name, args.runs, args.max_len, args.scratch)
        print(f"{r['name']:24} {r['runs']:>10} {r['per_s']:>9.0f} {r['new']:>5} "
              f"{'YES' if r['crashed'] else 'no':>5} {r['rss']:>7}", flush=True)
        if r["crashed"]:
            failed = True
            print(r["tail"], file=sys.stderr)
    print("verdict:", "FAIL (see fuzz/crashes)" if failed else "PASS: no unhandled exception")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
