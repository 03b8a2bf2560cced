"""``xcpconsole demo``: the simulated host and the web gateway in one process.

The gateway is pointed at the simulated host with its certificate pinned (no
``--insecure`` anywhere), and a single-use sign-in link is printed so the first
page opened is already signed in with the simulated host's credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from ..address import parse_hostport


async def _demo(sim_listen: tuple[str, int], web_listen: tuple[str, int], state_dir: Path,
                password: str, shown_password: str, hosts: int) -> None:
    from aiohttp import web

    from ..settings import HostSettings
    from ..sim import SimConfig, serve
    from ..web import GatewayConfig, create_app, shrink_tls_read_buffers
    from ..web.gateway import GATEWAY

    host = await serve(SimConfig(state_dir=state_dir, password=password,
                                 listen_host=sim_listen[0], listen_port=sim_listen[1],
                                 hosts=hosts))
    host.write_info()
    runner: Any = None
    try:
        settings = HostSettings(url=host.url, user="", password="",
                                fingerprint=host.fingerprint, interactive=False)
        shrink_tls_read_buffers()  # process-wide, so an explicit step (see web.tuning)
        app = create_app(GatewayConfig(host_settings=settings))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, web_listen[0], web_listen[1])
        await site.start()
        addr = runner.addresses[0]
        base = f"http://{addr[0]}:{addr[1]}"
        link = app[GATEWAY].add_sign_in_link(host.config.user, password)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        _banner(host, base + link, shown_password, password)  # after the handlers
        await stop.wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        await host.close()
        with contextlib.suppress(FileNotFoundError):
            (state_dir / "sim.json").unlink()


def _banner(host: Any, link: str, shown_password: str, password: str) -> None:
    exe = Path(sys.argv[0]).resolve()
    cli = shlex.quote(str(exe)) if exe.name == "xcpconsole" else "xcpconsole"
    info = host.info()
    members = info.get("hosts", [])[1:]
    where = {h["address"]: h["name_label"] for h in info.get("hosts", [])}
    addresses = {ref: h.address for ref, h in host.model.hosts.items()} \
        if hasattr(host.model, "hosts") else {}
    vms = [vm for vm in host.model.vms.values()
           if not vm.is_a_template and not vm.is_control_domain]
    names = ", ".join(
        f"{vm.name_label} ({vm.power_state}"
        + (f" on {where.get(addresses.get(vm.resident_on, ''), '?')}"
           if vm.power_state == "Running" and where else "") + ")" for vm in vms)
    pool = "".join(f"\n    member {h['name_label']}: {h['url']}  SHA-256 {h['fingerprint']}"
                   for h in members)
    # the password is pasteable only when it was generated here (else it is the caller's)
    pw = shlex.quote(password) if shown_password == password else '"$XCPSIM_PASSWORD"'
    print(f"""
xcpconsole demo: a simulated XenServer pool and the web console gateway are running.

  Open in a browser (signs you in once; the link works a single time, for 10 minutes):
    {link}
  or sign in at {link.split('/login')[0]}/login as {host.config.user} / {shown_password}

  Simulated pool master: {host.url}   (XenAPI and /console, like a real host)
    certificate SHA-256: {host.fingerprint}{pool}
    VMs: {names}
  Each host has its own certificate; only the master's is pinned below: the others are
  checked against what the master lists for them.

  From another terminal, the command line:
    export XCP_HOST={host.url} XCP_USER={host.config.user}
    export XCP_FINGERPRINT={host.fingerprint}
    export XCP_PASSWORD={pw}
    {cli} hosts
    {cli} vms
    {cli} screenshot win-hvm shot.png
    {cli} type debian-pv root --enter
    {cli} proxy win-hvm --listen 127.0.0.1:5901   # then: vncviewer 127.0.0.1::5901
    {cli} attach alpine-pv-text                    # Ctrl-] detaches

Stop with Ctrl-C.""", flush=True)


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        listen: Annotated[str, typer.Option(
            help="HOST:PORT of the simulated host")] = "127.0.0.1:8443",
        web_listen: Annotated[str, typer.Option(
            help="HOST:PORT of the web gateway")] = "127.0.0.1:8080",
        state_dir: Annotated[Path | None, typer.Option(
            help="State directory of the simulated host (default: a fresh temporary one)")]
            = None,
        hosts: Annotated[int, typer.Option(
            "--hosts", min=1, max=16, help="hosts in the simulated pool")] = 3,
    ) -> None:
        """Start the simulated host and the web gateway; print the URL to open."""
        import logging

        logging.basicConfig(level=logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        given = os.environ.get("XCPSIM_PASSWORD")
        password = given or secrets.token_urlsafe(12)
        shown = "(from XCPSIM_PASSWORD)" if given else password
        with contextlib.ExitStack() as stack:
            if state_dir is None:
                state_dir = Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="xcpconsole-demo-")))
            asyncio.run(_demo(parse_hostport(listen), parse_hostport(web_listen, "--web-listen"),
                              state_dir.expanduser(), password, shown, hosts))
