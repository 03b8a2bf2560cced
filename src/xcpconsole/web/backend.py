"""The host-facing operations the gateway uses, and their real implementation.

Login, tunnel and thumbnail capture come in through :class:`Backend` so tests can swap
them; :func:`default_backend` wires the real client library.  What they hand back is
typed by the protocols of :mod:`.host`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

from ..errors import XcpConsoleError
from ..settings import HostSettings
from .config import GatewayConfig
from .host import HostConsole, HostSession, Streams

if TYPE_CHECKING:
    from ..xapi import ConsoleInfo, XapiSession

log = logging.getLogger(__name__)

#: Read buffer of a console tunnel: smaller than the CLI's, memory per browser session
#: matters here.
TUNNEL_READ_LIMIT = 64 * 1024

@dataclass
class Backend:
    """The host-facing operations (swappable in tests)."""

    login: Callable[[HostSettings], Awaitable[HostSession]]
    open_tunnel: Callable[[HostSession, HostConsole], Awaitable[Streams]]
    make_settings: Callable[[str, str], HostSettings]  # (user, password) for one sign-in
    capture: Callable[[HostSession, str], Awaitable[bytes]] | None = None  # thumbnail PNG
    close: Callable[[], None] | None = None  # at shutdown (the thread pools)


def default_backend(config: GatewayConfig) -> Backend:
    """The real client library: XenAPI sessions, ``/console`` tunnels, VNC screenshots.

    The SDK blocks a thread per call: signed-in users' calls get a bounded pool of
    their own, and sign-ins (unauthenticated, at most ``signins_in_flight`` at once:
    :mod:`.signin`) another, so a flood of sign-ins or a slow host answering them
    cannot starve the signed-in users.  Every call has a deadline (``xapi_timeout``)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..net.tunnel import open_tunnel
    from ..xapi import XapiSession

    calls = ThreadPoolExecutor(config.xapi_threads, thread_name_prefix="xapi-call")
    signins = ThreadPoolExecutor(config.signins_in_flight, thread_name_prefix="xapi-signin")

    def close() -> None:
        for pool in (calls, signins):
            pool.shutdown(wait=False, cancel_futures=True)

    def real(xapi: HostSession, console: HostConsole) -> tuple[XapiSession, ConsoleInfo]:
        # Only sessions made by XapiSession.login below reach this backend.
        return cast("XapiSession", xapi), cast("ConsoleInfo", console)

    def make_settings(user: str, password: str) -> HostSettings:
        return replace(config.host_settings, user=user, password=password, interactive=False)

    async def tunnel(xapi: HostSession, console: HostConsole) -> Streams:
        return await open_tunnel(*real(xapi, console), limit=TUNNEL_READ_LIMIT)

    async def capture(xapi: HostSession, vm_uuid: str) -> bytes:
        from ..net.vnc import open_vnc
        from .thumbnails import scale_png

        console = await xapi.find_console(vm_uuid, "rfb")
        client = await open_vnc(await tunnel(xapi, console), timeout=8.0,
                                max_pixels=config.thumbnail_max_pixels)
        try:
            rgb = await client.screenshot()
        finally:
            await client.close()
        return await asyncio.to_thread(scale_png, rgb)

    async def login(settings: HostSettings) -> HostSession:
        xapi = await XapiSession.login(settings, timeout=config.xapi_timeout, executor=calls,
                                       login_executor=signins)
        try:
            # What the master says of each host's certificate, read now: after a master
            # change the old master answers nothing but HOST_IS_SLAVE, and the signed-in
            # users' sessions move to the new one trusted on this description.
            await xapi.pool_hosts()
        except XcpConsoleError as exc:
            log.info("pool hosts not read at sign-in: %s", exc)
        return xapi

    return Backend(login=login, open_tunnel=tunnel,
                   make_settings=make_settings, capture=capture, close=close)
