"""The VM-list thumbnail cache: per host user, and a failed refresh drops the old picture."""

from __future__ import annotations

import asyncio
from typing import Any

from xcpconsole.errors import ConsoleForbiddenError
from xcpconsole.web.thumbnails import ThumbnailCache


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_pictures_are_per_user_and_a_failed_refresh_drops_the_old_one() -> None:
    now = [0.0]
    allowed = {"admin"}

    async def capture(xapi: Any, vm_uuid: str) -> bytes:
        if xapi not in allowed:
            raise ConsoleForbiddenError("your role may not open its console")
        return f"png of {vm_uuid} for {xapi}".encode()

    cache = ThumbnailCache(capture, max_age=15, clock=lambda: now[0])
    cache.start()
    try:
        cache.request("admin", "vm1", "admin")  # type: ignore[arg-type]
        cache.request("auditor", "vm1", "auditor")  # type: ignore[arg-type]
        await _settle()
        shot = cache.get("admin", "vm1")
        assert shot is not None and shot.png == b"png of vm1 for admin"
        assert cache.get("auditor", "vm1") is None  # not the admin's picture
        allowed.clear()  # the admin's role changed on the host
        now[0] = 20.0
        cache.request("admin", "vm1", "admin")  # type: ignore[arg-type]
        await _settle()
        assert cache.get("admin", "vm1") is None  # the old picture is not shown any more
    finally:
        await cache.stop()
