"""`make bench`: measure xcpconsole against its peers in one run and print ratios.

Usage: ``python -m bench.run [relay] [capacity] [frames]`` (default: all).  Writes
``bench/results/<timestamp>.json`` and ``bench/results/latest.json``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict

from .common import ROOT, Result, raise_fd_limit

GROUPS = ("relay", "capacity", "frames")

#: (metric, ours, peer, target ratio ours/peer, "ge" or "le")
TARGETS = [
    ("single stream", "xcpconsole proxy", "socat", 1.5, "ge"),
    ("64 B round trip p50", "xcpconsole proxy", "socat", 1.2, "le"),
    ("single stream", "xcpconsole serve", "websockify+socat", 3.0, "ge"),
    ("relay memory per open session (PSS)", "xcpconsole serve", "websockify+socat", 1 / 20,
     "le"),
    ("screenshot 1024x768 wall time (median of 5)", "xcpconsole", "vncdotool", 1 / 3, "le"),
    ("decode Hextile 1920x1080", "xcpconsole", "vncdotool", 10.0, "ge"),
]

#: (metric, contender, goal, "ge" or "le"): absolute targets
ABSOLUTE = [
    ("idle console sessions held by one gateway", "xcpconsole serve", 10_000, "ge"),
    ("decode ZRLE 1920x1080 full frames", "xcpconsole", 30, "ge"),
    ("decode Tight 1920x1080 full frames", "xcpconsole", 30, "ge"),
]

#: which peer each of ours is compared with in the table's ratio column
PAIRS = {"xcpconsole proxy": "socat", "xcpconsole serve": "websockify+socat",
         "xcpconsole": "vncdotool"}


def _fmt(v: float) -> str:
    if v != v:  # nan
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def table(results: list[Result]) -> str:
    """One block per group: a column per contender, then ours/peer ratios, then notes."""
    lines: list[str] = []
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    for group, rows in groups.items():
        names: list[str] = []
        for r in rows:
            names += [k for k in r.values if k not in names]
        width = max([38] + [len(r.metric) + len(r.unit) + 3 for r in rows])
        cols = [max(10, len(n)) for n in names]
        head = f"{group.upper():<{width}} " + " ".join(
            f"{n:>{c}}" for n, c in zip(names, cols, strict=True)) + "   ratio ours/peer"
        lines += ["", head, "-" * len(head)]
        notes = []
        for r in rows:
            cells = " ".join(f"{_fmt(r.values[n]) if n in r.values else '':>{c}}"
                             for n, c in zip(names, cols, strict=True))
            ratios = ", ".join(
                f"{ours.removeprefix('xcpconsole ') or 'ours'}/{peer} = "
                f"{r.values[ours] / r.values[peer]:.2f}"
                for ours, peer in PAIRS.items()
                if ours in r.values and peer in r.values and r.values[peer])
            label = f"{r.metric} [{r.unit}]" if r.unit else r.metric
            lines.append(f"{label:<{width}} {cells}   {ratios}")
            if r.note:
                notes.append(f"  {r.metric}: {r.note}")
        lines += notes
    return "\n".join(lines)


def targets(results: list[Result]) -> str:
    by_metric = {r.metric: r for r in results}
    lines = ["", "TARGETS (ratios measured in this run)"]
    for metric, ours, peer, goal, how in TARGETS:
        r = by_metric.get(metric)
        sign = ">=" if how == "ge" else "<="
        if r is None or ours not in r.values or peer not in r.values or not r.values[peer]:
            lines.append(f"  [NOT MEASURED] {metric}: {ours}/{peer} (target {sign} {goal:.3g})")
            continue
        ratio = r.values[ours] / r.values[peer]
        ok = ratio >= goal if how == "ge" else ratio <= goal
        lines.append(f"  [{'met' if ok else 'MISSED'}] {metric}: {ours}/{peer} = {ratio:.3g} "
                     f"(target {sign} {goal:.3g})")
    for metric, ours, goal, how in ABSOLUTE:
        r = by_metric.get(metric)
        sign = ">=" if how == "ge" else "<="
        if r is None or ours not in r.values:
            lines.append(f"  [NOT MEASURED] {metric} (target {sign} {goal:,})")
            continue
        v = r.values[ours]
        ok = v >= goal if how == "ge" else v <= goal
        lines.append(f"  [{'met' if ok else 'MISSED'}] {metric}: {ours} = {_fmt(v)} "
                     f"(target {sign} {goal:,})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    chosen = [a for a in argv if a in GROUPS] or list(GROUPS)
    raise_fd_limit(65536)  # capacity: the gateway and the sim inherit it
    results: list[Result] = []
    started = time.time()
    for group in chosen:
        module = __import__(f"bench.{group}", fromlist=["run"])
        print(f"bench: running {group} … ({time.time() - started:.0f} s so far)",
              file=sys.stderr, flush=True)
        try:
            results += module.run()
        except Exception as exc:  # keep the other groups' figures
            print(f"bench: {group} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            results.append(Result(group, f"{group} FAILED", "", {}, note=str(exc)[:200]))
    text = table(results) + "\n" + targets(results)
    print(text)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    doc = {"started": started, "seconds": time.time() - started,
           "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                       "platform": platform.platform()},
           "results": [asdict(r) for r in results], "table": text}
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
    for name in (f"{stamp}.json", "latest.json"):
        (out / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
