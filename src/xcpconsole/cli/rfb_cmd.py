"""RFB commands: ``info``, ``screenshot``, ``type`` and ``key`` on a VM's console.

TARGET is either a VNC address (``vnc://HOST:PORT``, ``HOST:DISPLAY``,
``HOST::PORT``, ``unix:/path``) or a VM name / uuid, which is looked up over
XenAPI and reached through the host's ``/console`` tunnel.  A VNC password
comes from ``VNC_PASSWORD`` or a prompt, never from an argument (argv is
visible to every user of the machine).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import (
    FingerprintOpt,
    HostOpt,
    HostOptions,
    InsecureOpt,
    ProfileOpt,
    TimeoutOpt,
    UserOpt,
    prompt_password,
    run,
    xapi_session,
)

TargetArg = Annotated[str, typer.Argument(
    help="VM name or uuid, or a VNC address: vnc://HOST:PORT, HOST:DISPLAY, HOST::PORT, "
         "unix:/path", show_default=False)]
EncodingsOpt = Annotated[str | None, typer.Option(
    "--encodings", "-e",
    help="Encodings to ask for, best first, e.g. 'zrle,hextile,raw' (also jpeg=0-9 and "
         "compress=0-9 for Tight). Default: copyrect,tight,zrle,hextile,zlib,rre,raw — "
         "lossless Tight compresses best, ZRLE is what every server speaks.")]


@asynccontextmanager
async def connect(target: str, *, encodings: str | None, host: HostOptions,
                  timeout: float = 10.0) -> AsyncIterator[Any]:
    """Open an RFB session on TARGET (address or VM) and close everything afterwards."""
    from ..errors import AuthError
    from ..net.vnc import looks_like_target, open_vnc

    password = os.environ.get("VNC_PASSWORD")
    if looks_like_target(target):
        try:
            client = await open_vnc(target, password=password, encodings=encodings,
                                    timeout=timeout)
        except AuthError:
            if password is not None or not sys.stdin.isatty():
                raise
            password = prompt_password("VNC password")()
            client = await open_vnc(target, password=password, encodings=encodings,
                                    timeout=timeout)
        async with client:
            yield client
        return

    from ..net.tunnel import open_tunnel

    async with xapi_session(host) as session:
        console = await session.find_console(target, "rfb")
        streams = await open_tunnel(session, console, timeout=timeout)
        client = await open_vnc(streams, password=password, encodings=encodings,
                                timeout=timeout)
        async with client:
            yield client


def register(app: typer.Typer) -> None:
    """Add ``info``, ``screenshot``, ``type`` and ``key`` to the ``xcpconsole`` app."""

    @app.command("info")
    def info_cmd(target: TargetArg,
                 seconds: Annotated[float, typer.Option(
                     "--seconds", "-s", help="watch updates this long and print statistics")
                 ] = 0.0,
                 encodings: EncodingsOpt = None, host: HostOpt = None, user: UserOpt = None,
                 profile: ProfileOpt = None, fingerprint: FingerprintOpt = None,
                 insecure: InsecureOpt = False, timeout: TimeoutOpt = 10.0) -> None:
        """Show RFB version, security, name, size, pixel format, encodings (and statistics).

        With --seconds N: one full frame, then updates for N seconds, and the counts of
        updates, rectangles per encoding, pixel bytes, wire bytes and their ratio.
        """
        opts = HostOptions(host, user, profile, fingerprint, insecure)

        async def go() -> list[str]:
            async with connect(target, encodings=encodings, host=opts, timeout=timeout) as vnc:
                result = await vnc.info(seconds)
                lines: list[str] = result.lines()
                return lines

        for line in run(go()):
            typer.echo(line)

    @app.command("screenshot")
    def screenshot_cmd(target: TargetArg,
                       file: Annotated[Path, typer.Argument(help="PNG file to write")],
                       encodings: EncodingsOpt = None, host: HostOpt = None,
                       user: UserOpt = None, profile: ProfileOpt = None,
                       fingerprint: FingerprintOpt = None, insecure: InsecureOpt = False,
                       timeout: TimeoutOpt = 10.0) -> None:
        """Save one full frame of the console as PNG (written atomically)."""
        opts = HostOptions(host, user, profile, fingerprint, insecure)

        async def go() -> tuple[int, int]:
            async with connect(target, encodings=encodings, host=opts, timeout=timeout) as vnc:
                await vnc.save_png(file)
                return int(vnc.width), int(vnc.height)

        w, h = run(go())
        typer.echo(f"{file}: {w}x{h}")

    @app.command("type")
    def type_cmd(target: TargetArg,
                 text: Annotated[str, typer.Argument(help="text to type ('\\n' is not special;"
                                                           " use --enter)")],
                 enter: Annotated[bool, typer.Option("--enter", help="press Return after")
                                  ] = False,
                 delay: Annotated[float, typer.Option(
                     "--delay", help="seconds between characters")] = 0.01,
                 host: HostOpt = None, user: UserOpt = None, profile: ProfileOpt = None,
                 fingerprint: FingerprintOpt = None, insecure: InsecureOpt = False,
                 timeout: TimeoutOpt = 10.0) -> None:
        """Type TEXT on the console, one key event per character."""
        opts = HostOptions(host, user, profile, fingerprint, insecure)

        async def go() -> None:
            async with connect(target, encodings=None, host=opts, timeout=timeout) as vnc:
                await vnc.type_text(text + ("\n" if enter else ""), delay=delay)
                await _settle(vnc)

        run(go())

    @app.command("key")
    def key_cmd(target: TargetArg,
                combos: Annotated[list[str], typer.Argument(
                    help="key combos pressed in turn: ctrl-alt-del, shift-a, Return, F12, "
                         "alt-F4 (X keysym names; aliases ctrl, alt, shift, del, esc)")],
                delay: Annotated[float, typer.Option(
                    "--delay", help="seconds between combos")] = 0.05,
                host: HostOpt = None, user: UserOpt = None, profile: ProfileOpt = None,
                fingerprint: FingerprintOpt = None, insecure: InsecureOpt = False,
                timeout: TimeoutOpt = 10.0) -> None:
        """Press key combos on the console."""
        from ..net.keysyms import parse_combo

        for combo in combos:
            parse_combo(combo)  # reject bad names before connecting
        opts = HostOptions(host, user, profile, fingerprint, insecure)

        async def go() -> None:
            async with connect(target, encodings=None, host=opts, timeout=timeout) as vnc:
                await vnc.press(*combos, delay=delay)
                await _settle(vnc)

        run(go())


async def _settle(vnc: Any) -> None:
    """Make sure the server has read our key events before we hang up.

    A FramebufferUpdateRequest is answered only after the events sent before it
    were processed, so one full update is a cheap round trip.
    """
    await vnc.screenshot()
