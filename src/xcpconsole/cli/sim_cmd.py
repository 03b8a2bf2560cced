"""``xcpconsole sim`` and ``xcpconsole demo``: run the simulated host.

Heavy imports (asyncio server, cryptography) happen inside the commands so
``xcpconsole --help`` stays fast.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..sim import SimHost

DEFAULT_STATE_DIR = Path("~/.local/state/xcpconsole-sim")
DEFAULT_LISTEN = "127.0.0.1:8443"
PASSWORD_ENV = "XCPSIM_PASSWORD"


def _password(given: str | None) -> tuple[str, str]:
    """The password and where it came from (flag, environment or generated)."""
    if given:
        return given, "--password"
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env, PASSWORD_ENV
    return secrets.token_urlsafe(12), "generated"


def _config(
    listen: str | None, state_dir: Path, user: str, password: str, inventory: Path | None,
    header_timeout: float, member_listen: str | None = None, hosts: int | None = None,
    auth_fail_delay: float = 0.0,
) -> object:
    from ..address import parse_hostport
    from ..sim import HttpLimits, SimConfig

    host, port = parse_hostport(listen or DEFAULT_LISTEN)
    member = parse_hostport(member_listen, "--member-listen") if member_listen else None
    return SimConfig(
        state_dir=state_dir.expanduser(), password=password, listen_host=host,
        listen_port=port, user=user, inventory=inventory,
        limits=HttpLimits(head_timeout=header_timeout), member_listen=member,
        hosts=hosts, listen_from_inventory=listen is None, auth_fail_delay=auth_fail_delay,
    )


def _print_banner(host: SimHost, source: str) -> None:
    info = host.info()
    shown = info["password"] if source == "generated" else f"(from {source})"
    print(f"xcpconsole sim: serving {host.url}")
    print(f"  TLS fingerprint (SHA-256): {host.fingerprint}")
    print(f"  user: {info['user']}  password: {shown}")
    print(f"  state: {host.config.state_dir / 'sim.json'}")
    if len(info["hosts"]) > 1:
        print("  pool (master first; members answer XenAPI with HOST_IS_SLAVE):")
        for entry in info["hosts"]:
            print(f"    {entry['name_label']}: {entry['url']}  SHA-256 {entry['fingerprint']}")
    sys.stdout.flush()


def _check_state_dir(path: Path) -> None:
    """A state directory we cannot create or write is a settings error, said in one line."""
    from ..errors import ConfigError

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot use --state-dir {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot use --state-dir {path}: not writable")


def register(app: typer.Typer) -> None:
    @app.command("sim")
    def sim(
        listen: Annotated[str | None, typer.Option(
            metavar="HOST:PORT",
            help=f"where the master listens (port 0: any free; default {DEFAULT_LISTEN})",
            show_default=False,
        )] = None,
        hosts: Annotated[int | None, typer.Option(
            metavar="N", min=1, max=16, show_default=False,
            help="Hosts in the pool (default: as many as the inventory's hosts tables, "
                 "else 1); members listen on 127.0.0.2, 127.0.0.3, ... on the master's port",
        )] = None,
        state_dir: Annotated[Path, typer.Option(
            metavar="DIR", help="Certificate, sim.json and backend sockets live here")
        ] = DEFAULT_STATE_DIR,
        user: Annotated[str, typer.Option(metavar="NAME", help="XenAPI user name")] = "root",
        password: Annotated[str | None, typer.Option(
            metavar="TEXT", show_default=False,
            help=f"XenAPI password (prefer the {PASSWORD_ENV} environment variable)")] = None,
        inventory: Annotated[Path | None, typer.Option(
            metavar="FILE", show_default=False,
            help="TOML inventory (default: the packaged one)")] = None,
        header_timeout: Annotated[float, typer.Option(
            metavar="SECONDS", min=0.1, help="How long a client may take to send a request head")
        ] = 10.0,
        member_listen: Annotated[str | None, typer.Option(
            metavar="HOST:PORT", show_default=False,
            help="where the first pool member listens (implies --hosts 2 or more)")] = None,
        auth_fail_delay: Annotated[float, typer.Option(
            metavar="SECONDS", min=0,
            help="Answer a refused login this late, as PAM's pam_faildelay does")] = 0.0,
    ) -> None:
        """Run the simulated XenServer host or pool (XenAPI + /console over HTTPS)."""
        import logging

        from ..sim import SimConfig, run
        from .common import check_can_listen, log_lines

        log_lines(logging.INFO, "%(levelname)s %(name)s: %(message)s")
        _check_state_dir(state_dir.expanduser())
        pw, source = _password(password)
        config = _config(listen, state_dir, user, pw, inventory, header_timeout, member_listen,
                         hosts, auth_fail_delay)
        assert isinstance(config, SimConfig)
        if listen is not None:  # a busy port is refused (1), like proxy's and serve's
            check_can_listen(config.listen_host, config.listen_port)
        run(config, on_ready=lambda host: _print_banner(host, source))
