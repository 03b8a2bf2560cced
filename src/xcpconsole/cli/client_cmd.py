"""Client commands: ``vms``, ``consoles``, ``proxy`` and ``attach``.

Thin Typer wrappers over :mod:`xcpconsole.xapi` and :mod:`xcpconsole.net`;
heavy imports happen inside the commands so ``xcpconsole --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from ..address import format_host, format_hostport, parse_hostport
from .common import (
    DEFAULT_TIMEOUT,
    FingerprintOpt,
    HostOpt,
    HostOptions,
    InsecureOpt,
    ProfileOpt,
    TimeoutOpt,
    UserOpt,
    check_can_listen,
    install_stop_signals,
    one_of,
    print_table,
    remove_stop_signals,
    run,
    visible,
    xapi_session,
)

VmArg = Annotated[str, typer.Argument(metavar="VM", help="VM name-label or uuid",
                                      show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _xe_records(rows: list[dict[str, str]]) -> str:
    """Text like ``xe console-list``: one ``key ( RO): value`` block per record, a blank
    line between records (no records: no text at all)."""
    blocks = []
    for row in rows:
        width = max(len(k) for k in row) + 6
        blocks.append("\n".join(f"{(k + ' ( RO)'):<{width}}: {visible(v)}"
                                 for k, v in row.items()))
    return "\n\n".join(blocks)


def register(app: typer.Typer) -> None:
    """Add ``vms``, ``consoles``, ``proxy`` and ``attach`` to the ``xcpconsole`` app."""

    @app.command("vms")
    def vms_cmd(as_json: JsonOpt = False,
                all_vms: Annotated[bool, typer.Option(
                    "--all", help="include control domains")] = False,
                host: HostOpt = None, user: UserOpt = None, profile: ProfileOpt = None,
                fingerprint: FingerprintOpt = None, insecure: InsecureOpt = False,
                timeout: TimeoutOpt = DEFAULT_TIMEOUT) -> None:
        """List VMs: name, uuid, power state, host, console protocols."""
        opts = HostOptions(host, user, profile, fingerprint, insecure, timeout)

        async def go() -> list[dict[str, Any]]:
            async with xapi_session(opts) as xapi:
                vms = await xapi.vms(include_control_domain=all_vms)
                names = await xapi.host_names()
                return [vm.to_json(names) for vm in vms]

        rows = run(go())
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        print_table(("NAME", "UUID", "STATE", "HOST", "CONSOLES"), [
            (r["name_label"], r["uuid"], r["power_state"], r["resident_on"] or "-",
             ",".join(r["console_protocols"]) or "-") for r in rows])

    @app.command("consoles")
    def consoles_cmd(vm: Annotated[str | None, typer.Argument(
                         metavar="VM", help="only this VM (name-label or uuid)",
                         show_default=False)] = None,
                     as_json: JsonOpt = False, host: HostOpt = None, user: UserOpt = None,
                     profile: ProfileOpt = None, fingerprint: FingerprintOpt = None,
                     insecure: InsecureOpt = False,
                     timeout: TimeoutOpt = DEFAULT_TIMEOUT) -> None:
        """List console records like ``xe console-list`` (uuid, VM, protocol, location)."""
        opts = HostOptions(host, user, profile, fingerprint, insecure, timeout)

        async def go() -> tuple[Any, list[dict[str, Any]]]:
            async with xapi_session(opts) as xapi:
                info = await xapi.find_vm(vm) if vm else None
                names = await xapi.host_names()
                return info, [c.to_json(names) for c in await xapi.consoles(info)]

        info, rows = run(go())
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            if info is not None:  # a halted VM: say why, on stderr (stdout stays empty)
                print(visible(f"xcpconsole: VM {info.name_label!r} is "
                              f"{info.power_state.lower()}: it has consoles only while it "
                              f"runs (xcpconsole start {vm})"), file=sys.stderr)
            return
        typer.echo(_xe_records([
            {"uuid": r["uuid"], "vm-uuid": r["vm_uuid"], "vm-name-label": r["vm_name_label"],
             "protocol": r["protocol"].upper(), "location": r["location"],
             "resident-on": r["resident_on"] or "<not in database>"} for r in rows]))

    @app.command("proxy")
    def proxy_cmd(vm: VmArg,
                  listen: Annotated[str, typer.Option(
                      "--listen", metavar="HOST:PORT",
                      help="local address to listen on (port 0 picks a free one)")
                  ] = "127.0.0.1:5900",
                  once: Annotated[bool, typer.Option(
                      "--once", help="serve one connection, then exit")] = False,
                  protocol: Annotated[str, typer.Option(
                      "--protocol", metavar="rfb|vt100", callback=one_of("rfb", "vt100"),
                      help="console protocol: rfb (graphical) or vt100 (text)")] = "rfb",
                  exclusive: Annotated[bool, typer.Option(
                      "--exclusive",
                      help="let a viewer that asks for an exclusive session have one (other "
                           "clients of the console are then disconnected)")] = False,
                  host: HostOpt = None, user: UserOpt = None, profile: ProfileOpt = None,
                  fingerprint: FingerprintOpt = None, insecure: InsecureOpt = False,
                  timeout: TimeoutOpt = DEFAULT_TIMEOUT) -> None:
        """Serve VM's console on a local port; each connection gets its own tunnel.

        Viewers get a shared session even if they ask for an exclusive one (TigerVNC's
        vncviewer does unless run with -Shared), so nobody else is disconnected.
        """
        import asyncio

        from ..errors import NetworkError
        from ..net.proxy import serve_proxy

        opts = HostOptions(host, user, profile, fingerprint, insecure, timeout)
        address = parse_hostport(listen, port_only=True)
        check_can_listen(*address)  # before a password is asked for

        def ready(bound_host: str, port: int) -> None:
            shown = format_host(bound_host)
            print(f"xcpconsole: {vm} ({protocol}) on {shown}:{port}; Ctrl-C stops",
                  file=sys.stderr)
            if protocol == "rfb":
                typer.echo(f"vncviewer {shown}::{port}")
            else:
                typer.echo(f"socat -,raw,echo=0 TCP:{shown}:{port}")
            sys.stdout.flush()

        def report(text: str) -> None:
            print(f"xcpconsole: {text}", file=sys.stderr, flush=True)

        async def go() -> int:
            stop = asyncio.Event()
            install_stop_signals(stop)
            try:
                async with xapi_session(opts) as xapi:
                    console = await xapi.find_console(vm, protocol)
                    try:
                        return await serve_proxy(xapi, console, address, once, stop=stop,
                                                 on_ready=ready, timeout=timeout,
                                                 report=report, shared=not exclusive)
                    except OSError as exc:
                        raise NetworkError(f"cannot listen on {format_hostport(*address)}: "
                                           f"{exc.strerror or exc}") from None
            finally:
                remove_stop_signals()

        count = run(go())
        print(f"xcpconsole: proxy stopped after {count} connection(s)", file=sys.stderr)

    @app.command("attach")
    def attach_cmd(vm: VmArg,
                   protocol: Annotated[str, typer.Option(
                       "--protocol", metavar="vt100", callback=one_of("vt100"),
                       help="text console protocol")] = "vt100",
                   follow: Annotated[bool, typer.Option(
                       "--follow/--no-follow",
                       help="after a reboot or migration, reconnect to the VM's console")
                   ] = True,
                   host: HostOpt = None, user: UserOpt = None, profile: ProfileOpt = None,
                   fingerprint: FingerprintOpt = None, insecure: InsecureOpt = False,
                   timeout: TimeoutOpt = DEFAULT_TIMEOUT) -> None:
        """Attach this terminal to VM's text console; Ctrl-] detaches."""
        from ..net.attach import ESCAPE_NAME, attach

        opts = HostOptions(host, user, profile, fingerprint, insecure, timeout)

        async def go() -> str:
            async with xapi_session(opts) as xapi:
                console = await xapi.find_console(vm, protocol)
                say(f"connected to {console.vm_name_label} ({protocol}); "
                    f"{ESCAPE_NAME} detaches")
                return await attach(xapi, console, timeout=timeout, follow=follow,
                                    notice=say)

        def say(text: str) -> None:  # the terminal is raw: a line needs its own \r
            print(f"\r\nxcpconsole: {text}\r", file=sys.stderr, flush=True)

        reason = run(go())
        message = {"detached": "detached", "closed": "the host closed the console",
                   "eof": "input ended"}.get(reason, reason)
        print(f"\r\nxcpconsole: {message}", file=sys.stderr)

