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
    thumbnails: bool = True
    thumbnail_max_age: float = 15.0
    assets_dir: Path | None = None  # node_modules; None = search the source tree
