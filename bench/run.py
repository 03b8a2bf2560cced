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

from .common import ROOT, Result

GROUPS = ("relay", "capacity", "frames")

#: (metric, ours, peer, target ratio ours/peer, "ge" or "le")
TARGETS = [
    ("single stream", "xcpconsole proxy", "socat", 1.5, "ge"),
    ("64 B round trip p50", "xcpconsole proxy", "socat", 1.2, "le"),
    ("single stream", "xcpconsole serve", "websockify+socat", 3.0, "ge"),
    ("relay memory per idle session (PSS)", "xcpconsole serve", "websockify+socat", 1 / 20, "le"),
    ("screenshot 1024x768 wall time (median of 5)", "xcpconsole", "vncdotool", 1 / 3, "le"),
    ("decode Hextile 1920x1080", "xcpconsole", "vncdotool", 10.0, "ge"),
]


def _fmt(v: float) -> str:
    if v != v:  # nan
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def table(results: list[Result]) -> str:
    lines = []
    header = f"{'group':<9} {'metric':<46} {'unit':<6} {'values':<70} ratios (xcpconsole / peer)"
    lines += [header, "-" * len(header)]
    for r in results:
        vals = ", ".join(f"{k}={_fmt(v)}" for k, v in r.values.items())
        ours = {k: v for k, v in r.values.items() if k.startswith("xcpconsole")}
        peers = {k: v for k, v in r.values.items() if not k.startswith("xcpconsole")
                 and k != "direct"}
        ratios = ", ".join(f"{o.split()[-1]}/{p}={v / pv:.2f}" for o, v in ours.items()
                           for p, pv in peers.items() if pv)
        line = f"{r.group:<9} {r.metric:<46} {r.unit:<6} {vals:<70} {ratios}"
        if r.note:
            line += f"  ({r.note})"
        lines.append(line)
    return "\n".join(lines)


def targets(results: list[Result]) -> str:
    by_metric = {r.metric: r for r in results}
    lines = ["", "targets:"]
    for metric, ours, peer, goal, how in TARGETS:
        r = by_metric.get(metric)
        if r is None or ours not in r.values or peer not in r.values or not r.values[peer]:
            lines.append(f"  {metric}: {ours} vs {peer}: not measured")
            continue
        ratio = r.values[ours] / r.values[peer]
        ok = ratio >= goal if how == "ge" else ratio <= goal
        sign = ">=" if how == "ge" else "<="
        lines.append(f"  [{'met' if ok else 'MISSED'}] {metric}: {ours}/{peer} = {ratio:.2f} "
                     f"(target {sign} {goal:.3g})")
    for r in results:
        if r.unit == "fps" and ("ZRLE" in r.metric or r.metric.startswith("decode Tight ")):
            v = r.values.get("xcpconsole", 0.0)
            lines.append(f"  [{'met' if v >= 30 else 'MISSED'}] {r.metric}: {v:.1f} fps "
                         "(target >= 30)")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    chosen = [a for a in argv if a in GROUPS] or list(GROUPS)
    results: list[Result] = []
    started = time.time()
    for group in chosen:
        module = __import__(f"bench.{group}", fromlist=["run"])
        print(f"bench: running {group} …", file=sys.stderr, flush=True)
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
