"""What ``xcpconsole serve`` can tune: one frozen :class:`GatewayConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..settings import HostSettings


@dataclass(frozen=True)
class GatewayConfig:
    """Everything ``xcpconsole serve`` can tune; defaults suit a small team."""

    #: the host's url and trust; user and password are filled in at each sign-in
    host_settings: HostSettings
    allowed_origins: tuple[str, ...] = ()
    #: DNS names the gateway answers for (Host header); IP literals and localhost always
    allowed_hosts: tuple[str, ...] = ()
    max_consoles_per_user: int = 8
    max_consoles_total: int = 256
    max_logins_per_user: int = 5
    session_idle: float = 1800.0
    session_lifetime: float = 12 * 3600.0
    console_idle_timeout: float = 1800.0
    token_ttl: float = 30.0
    max_frame: int = (1 << 20) + 64  # largest browser->gateway WebSocket message
    login_free_failures: int = 2
    login_backoff: float = 1.0
    #: sign-ins at the host at once, in all and per client address (web/signin.py);
    #: ``signins_in_flight`` is also the size of the sign-ins' own thread pool
    signins_in_flight: int = 4
    signins_per_address: int = 2
    #: threads for the signed-in users' XenAPI calls, and each call's deadline
    xapi_threads: int = 16
    xapi_timeout: float = 30.0
    #: slow clients (web/limits.py): a request head must arrive within ``head_timeout``
    #: of the connection or the previous answer (idle keep-alive connections close then
    #: too), a body within ``body_timeout``; connections in all and per client address
    head_timeout: float = 15.0
    body_timeout: float = 30.0
    max_connections: int = 4096
    max_connections_per_address: int = 256
    thumbnails: bool = True
    thumbnail_max_age: float = 15.0
    #: the largest console a thumbnail is taken of (its frame buffer is held in memory:
    #: 2560x1600 is 12 MB; a console may otherwise be up to 8192x8192, 200 MB)
    thumbnail_max_pixels: int = 2560 * 1600
    assets_dir: Path | None = None  # node_modules; None = search the source tree
