"""``xcpconsole demo``: the simulated host and the web gateway in one process.

The gateway is pointed at the simulated host with its certificate pinned (no
``--insecure`` anywhere), and a single-use sign-in link is printed so the first
page opened is already signed in with the simulated host's credentials.

The state directory is kept across runs, like a real host keeps its certificate: the
hosts' key pairs (the simulator's own files), the generated password (``demo-password``,
0600; not written when ``XCPSIM_PASSWORD`` gives one) and a profile the command line
reads (``config.toml``, ``[profiles.demo]``).  So a fingerprint pinned or accepted once
stays right; ``--fresh`` starts over with new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shlex
import signal
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ..address import connectable_host, format_hostport, parse_hostport
from .common import SafeFormatter

DEFAULT_STATE_DIR = Path("~/.local/state/xcpconsole-demo")
PASSWORD_FILE = "demo-password"
CONFIG_FILE = "config.toml"
PROFILE = "demo"
PASSWORD_ENV = "XCPSIM_PASSWORD"
DEMO_HTTP_ADVICE = ("the demo serves no HTTPS: keep --web-listen on 127.0.0.1 (the default), "
                    "or use `xcpconsole serve --tls-cert/--tls-key` in front of a host")


@dataclass(frozen=True)
class DemoPassword:
    """The sim's password and whether it is ours to show (generated) or the caller's."""

    value: str
    from_env: bool


def demo_password(state_dir: Path) -> DemoPassword:
    """``XCPSIM_PASSWORD``, else the one kept in the state dir, else a new one kept there."""
    from ..errors import ConfigError

    given = os.environ.get(PASSWORD_ENV)
    if given:
        return DemoPassword(given, from_env=True)
    path = state_dir / PASSWORD_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        fd = -1
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    if fd >= 0:
        with os.fdopen(fd, encoding="utf-8") as kept:
            if os.fstat(kept.fileno()).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(f"{path} holds the demo password but other users can read "
                                  f"it: chmod 600 {path} (or start over with --fresh)")
            value = kept.read().strip()
        if value:
            return DemoPassword(value, from_env=False)
    value = secrets.token_urlsafe(12)
    _write_private(path, value + "\n")
    return DemoPassword(value, from_env=False)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (replacing it atomically)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes (non-ASCII left as is) are TOML's, bar DEL."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def write_profile(state_dir: Path, url: str, user: str, fingerprint: str,
                  password: str | None) -> Path:
    """``STATE_DIR/config.toml`` with ``[profiles.demo]``: what ``--profile demo`` reads."""
    lines = ["# Written by `xcpconsole demo` at each start: the simulated pool master.",
             f"[profiles.{PROFILE}]",
             f"host = {_toml_string(url)}",
             f"user = {_toml_string(user)}",
             f"fingerprint = {_toml_string(fingerprint)}"]
    if password is not None:
        lines.append(f"password = {_toml_string(password)}")
    path = state_dir / CONFIG_FILE
    _write_private(path, "\n".join(lines) + "\n")
    return path


def start_over(state_dir: Path) -> None:
    """``--fresh``: forget the demo's key pairs, password and profile (nothing else)."""
    from ..sim.tls import CERT_NAME, KEY_NAME

    for name in (CERT_NAME, KEY_NAME, PASSWORD_FILE, CONFIG_FILE):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()
    hosts = state_dir / "hosts"
    if hosts.is_dir() and not hosts.is_symlink():
        for host in hosts.iterdir():
            for name in (CERT_NAME, KEY_NAME):
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    (host / name).unlink()
            with contextlib.suppress(OSError):
                host.rmdir()
        with contextlib.suppress(OSError):
            hosts.rmdir()


class _ShortFormatter(SafeFormatter):
    """``12:34:56 signed in root from 127.0.0.1``; warnings and errors say so and who."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")
        self._loud = SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                       datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:
            return self._loud.format(record)
        return super().format(record)


def log_to_stderr() -> None:
    """What happens after the banner: the gateway's INFO lines (sign-ins, consoles, power
    actions), everyone's warnings."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ShortFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("xcpconsole.web").setLevel(logging.INFO)


