"""Capacity of one gateway process: idle console sessions held, memory each, set-up rate.

``xcpconsole serve`` runs with its console limits raised in front of the simulated host
(which runs with its connection limit raised: every console is also a TLS tunnel there).
Idle WebSockets to the echo console are opened in batches, each through the browser's
doors (one-time token, Origin), until TARGET are open, the time budget is spent, or the
first failure (whose reason is reported).  Every WebSocket is read by a task so the
gateway's heartbeat pings are answered.  At the end a sample of sessions must echo a
byte: open means working, not merely not closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import time
from pathlib import Path

from .common import Result, process_tree, pss_kib, raise_fd_limit
from .relay import _WsCounter, running_sim

TARGET = int(os.environ.get("BENCH_CAPACITY", "10000"))
BATCH = 100
RAMP_SECONDS = 150.0
ECHO_SAMPLE = 200
BROWSERS = 4  # the gateway allows 5 sign-ins per user by default


async def _open_idle(gsess: object, n: int) -> _WsCounter:
    from .gateway import GatewaySession

    assert isinstance(gsess, GatewaySession)
    ws = await gsess.open_ws("bench-echo", "vt100")
    return _WsCounter(ws, strip_head=False)


async def _run_async(tmp: Path) -> list[Result]:
    from .gateway import running_gateway, signed_in

    limit = raise_fd_limit(4 * TARGET + 4096)
    # two descriptors per session in the gateway and per tunnel in the sim
    target = min(TARGET, (limit - 1024) // 2)
    notes: list[str] = []
    open_: list[_WsCounter] = []
    with running_sim(tmp, max_connections=target + 512, external_backends=True
                     ) as (sim, simproc), \
            running_gateway(sim.url, sim.fingerprint, target + 512,
                            log=tmp / "serve.log") as (port, gw):
        async with contextlib.AsyncExitStack() as stack:
            # several signed-in browsers (the gateway serialises one session's XenAPI calls)
            browsers = [await stack.enter_async_context(signed_in(port, sim.user, sim.password))
                        for _ in range(BROWSERS)]
            base_gw = pss_kib(process_tree(gw.pid))
            base_sim = pss_kib([simproc.pid])
            t0 = time.perf_counter()
            stop_reason = f"reached {target}"
            while len(open_) < target:
                if time.perf_counter() - t0 > RAMP_SECONDS:
                    stop_reason = f"time budget of {RAMP_SECONDS:.0f} s spent"
                    break
                k = min(BATCH, target - len(open_))
                got = await asyncio.gather(*(_open_idle(browsers[i % BROWSERS], i)
                                             for i in range(k)),
                                           return_exceptions=True)
                failed = [g for g in got if isinstance(g, BaseException)]
                open_ += [g for g in got if isinstance(g, _WsCounter)]
                if failed:
                    exc = failed[0]
                    stop_reason = (f"first failure after {len(open_)}: "
                                   f"{type(exc).__name__}: {str(exc)[:100]}")
                    break
                dead = sum(c.task.done() for c in open_[-k:])
                if dead:
                    stop_reason = f"{dead} sessions closed by the gateway at {len(open_)}"
                    break
            ramp = time.perf_counter() - t0
            await asyncio.sleep(2.0)
            gw_pss = pss_kib(process_tree(gw.pid))
            sim_pss = pss_kib([simproc.pid])
            alive = [c for c in open_ if not c.task.done()]
            sample = random.Random(7).sample(alive, min(ECHO_SAMPLE, len(alive)))
            echoed = 0
            for c in sample:
                try:
                    await c.send(b"e")
                    await c.until(c.count + 1 if c.count else 1, timeout=5)
                    echoed += 1
                except Exception:
                    pass
            for c in open_:
                c.task.cancel()
    n = len(alive)
    notes.append(stop_reason)
    if target < TARGET:
        notes.append(f"open-files hard limit {limit} caps it at {target} (2 per session)")
    notes.append(f"{echoed}/{len(sample)} sampled sessions echoed")
    notes.append(f"sim PSS per tunnel {(sim_pss - base_sim) / max(n, 1):.0f} KiB")
    return [
        Result("capacity", "idle console sessions held by one gateway", "count",
               {"xcpconsole serve": float(n)}, note="; ".join(notes)),
        Result("capacity", "gateway memory per idle session (PSS)", "KiB",
               {"xcpconsole serve": (gw_pss - base_gw) / max(n, 1)}, better="lower"),
        Result("capacity", "console sessions set up per second", "1/s",
               {"xcpconsole serve": len(open_) / ramp if ramp else float("nan")},
               note="token POST + WebSocket + TLS tunnel, batches of "
                    f"{BATCH} in flight from {BROWSERS} signed-in browsers"),
    ]


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_run_async(Path(tmp)))
