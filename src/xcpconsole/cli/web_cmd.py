"""``xcpconsole serve``: the web console gateway.

The gateway has no credentials of its own: each person signs in with their own host
account.  So only the host's address and how to trust its certificate are configured
here (flags, environment or a profile, like every other command).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..address import format_hostport, parse_hostport

if TYPE_CHECKING:  # not imported at run time: start-up of the other commands
    from ..settings import HostSettings
    from ..web import GatewayConfig


def host_settings(host: str | None, profile: str | None, fingerprint: str | None,
                  insecure: bool) -> HostSettings:
    """A HostSettings for the host (user and password are filled in at each sign-in)."""
    from dataclasses import replace

    from ..settings import load_settings
    from .common import warn_on_stderr

    settings = load_settings(host=host, user="", profile=profile, fingerprint=fingerprint,
                             insecure=insecure, password_prompt=lambda: "", interactive=False,
                             warn=warn_on_stderr)
    # The gateway never holds a password of its own (XCP_PASSWORD or a profile's is dropped).
    return replace(settings, password="")


async def serve(config: GatewayConfig, listen: tuple[str, int], tls: ssl.SSLContext | None) -> None:
    from aiohttp import web

    from ..web import create_app, shrink_tls_read_buffers

    shrink_tls_read_buffers()  # process-wide, so an explicit step (see web.tuning)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, listen[0], listen[1], ssl_context=tls)
    await site.start()
    scheme = "https" if tls else "http"
    for addr in runner.addresses:
        print(f"xcpconsole serve: listening on {scheme}://{format_hostport(addr[0], addr[1])}/",
              flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        listen: Annotated[str, typer.Option(help="Address to listen on (HOST:PORT).")]
            = "127.0.0.1:8080",
        host: Annotated[str | None, typer.Option(
            "--host", envvar="XCP_HOST", help="Host URL or address (https://HOST[:PORT]).")]
            = None,
        profile: Annotated[str | None, typer.Option(help="Profile in config.toml.")] = None,
        fingerprint: Annotated[str | None, typer.Option(
            envvar="XCP_FINGERPRINT", help="Pinned SHA-256 fingerprint of the host's TLS "
            "certificate.")] = None,
        insecure: Annotated[bool, typer.Option(
            help="Do not verify the host's certificate (testing only).")] = False,
        allowed_origin: Annotated[list[str] | None, typer.Option(
            help="Extra allowed Origin (e.g. behind a reverse proxy); repeatable.")] = None,
        max_consoles_per_user: Annotated[int, typer.Option(min=1)] = 8,
        max_consoles: Annotated[int, typer.Option(min=1, help="Open consoles in total.")]
            = 256,
        max_logins_per_user: Annotated[int, typer.Option(min=1)] = 5,
        idle_timeout: Annotated[float, typer.Option(
            min=1, help="Close a console after this many seconds without input.")] = 1800,
        session_idle: Annotated[float, typer.Option(
            min=10, help="Sign out after this many seconds of inactivity.")] = 1800,
        thumbnails: Annotated[bool, typer.Option(help="Screenshots in the VM list.")] = True,
        tls_cert: Annotated[Path | None, typer.Option(help="Serve HTTPS with this PEM "
                                                      "certificate chain.")] = None,
        tls_key: Annotated[Path | None, typer.Option(help="Private key for --tls-cert.")]
            = None,
        assets: Annotated[Path | None, typer.Option(
            help="node_modules holding @novnc/novnc and @xterm/xterm.")] = None,
        log_level: Annotated[str, typer.Option(help="debug, info, warning.")] = "info",
    ) -> None:
        """Web console gateway: sign in with a host account, list VMs, open consoles."""
        from ..web import GatewayConfig

        logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        settings = host_settings(host, profile, fingerprint, insecure)
        tls = None
        if tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(tls_cert, tls_key)
        config = GatewayConfig(
            host_settings=settings, allowed_origins=tuple(allowed_origin or ()),
            max_consoles_per_user=max_consoles_per_user, max_consoles_total=max_consoles,
            max_logins_per_user=max_logins_per_user, console_idle_timeout=idle_timeout,
            session_idle=session_idle, thumbnails=thumbnails, assets_dir=assets,
        )
        asyncio.run(serve(config, parse_hostport(listen), tls))
