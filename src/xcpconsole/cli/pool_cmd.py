"""``xcpconsole hosts``: the pool's hosts, their roles, certificates and VMs.

What the master says about each host is what xcpconsole trusts a member with (see
:mod:`xcpconsole.xapi.pool`), so this is also how a user checks what is pinned.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .common import (
    DEFAULT_TIMEOUT,
    FingerprintOpt,
    HostOpt,
    HostOptions,
    InsecureOpt,
    ProfileOpt,
    TimeoutOpt,
    UserOpt,
    print_table,
    run,
    xapi_session,
)


def register(app: typer.Typer) -> None:
    """Add ``hosts`` to the ``xcpconsole`` app."""

    @app.command("hosts")
    def hosts_cmd(as_json: Annotated[bool, typer.Option(
                      "--json", help="print JSON instead of a table")] = False,
                  host: HostOpt = None, user: UserOpt = None, profile: ProfileOpt = None,
                  fingerprint: FingerprintOpt = None, insecure: InsecureOpt = False,
                  timeout: TimeoutOpt = DEFAULT_TIMEOUT) -> None:
        """List the pool's hosts: address, master or member, certificate, VMs running there."""
        from ..xapi.pool import EXPIRY_WARNING_DAYS, HostInfo, read_hosts

        opts = HostOptions(host, user, profile, fingerprint, insecure, timeout)

        async def go() -> list[HostInfo]:
            async with xapi_session(opts) as xapi:
                return await read_hosts(xapi.call)

        hosts = run(go())
        if as_json:
            typer.echo(json.dumps([h.to_json() for h in hosts], indent=2))
            return
        print_table(("NAME", "ADDRESS", "ROLE", "FINGERPRINT", "EXPIRES", "VMS"), [
            (h.name_label, h.address, "master" if h.is_master else "member",
             h.fingerprint or "-",
             (f"{h.not_after:%Y-%m-%d}" + (" (soon!)" if h.expires_within(EXPIRY_WARNING_DAYS)
                                          else "")) if h.not_after else "-",
             ", ".join(h.resident_vms) or "-") for h in hosts])
