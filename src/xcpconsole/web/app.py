"""The web console gateway (``xcpconsole serve``): the aiohttp application.

Pages: sign-in, VM list (power state + thumbnails), one console page per VM and
protocol (noVNC for ``rfb``, xterm.js for ``vt100``).  The parts live one concern per
module: :mod:`.config` (settings), :mod:`.backend` (what the gateway needs of the host),
:mod:`.gateway` (shared state), :mod:`.routes` and :mod:`.views` (handlers),
:mod:`.middleware` (Origin check, security headers), :mod:`.assets` (browser files),
:mod:`.tuning` (the process-wide step ``serve`` takes before starting this app).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from . import logs
from .assets import find_assets_dir
from .backend import Backend, default_backend
from .config import GatewayConfig
from .gateway import GATEWAY, Gateway, close_consoles, gateway_lifetime
from .middleware import guard
from .routes import setup_routes


def create_app(config: GatewayConfig, backend: Backend | None = None, *,
               clock: Callable[[], float] = time.monotonic) -> web.Application:
    """The gateway application; ``backend`` defaults to the real client library.

    ``clock`` (monotonic seconds) times every expiry.  Process-wide tuning is not
    applied here: see :func:`.tuning.shrink_tls_read_buffers`.
    """
    assets = find_assets_dir(config.assets_dir)
    logs.install()  # aiohttp's logger is the process's; the filter is idempotent
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[GATEWAY] = Gateway(config, backend or default_backend(config), clock=clock)
    setup_routes(app, assets)
    app.cleanup_ctx.append(gateway_lifetime)
    app.on_shutdown.append(close_consoles)
    return app
