"""An echo / stream console backend in a process of its own, for the capacity benchmark.

The simulated host runs its load backends in its own process, so each tunnel costs it
three descriptors (TLS socket, backend connection, backend's accepted socket); with a
20,000 open-files hard limit that caps it near 6,300 tunnels.  ``bench.simhost
--external-backends`` has the backend's socket served by this process instead (same
protocol code: :mod:`xcpconsole.sim.loadgen`), so the sim holds two per tunnel.

Run: ``python -m bench.loadproc KIND SOCKET_PATH`` (KIND: echo or stream).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path


async def serve(kind: str, path: Path) -> None:
    from xcpconsole.sim.loadgen import LoadBackend

    from .common import raise_fd_limit

    raise_fd_limit(1 << 20)
    backend = LoadBackend(kind=kind, run_dir=path.parent, name=path.name.split("-")[0])
    await backend.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await backend.stop()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], Path(sys.argv[2])))
