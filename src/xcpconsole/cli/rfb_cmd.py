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
from typing import Annotated, Any

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
    prompt_password,
    run,
    visible,
    xapi_session,
)
from .imagefile import DEFAULT_QUALITY


def _check_encodings(value: str | None) -> str | None:
    """A bad ``--encodings`` is a usage error (exit 2), found before connecting."""
    if value is not None:
        from ..errors import XcpConsoleError
        from ..net.vnc import parse_encodings

        try:
            parse_encodings(value)
        except XcpConsoleError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


TargetArg = Annotated[str, typer.Argument(
    metavar="TARGET",
    help="VM name or uuid, or a VNC address: vnc://HOST:PORT, HOST:DISPLAY, HOST::PORT, "
         "unix:/path", show_default=False)]
EncodingsOpt = Annotated[str | None, typer.Option(
    "--encodings", "-e", metavar="LIST", callback=_check_encodings,
    help="Encodings to ask for, best first, e.g. 'zrle,hextile,raw' (also jpeg=0-9 and "
         "compress=0-9 for Tight). Default: copyrect,tight,zrle,hextile,zlib,rre,raw — "
         "lossless Tight compresses best, ZRLE is what every server speaks.")]


@asynccontextmanager
async def connect(target: str, *, encodings: str | None, host: HostOptions,
                  timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[Any]:
    """Open an RFB session on TARGET (address or VM) and close everything afterwards."""
    from ..errors import AuthError
    from ..net.vnc import looks_like_target, open_vnc

    password = os.environ.get("VNC_PASSWORD")
    if looks_like_target(target):
        try:
            client = await open_vnc(target, password=password, encodings=encodings,
                                    timeout=timeout)
        except AuthError as exc:
            if password is not None:
                raise
            if not sys.stdin.isatty():
                raise _password_hint(exc) from None
            password = prompt_password("VNC password")()
            client = await open_vnc(target, password=password, encodings=encodings,
                                    timeout=timeout)
        async with client:
            yield client
        return

    from ..net.tunnel import open_tunnel

    async with xapi_session(host, timeout) as session:
        console = await session.find_console(target, "rfb")
        streams = await open_tunnel(session, console, timeout=timeout)
        try:
            client = await open_vnc(streams, password=password, encodings=encodings,
                                    timeout=timeout)
        except AuthError as exc:
            raise exc if password is not None else _password_hint(exc) from None
        async with client:
            yield client


def _password_hint(exc: Exception) -> Exception:
    """The missing-password error, saying where a password comes from."""
    from ..errors import AuthError

    return AuthError(f"{exc}: set VNC_PASSWORD (it is never taken from the command line)")


def register(app: typer.Typer) -> None:
    """Add ``info``, ``screenshot``, ``type`` and ``key`` to the ``xcpconsole`` app."""

    @app.command("info")
    def info_cmd(target: TargetArg,
                 seconds: Annotated[float, typer.Option(
                     "--seconds", "-s", metavar="SECONDS", min=0,
                     help="watch updates this long and print statistics")] = 0.0,
                 as_json: Annotated[bool, typer.Option(
                     "--json", help="print JSON (the same facts and figures)")] = False,
                 encodings: EncodingsOpt = None, host: HostOpt = None, user: UserOpt = None,
                 profile: ProfileOpt = None, fingerprint: FingerprintOpt = None,
                 insecure: InsecureOpt = False, timeout: TimeoutOpt = 10.0) -> None:
        """Show RFB version, security, name, size, pixel format, encodings (and statistics).

        With --seconds N: one full frame, then updates for N seconds, and the figures of
        the 2010 viewer and more: updates and updates/s, rectangles per encoding with
        pseudo-rectangles apart, Tight JPEG vs lossless, pixel bytes vs wire bytes and
        their ratio, bytes per second.
        """
        import json

        opts = HostOptions(host, user, profile, fingerprint, insecure)

        async def go() -> Any:
            async with connect(target, encodings=encodings, host=opts, timeout=timeout) as vnc:
                return await vnc.info(seconds)

        result = run(go())
        if as_json:
            typer.echo(json.dumps(result.to_json(), indent=2))
            return
        for line in result.lines():
            typer.echo(visible(line))

    @app.command("screenshot")
    def screenshot_cmd(target: TargetArg,
                       file: Annotated[str, typer.Argument(
                           metavar="FILE", show_default=False,
                           help="where to save it: .png, .jpg/.jpeg, .ppm or .webp "
                                "(the format follows the name), - for PNG on stdout")],
                       quality: Annotated[int | None, typer.Option(
                           "--quality", "-q", metavar="1-100", min=1, max=100,
                           show_default=False,
                           help=f"JPEG / WebP quality (default {DEFAULT_QUALITY})")] = None,
                       encodings: EncodingsOpt = None, host: HostOpt = None,
                       user: UserOpt = None, profile: ProfileOpt = None,
                       fingerprint: FingerprintOpt = None, insecure: InsecureOpt = False,
                       timeout: TimeoutOpt = DEFAULT_TIMEOUT) -> None:
        """Save one full frame of the console as a picture (written atomically).

        The file gets the mode your umask gives, like any new file.
        """
        from .imagefile import (
            STDOUT,
            check_destination,
            current_umask,
            encode,
            image_format,
            write_image,
        )

        fmt = image_format(file)
        check_destination(file, fmt, quality)
        umask = current_umask()
        opts = HostOptions(host, user, profile, fingerprint, insecure, timeout)

        async def go() -> tuple[Any, int, int]:
            async with connect(target, encodings=encodings, host=opts, timeout=timeout) as vnc:
                rgb = await vnc.screenshot()
                return rgb, int(vnc.width), int(vnc.height)

        rgb, w, h = run(go())
        write_image(file, encode(rgb, fmt, quality), umask)
        print(f"{'stdout' if file == STDOUT else file}: {w}x{h} {fmt}",
              file=sys.stderr if file == STDOUT else sys.stdout)

    @app.command("type")
    def type_cmd(target: TargetArg,
                 text: Annotated[str, typer.Argument(
                     metavar="TEXT", show_default=False,
                     help="text to type ('\\n' is not special; use --enter)")],
                 enter: Annotated[bool, typer.Option("--enter", help="press Return after")
                                  ] = False,
                 delay: Annotated[float, typer.Option(
                     "--delay", metavar="SECONDS", min=0,
                     help="pause between characters")] = 0.01,
                 host: HostOpt = None, user: UserOpt = None, profile: ProfileOpt = None,
                 fingerprint: FingerprintOpt = None, insecure: InsecureOpt = False,
                 timeout: TimeoutOpt = DEFAULT_TIMEOUT) -> None:
        """Type TEXT on the console, one key event per character."""
        opts = HostOptions(host, user, profile, fingerprint, insecure, timeout)

        async def go() -> None:
            async with connect(target, encodings=None, host=opts, timeout=timeout) as vnc:
                await vnc.type_text(text + ("\n" if enter else ""), delay=delay)
                await _settle(vnc)

        run(go())

    @app.command("key")
    def key_cmd(target: TargetArg,
                combos: Annotated[list[str], typer.Argument(
                    metavar="COMBO", show_default=False,
                    help="key combos pressed in turn: ctrl-alt-del, shift-a, Return, F12, "
                         "alt-F4 (X keysym names; aliases ctrl, alt, shift, del, esc)")],
                delay: Annotated[float, typer.Option(
                    "--delay", metavar="SECONDS", min=0, help="pause between combos")] = 0.05,
                host: HostOpt = None, user: UserOpt = None, profile: ProfileOpt = None,
                fingerprint: FingerprintOpt = None, insecure: InsecureOpt = False,
                timeout: TimeoutOpt = DEFAULT_TIMEOUT) -> None:
        """Press key combos on the console."""
        from ..net.keysyms import parse_combo

        for combo in combos:
            parse_combo(combo)  # reject bad names before connecting
        opts = HostOptions(host, user, profile, fingerprint, insecure, timeout)

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
