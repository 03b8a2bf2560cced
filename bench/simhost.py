"""The simulated host for benchmarks: ``xcpconsole sim`` with a raised connection limit.

``xcpconsole sim`` caps open connections at :class:`~xcpconsole.sim.HttpLimits`'s
default (256), which is right for a test peer but too low for 200 concurrent streams
through several relays, or for 10,000 idle tunnels.  The limit is a library setting with
no CLI flag, so the benchmark starts the same :func:`xcpconsole.sim.run` from here.

Run: ``python -m bench.simhost --state-dir DIR --inventory FILE --max-connections N``
(password from ``XCPSIM_PASSWORD``; writes ``DIR/sim.json`` like ``xcpconsole sim``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from .common import raise_fd_limit


def external_load_backends() -> None:
    """Serve the ``stream``/``echo`` backends from a child process (:mod:`bench.loadproc`)
    so that each tunnel costs the sim two descriptors instead of three."""
    from xcpconsole.sim import loadgen
    from xcpconsole.sim.backends import BackendError

    async def start(self: loadgen.LoadBackend) -> None:
        path: Path = self._path
        path.parent.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.loadproc", self.kind, str(path))
        self._proc = proc  # type: ignore[attr-defined]
        for _ in range(400):
            if path.exists():
                return
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise BackendError(f"bench.loadproc did not serve {path.name}")

    async def stop(self: loadgen.LoadBackend) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.returncode is None:
            proc.terminate()
            await proc.wait()

    loadgen.LoadBackend.start = start  # type: ignore[method-assign]
    loadgen.LoadBackend.stop = stop  # type: ignore[method-assign]


def main() -> None:
    from xcpconsole.sim import HttpLimits, SimConfig, run

    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--inventory", type=Path, required=True)
    parser.add_argument("--max-connections", type=int, default=1024)
    parser.add_argument("--external-backends", action="store_true")
    args = parser.parse_args()
    raise_fd_limit(3 * args.max_connections + 1024)
    if args.external_backends:
        external_load_backends()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = SimConfig(
        state_dir=args.state_dir, password=os.environ["XCPSIM_PASSWORD"],
        listen_host="127.0.0.1", listen_port=0, inventory=args.inventory,
        limits=HttpLimits(max_connections=args.max_connections, head_timeout=30.0),
    )
    run(config)


if __name__ == "__main__":
    main()
