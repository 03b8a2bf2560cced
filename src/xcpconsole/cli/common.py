"""Connection options shared by every command that talks to a host.

One definition so ``vms``, ``proxy``, ``screenshot``... all accept the same
``--host/--user/--profile/--fingerprint/--insecure`` and read the same
environment.  There is deliberately no ``--password``: argv is visible to
every user of the machine (``ps``); the password comes from ``XCP_PASSWORD``,
a private profile, or a prompt.
"""

from __future__ import annotations

import asyncio
import getpass
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from ..settings import HostSettings
    from ..xapi import XapiSession

T = TypeVar("T")

HostOpt = Annotated[str | None, typer.Option(
    "--host", help="https://HOST[:PORT] of the host or pool master (or XCP_HOST)",
    show_default=False)]
UserOpt = Annotated[str | None, typer.Option(
    "--user", help="XenAPI user (or XCP_USER; default root). The password comes from "
                   "XCP_PASSWORD or a prompt, never from the command line.",
    show_default=False)]
ProfileOpt = Annotated[str | None, typer.Option(
    "--profile", help="profile of ~/.config/xcpconsole/config.toml", show_default=False)]
FingerprintOpt = Annotated[str | None, typer.Option(
    "--fingerprint", help="pin the host certificate: its SHA-256 in hex (or XCP_FINGERPRINT)",
    show_default=False)]
InsecureOpt = Annotated[bool, typer.Option(
    "--insecure", help="do not check the host certificate (warns every time; testing only)")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="seconds per network step")]


@dataclass(frozen=True)
class HostOptions:
    """The connection options as given on the command line."""

    host: str | None = None
    user: str | None = None
    profile: str | None = None
    fingerprint: str | None = None
    insecure: bool = False


def prompt_password(what: str = "XenAPI password") -> Callable[[], str]:
    """A prompt for ``load_settings``; refuses (AuthError) when there is no terminal."""
    def prompt() -> str:
        from ..errors import AuthError

        if not sys.stdin.isatty():
            raise AuthError(f"{what} needed: set XCP_PASSWORD (no terminal to ask)")
        return getpass.getpass(f"{what}: ")

    return prompt


def ask_on_terminal(question: str) -> bool:
    """The trust-on-first-use question on stderr, the answer from stdin; no terminal: no."""
    tty = sys.stdin
    if tty is None or not tty.isatty():
        return False
    sys.stderr.write(question)
    sys.stderr.flush()
    answer = tty.readline()
    return answer.strip().lower() in ("y", "yes")


def warn_on_stderr(message: str) -> None:
    """A security warning (``--insecure``) as one ``xcpconsole: WARNING:`` line on stderr."""
    print(f"xcpconsole: WARNING: {message}", file=sys.stderr)


def host_settings(opts: HostOptions) -> HostSettings:
    """Flags + environment + profile -> HostSettings (prompting for a password if needed)."""
    from ..settings import load_settings

    return load_settings(host=opts.host, user=opts.user, profile=opts.profile,
                         fingerprint=opts.fingerprint, insecure=opts.insecure,
                         password_prompt=prompt_password(), confirm=ask_on_terminal,
                         warn=warn_on_stderr)


@asynccontextmanager
async def xapi_session(opts: HostOptions | HostSettings) -> AsyncIterator[XapiSession]:
    """Log in once for the command, log out at the end whatever happens."""
    from ..settings import HostSettings
    from ..xapi import XapiSession

    settings = opts if isinstance(opts, HostSettings) else host_settings(opts)
    session = await XapiSession.login(settings)
    try:
        yield session
    finally:
        await asyncio.shield(session.logout())


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` where SIGTERM behaves like Ctrl-C (clean-up runs, exit 130)."""
    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        return asyncio.run(coro)
    finally:
        signal.signal(signal.SIGTERM, previous)


def install_stop_signals(stop: asyncio.Event) -> None:
    """Ctrl-C / SIGTERM set ``stop`` instead of interrupting (for long-running commands)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def remove_stop_signals() -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)


def print_table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A plain table on stdout (rich, no box; full width when piped)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    # names and fingerprints are data: no markup ("[b]"), no emoji codes (":CD:" in hex)
    Console(width=None if sys.stdout.isatty() else 200, highlight=False, markup=False,
            emoji=False).print(table)
