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
    listen: str, state_dir: Path, user: str, password: str, inventory: Path | None,
    header_timeout: float,
) -> object:
    from ..sim import HttpLimits, SimConfig, parse_listen

    host, port = parse_listen(listen)
    return SimConfig(
        state_dir=state_dir.expanduser(), password=password, listen_host=host,
        listen_port=port, user=user, inventory=inventory,
        limits=HttpLimits(head_timeout=header_timeout),
    )


def _print_banner(host: SimHost, source: str) -> None:
    info = host.info()
    shown = info["password"] if source == "generated" else f"(from {source})"
    print(f"xcpconsole sim: serving {host.url}")
    print(f"  TLS fingerprint (SHA-256): {host.fingerprint}")
    print(f"  user: {info['user']}  password: {shown}")
    print(f"  state: {host.config.state_dir / 'sim.json'}")
    sys.stdout.flush()


def _print_demo(host: SimHost, source: str) -> None:
    _print_banner(host, source)
    model = host.model
    print("\nConsoles:")
    for console in model.consoles.values():
        vm = model.vms[console.vm]
        print(f"  {vm.name_label:<34} {console.protocol.upper():<6} {console.location}")
    hvm = next(
        (c for c in model.consoles.values() if model.vms[c.vm].backend == "qemu"), None
    )
    ref = hvm.ref if hvm else "<console ref>"
    py = Path(sys.executable)
    print(
        "\nGet a session with the official SDK (the password is read from the environment):\n"
        f"  export XCP_PASSWORD='{host.config.password}'\n"
        f"  SID=$({py} -c \"import os, XenAPI; s = XenAPI.Session('{host.url}', "
        "ignore_ssl=True); s.xenapi.login_with_password("
        f"'{host.config.user}', os.environ['XCP_PASSWORD'], '', 'demo'); print(s._session)\")\n"
        "\nThen open the HVM guest's console by hand, like the seed did (prints the 200 and "
        "the RFB greeting):\n"
        f"  (printf 'CONNECT /console?ref={ref}&session_id=%s HTTP/1.0\\r\\n\\r\\n' \"$SID\"; "
        f"sleep 2) | socat - OPENSSL:127.0.0.1:{host.port},verify=0\n"
        "\nStop with Ctrl-C."
    )
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    @app.command("sim")
    def sim(
        listen: Annotated[str, typer.Option(help="HOST:PORT to listen on (port 0: any free)")] = (
            "127.0.0.1:8443"
        ),
        state_dir: Annotated[
            Path, typer.Option(help="Certificate, sim.json and backend sockets live here")
        ] = DEFAULT_STATE_DIR,
        user: Annotated[str, typer.Option(help="XenAPI user name")] = "root",
        password: Annotated[
            str | None,
            typer.Option(help=f"XenAPI password (prefer the {PASSWORD_ENV} environment variable)"),
        ] = None,
        inventory: Annotated[
            Path | None, typer.Option(help="TOML inventory (default: the packaged one)")
        ] = None,
        header_timeout: Annotated[
            float, typer.Option(help="Seconds a client gets to send a request head")
        ] = 10.0,
    ) -> None:
        """Run the simulated XenServer host (XenAPI + /console over HTTPS)."""
        import logging

        from ..sim import SimConfig, run

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        pw, source = _password(password)
        config = _config(listen, state_dir, user, pw, inventory, header_timeout)
        assert isinstance(config, SimConfig)
        run(config, on_ready=lambda host: _print_banner(host, source))

    @app.command("demo")
    def demo(
        listen: Annotated[str, typer.Option(help="HOST:PORT to listen on")] = "127.0.0.1:8443",
        state_dir: Annotated[Path, typer.Option(help="State directory")] = DEFAULT_STATE_DIR,
    ) -> None:
        """Start the simulated host and print what to run next."""
        import logging

        from ..sim import SimConfig, run

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        pw, source = _password(None)
        config = _config(listen, state_dir, "root", pw, None, 10.0)
        assert isinstance(config, SimConfig)
        run(config, on_ready=lambda host: _print_demo(host, source))
