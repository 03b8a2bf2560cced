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

log = logging.getLogger("xcpconsole.web.serve")

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


async def check_or_warn(settings: HostSettings, timeout: float, start_anyway: bool) -> None:
    """The start check of :mod:`..web.startup`: a refusal stops ``serve`` with what the
    operator can do; with ``--start-anyway`` the reason is logged and ``serve`` starts."""
    from ..errors import NetworkError, TrustError
    from ..web.startup import check_host

    try:
        await check_host(settings, timeout)
    except (TrustError, NetworkError) as exc:
        what = ("its certificate is not trusted" if isinstance(exc, TrustError)
                else "it cannot be reached")
        if start_anyway:
            log.warning("the host %s failed the start check (%s): %s; starting anyway "
                        "(--start-anyway): sign-ins show 'the gateway cannot reach the host' "
                        "until this is fixed", settings.url, what, exc)
            return
        raise type(exc)(
            f"not starting the gateway: the host {settings.url} failed the start check ({what}): "
            f"{exc}\n(--start-anyway starts regardless; end users then see 'the gateway "
            "cannot reach the host' until it is fixed)") from exc
    log.info("the host %s answers and its certificate is trusted", settings.url)


async def serve(config: GatewayConfig, listen: tuple[str, int], tls: ssl.SSLContext | None,
                *, check_timeout: float = 10.0, start_anyway: bool = False) -> None:
    from ..errors import NetworkError
    from ..web import create_app, shrink_tls_read_buffers
    from ..web.limits import start_gateway
    from ..web.startup import plain_http_warning

    await check_or_warn(config.host_settings, check_timeout, start_anyway)
    shrink_tls_read_buffers()  # process-wide, so an explicit step (see web.tuning)
    app = create_app(config)
    try:
        runner = await start_gateway(app, listen[0], listen[1], tls)
    except OSError as exc:
        raise NetworkError(f"cannot listen on {format_hostport(*listen)}: "
                           f"{exc.strerror or exc}") from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the line that says we are up
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    scheme = "https" if tls else "http"
    for addr in runner.addresses:
        print(f"xcpconsole serve: listening on {scheme}://{format_hostport(addr[0], addr[1])}/",
              flush=True)
    warnings = [] if tls else [w for addr in runner.addresses
                               if (w := plain_http_warning(addr[0], addr[1], "xcpconsole serve"))]
    if warnings:
        print(warnings[0], file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def server_tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The HTTPS context of ``--tls-cert``/``--tls-key`` (None: plain HTTP)."""
    from ..errors import ConfigError

    if cert is None:
        if key is not None:
            raise ConfigError("--tls-key needs --tls-cert (the certificate chain it goes with)")
        return None
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            if path is not None:
                path.open("rb").close()
        except OSError as exc:
            raise ConfigError(f"cannot read {flag} {path}: {exc.strerror or exc}") from exc
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        tls.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        why = getattr(exc, "reason", None) or exc
        raise ConfigError(f"--tls-cert {cert} / --tls-key {key or '(in the same file)'}: "
                          f"not a PEM certificate chain and its key ({why})") from exc
    return tls


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
        allowed_host: Annotated[list[str] | None, typer.Option(
            metavar="NAME",
            help="DNS name users reach the gateway by (Host header; IP addresses and "
                 "localhost always work; others get 421, against DNS rebinding); "
                 "repeatable.")] = None,
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
        start_anyway: Annotated[bool, typer.Option(
            "--start-anyway",
            help="Start even when the host fails the start check (unreachable, untrusted "
                 "certificate); the reason is logged, users see 'cannot reach the host'.")]
            = False,
        timeout: Annotated[float, typer.Option(
            min=0.1, help="Seconds per network step of the start check.")] = 10.0,
        head_timeout: Annotated[float, typer.Option(
            min=1, help="A request head must arrive within this many seconds of the "
                        "connection or the previous answer (idle keep-alive connections "
                        "close then too).", rich_help_panel="Limits")] = 15.0,
        body_timeout: Annotated[float, typer.Option(
            min=1, help="A request body must arrive within this many seconds (408).",
            rich_help_panel="Limits")] = 30.0,
        max_connections: Annotated[int, typer.Option(
            min=8, help="Open connections in all (kept below what the open-files limit, "
                        "raised to its hard limit at start, can hold); others get 503.",
            rich_help_panel="Limits")] = 4096,
        max_connections_per_address: Annotated[int, typer.Option(
            min=1, help="Open connections per client address (behind a reverse proxy "
                        "all come from its address: raise this).",
            rich_help_panel="Limits")] = 256,
        signins_in_flight: Annotated[int, typer.Option(
            min=1, help="Sign-ins at the host at once, in all (their own threads).",
            rich_help_panel="Limits")] = 4,
        signins_per_address: Annotated[int, typer.Option(
            min=1, help="Sign-ins at the host at once per client address.",
            rich_help_panel="Limits")] = 2,
        xapi_threads: Annotated[int, typer.Option(
            min=1, help="Threads for signed-in users' XenAPI calls.",
            rich_help_panel="Limits")] = 16,
        xapi_timeout: Annotated[float, typer.Option(
            min=1, help="Deadline of each XenAPI call, connecting included.",
            rich_help_panel="Limits")] = 30.0,
    ) -> None:
        """Web console gateway: sign in with a host account, list VMs, open consoles.

        At start it checks that the host answers and that its certificate passes the
        trust rules, and refuses to start otherwise (exit 4 untrusted, 1 unreachable).
        """
        from ..errors import ConfigError
        from ..web import GatewayConfig

        level = logging.getLevelName(log_level.upper())
        if not isinstance(level, int):
            raise ConfigError(f"--log-level wants debug, info or warning, got {log_level!r}")
        from .common import log_lines

        log_lines(level)
        address = parse_hostport(listen)
        settings = host_settings(host, profile, fingerprint, insecure)
        tls = server_tls(tls_cert, tls_key)
        config = GatewayConfig(
            host_settings=settings, allowed_origins=tuple(allowed_origin or ()),
            allowed_hosts=tuple(allowed_host or ()),
            max_consoles_per_user=max_consoles_per_user, max_consoles_total=max_consoles,
            max_logins_per_user=max_logins_per_user, console_idle_timeout=idle_timeout,
            session_idle=session_idle, thumbnails=thumbnails, assets_dir=assets,
            head_timeout=head_timeout, body_timeout=body_timeout,
            max_connections=max_connections,
            max_connections_per_address=max_connections_per_address,
            signins_in_flight=signins_in_flight, signins_per_address=signins_per_address,
            xapi_threads=xapi_threads, xapi_timeout=xapi_timeout,
        )
        asyncio.run(serve(config, address, tls, check_timeout=timeout,
                          start_anyway=start_anyway))