async def _demo(sim_listen: tuple[str, int], web_listen: tuple[str, int], state_dir: Path,
                password: DemoPassword, hosts: int) -> None:
    from ..errors import NetworkError
    from ..settings import HostSettings
    from ..sim import SimConfig, serve
    from ..web import GatewayConfig, create_app, shrink_tls_read_buffers
    from ..web.gateway import GATEWAY
    from ..web.limits import start_gateway
    from ..web.startup import plain_http_warning

    try:
        host = await serve(SimConfig(state_dir=state_dir, password=password.value,
                                     listen_host=sim_listen[0], listen_port=sim_listen[1],
                                     hosts=hosts))
    except OSError as exc:
        raise NetworkError(f"cannot start the simulated pool on {format_hostport(*sim_listen)}: "
                           f"{exc.strerror or exc}") from exc
    host.write_info()
    runner: Any = None
    try:
        profile = write_profile(state_dir, host.url, host.config.user, host.fingerprint,
                                None if password.from_env else password.value)
        settings = HostSettings(url=host.url, user="", password="",
                                fingerprint=host.fingerprint, interactive=False)
        shrink_tls_read_buffers()  # process-wide, so an explicit step (see web.tuning)
        app = create_app(GatewayConfig(host_settings=settings))
        try:
            runner = await start_gateway(app, web_listen[0], web_listen[1])
        except OSError as exc:
            raise NetworkError(f"cannot listen on --web-listen {format_hostport(*web_listen)}: "
                               f"{exc.strerror or exc}") from exc
        addr = runner.addresses[0]
        base = f"http://{format_hostport(connectable_host(addr[0]), addr[1])}"
        link = app[GATEWAY].add_sign_in_link(host.config.user, password.value)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        _banner(host, base + link, password, state_dir, profile)  # after the handlers
        if warning := plain_http_warning(addr[0], addr[1], "xcpconsole demo", DEMO_HTTP_ADVICE):
            print(warning, file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        await host.close()
        with contextlib.suppress(FileNotFoundError):
            (state_dir / "sim.json").unlink()


def _vm_names(host: Any) -> str:
    info = host.info()
    where = {h["address"]: h["name_label"] for h in info.get("hosts", [])}
    addresses = {ref: h.address for ref, h in host.model.hosts.items()} \
        if hasattr(host.model, "hosts") else {}
    vms = [vm for vm in host.model.vms.values()
           if not vm.is_a_template and not vm.is_control_domain]
    return ", ".join(
        f"{vm.name_label} ({vm.power_state}"
        + (f" on {where.get(addresses.get(vm.resident_on, ''), '?')}"
           if vm.power_state == "Running" and where else "") + ")" for vm in vms)


def _banner(host: Any, link: str, password: DemoPassword, state_dir: Path,
            profile: Path) -> None:
    exe = Path(sys.argv[0]).resolve()
    cli = shlex.quote(str(exe)) if exe.name == "xcpconsole" else "xcpconsole"
    members = host.info().get("hosts", [])[1:]
    pool = "".join(f"\n    member {h['name_label']}: {h['url']}  SHA-256 {h['fingerprint']}"
                   for h in members)
    shown = f"(from {PASSWORD_ENV})" if password.from_env else password.value
    kept = (f"password from {PASSWORD_ENV}, not kept" if password.from_env
            else f"password in {PASSWORD_FILE}")
    # the caller's password is not written in the profile: it comes from their variable
    env_password = (f'\n    export XCP_PASSWORD="${PASSWORD_ENV}"' if password.from_env else "")
    commands = [("hosts", ""), ("vms", ""), ("screenshot win-hvm shot.png", ""),
                ("type debian-pv root --enter", ""),
                ("proxy win-hvm --listen 127.0.0.1:5901", "then: vncviewer 127.0.0.1::5901"),
                ("attach alpine-pv-text", "Ctrl-] detaches")]
    lines = [f"{cli} {what} --profile {PROFILE}" for what, _ in commands]
    width = max(map(len, lines))
    block = "\n".join(f"    {line.ljust(width)}   # {note}" if note else f"    {line}"
                      for line, (_, note) in zip(lines, commands, strict=True))
    print(f"""
xcpconsole demo: a simulated XenServer pool and the web console gateway are running.

  Open in a browser (signs you in once; the link works a single time, for 10 minutes):
    {link}
  or sign in at {link.split('/login')[0]}/login as {host.config.user} / {shown}

  Simulated pool master: {host.url}   (XenAPI and /console, like a real host)
    certificate SHA-256: {host.fingerprint}{pool}
    VMs: {_vm_names(host)}
  Each host has its own certificate; only the master's is pinned (in the profile below):
  the others are checked against what the master lists for them.
  State, kept across runs (--fresh starts over): {state_dir}
    (certificates, {kept}, the profile {CONFIG_FILE})

  From another terminal, the command line (paste the lines as they are):
    export XCPCONSOLE_CONFIG={shlex.quote(str(profile))}{env_password}
{block}

Stop with Ctrl-C.  What happens from now on (sign-ins, consoles, power actions) is logged
below.""", flush=True)


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        listen: Annotated[str, typer.Option(
            help="HOST:PORT of the simulated host")] = "127.0.0.1:8443",
        web_listen: Annotated[str, typer.Option(
            help="HOST:PORT of the web gateway")] = "127.0.0.1:8080",
        state_dir: Annotated[Path, typer.Option(
            help="State directory (certificates, password, profile), kept across runs")]
            = DEFAULT_STATE_DIR,
        fresh: Annotated[bool, typer.Option(
            "--fresh", help="Start over: new certificates and a new password")] = False,
        hosts: Annotated[int, typer.Option(
            "--hosts", min=1, max=16, help="hosts in the simulated pool")] = 3,
    ) -> None:
        """Start the simulated host and the web gateway; print the URL to open."""
        from ..errors import ConfigError

        log_to_stderr()
        from .common import check_can_listen

        sim_at = parse_hostport(listen)
        web_at = parse_hostport(web_listen, "--web-listen")
        check_can_listen(*sim_at)  # a busy port: one line, exit 1 (as for --web-listen)
        where = state_dir.expanduser()
        try:
            where.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create --state-dir {where}: {exc.strerror}") from exc
        if fresh:
            start_over(where)
        password = demo_password(where)
        asyncio.run(_demo(sim_at, web_at, where, password, hosts))
