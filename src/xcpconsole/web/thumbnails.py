"""Screenshot cache for the VM list: refreshed in the background, never awaited by a page.

A page only *reads* the cache (a PNG or nothing yet) and *asks* for a refresh; one
background task takes the asks in turn, opens a console tunnel with the asking user's
own XAPI session, grabs one frame with :mod:`xcpconsole.net.vnc`, scales it down and
stores the PNG.  Pictures are kept per host user: a user sees only what a capture made
with its own session showed, so the host's RBAC decides (a role that may list VMs but
not open their consoles gets no picture), and a failed capture drops the old picture.
At most ``concurrency`` captures run at once and each is bounded by a
timeout, so a hung console costs one slot for a few seconds and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import XcpConsoleError

if TYPE_CHECKING:
    from .host import HostSession

log = logging.getLogger(__name__)

Capture = Callable[["HostSession", str], Awaitable[bytes]]  # (xapi session, vm uuid) -> PNG
Key = tuple[str, str]  # (host user, vm uuid)


@dataclass
class Thumbnail:
    png: bytes
    taken: float  # on the cache's clock


class ThumbnailCache:
    def __init__(self, capture: Capture, *, max_age: float = 15.0, concurrency: int = 2,
                 timeout: float = 10.0, max_entries: int = 2000,
                 clock: Callable[[], float]) -> None:
        self._capture = capture
        self._clock = clock
        self.max_age = max_age
        self.timeout = timeout
        self.max_entries = max_entries
        self._cache: dict[Key, Thumbnail] = {}
        self._wanted: dict[Key, HostSession] = {}  # -> that user's xapi session to use
        self._busy: set[Key] = set()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()

    def get(self, user: str, vm_uuid: str) -> Thumbnail | None:
        """``user``'s latest picture of the VM, taken with ``user``'s own session."""
        return self._cache.get((user, vm_uuid))

    def request(self, user: str, vm_uuid: str, xapi: HostSession) -> None:
        """Ask for a fresh capture with ``xapi`` (``user``'s session) if the cached one
        is old; returns immediately."""
        key = (user, vm_uuid)
        shot = self._cache.get(key)
        if shot is not None and self._clock() - shot.taken < self.max_age:
            return
        if key in self._busy or len(self._wanted) >= self.max_entries:
            return
        self._wanted[key] = xapi
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="thumbnails")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._jobs) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._wanted:
                key, xapi = self._wanted.popitem()
                await self._slots.acquire()
                self._busy.add(key)
                job = asyncio.create_task(self._one(key, xapi))
                self._jobs.add(job)
                job.add_done_callback(self._jobs.discard)

    async def _one(self, key: Key, xapi: HostSession) -> None:
        vm_uuid = key[1]
        try:
            async with asyncio.timeout(self.timeout):
                png = await self._capture(xapi, vm_uuid)
            if len(self._cache) >= self.max_entries:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = Thumbnail(png, self._clock())
            return
        except (XcpConsoleError, TimeoutError, OSError) as exc:
            log.info("thumbnail of VM %s: %s", vm_uuid, exc)
        except Exception:
            log.exception("thumbnail of VM %s failed", vm_uuid)
        finally:
            self._busy.discard(key)
            self._slots.release()
        # the capture failed: an older picture no longer shows what this user may see
        self._cache.pop(key, None)


def scale_png(rgb: Any, width: int = 320) -> bytes:
    """Scale an (h, w, 3) RGB array down to ``width`` pixels wide and encode it as PNG."""
    from PIL import Image

    img = Image.fromarray(rgb, "RGB")
    if img.width > width:
        img = img.resize((width, max(1, round(img.height * width / img.width))),
                         Image.Resampling.BILINEAR)
    out = io.BytesIO()
    img.save(out, "PNG", optimize=False)
    return out.getvalue()
