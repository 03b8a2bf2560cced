"""Connection options shared by every command that talks to a host, and how commands run.

One definition so ``vms``, ``proxy``, ``screenshot``... all accept the same
``--host/--user/--profile/--fingerprint/--insecure/--timeout`` and read the same
environment.  There is deliberately no ``--password``: argv is visible to
every user of the machine (``ps``); the password comes from ``XCP_PASSWORD``,
a private profile, or a prompt (asked after the host's certificate passed).

:func:`run` runs a command's coroutine so that Ctrl-C and SIGTERM always end it
within a second, even while a XenAPI call is stuck in a worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import getpass
import logging
import os
import signal
import sys
import threading
import unicodedata
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from ..settings import HostSettings
    from ..xapi import XapiSession

T = TypeVar("T")

#: seconds each network step may take unless ``--timeout`` says otherwise
DEFAULT_TIMEOUT = 10.0
#: after Ctrl-C / SIGTERM: seconds the command gets to clean up before it is abandoned
STOP_GRACE = 0.8

HostOpt = Annotated[str | None, typer.Option(
    "--host", metavar="URL", help="https://HOST[:PORT] of the host or pool master "
                                  "(or XCP_HOST)", show_default=False)]
UserOpt = Annotated[str | None, typer.Option(
    "--user", metavar="NAME", help="XenAPI user (or XCP_USER; default root). The password "
                                   "comes from XCP_PASSWORD or a prompt, never from the "
                                   "command line.", show_default=False)]
ProfileOpt = Annotated[str | None, typer.Option(
    "--profile", metavar="NAME", help="profile of ~/.config/xcpconsole/config.toml",
    show_default=False)]
FingerprintOpt = Annotated[str | None, typer.Option(
    "--fingerprint", metavar="SHA256",
    help="pin the host certificate: its SHA-256 as openssl or the host prints it "
         "(or XCP_FINGERPRINT)", show_default=False)]
InsecureOpt = Annotated[bool, typer.Option(
    "--insecure", help="do not check the host certificate (warns every time; testing only)")]
TimeoutOpt = Annotated[float, typer.Option(
    "--timeout", metavar="SECONDS", min=0.1,
    help="how long each network step may take: connect, TLS, login, each XenAPI call, "
         "the console tunnel")]


def one_of(*choices: str) -> Callable[[str], str]:
    """A Typer option callback refusing anything but ``choices`` (a usage error: exit 2)."""
    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


@dataclass(frozen=True)
class HostOptions:
    """The connection options as given on the command line."""

    host: str | None = None
    user: str | None = None
    profile: str | None = None
    fingerprint: str | None = None
    insecure: bool = False
    timeout: float = DEFAULT_TIMEOUT


class Interrupted(Exception):
    """Ctrl-C or SIGTERM ended the command; ``main`` prints it and exits 128 + signal."""

    def __init__(self, signum: int) -> None:
        self.exit_code = 128 + signum
        super().__init__(_stop_message(signum))


def _stop_message(signum: int) -> str:
    if signum == signal.SIGINT:
        return "interrupted (Ctrl-C)"
    return f"stopped by {signal.Signals(signum).name}"


# -- the terminal -------------------------------------------------------------------------
_prompting = threading.Event()  # a prompt waits on the terminal (its line is unfinished)


def prompt_password(what: str = "XenAPI password") -> Callable[[], str]:
    """A password prompt; refuses (AuthError) when there is no terminal to ask."""
    def prompt() -> str:
        from ..errors import AuthError

        hint = "VNC_PASSWORD" if what.startswith("VNC") else "XCP_PASSWORD"
        if sys.stdin is None or not sys.stdin.isatty():
            raise AuthError(f"{what} needed: set {hint} (no terminal to ask)")
        _prompting.set()
        try:
            return getpass.getpass(f"{what}: ")
        except EOFError:
            raise AuthError(f"{what} needed: none typed (or set {hint})") from None
        finally:
            _prompting.clear()

    return prompt


def ask_on_terminal(question: str) -> bool:
    """The trust-on-first-use question on stderr, the answer from stdin; no terminal: no."""
    tty = sys.stdin
    if tty is None or not tty.isatty():
        return False
    sys.stderr.write(question)
    sys.stderr.flush()
    _prompting.set()
    try:
        answer = tty.readline()
    finally:
        _prompting.clear()
    return answer.strip().lower() in ("y", "yes")


def warn_on_stderr(message: str) -> None:
    """A security warning (``--insecure``) as one ``xcpconsole: WARNING:`` line on stderr."""
    print(f"xcpconsole: WARNING: {message}", file=sys.stderr)


def _terminal_state() -> Callable[[], None]:
    """A function that puts the terminal back as it is now (a prompt left it without echo)."""
    try:
        import termios

        if sys.stdin is None or not sys.stdin.isatty():
            return lambda: None
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError):
        return lambda: None

    def restore() -> None:
        with suppress(OSError, termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    return restore


# -- settings and the session ---------------------------------------------------------------
def host_settings(opts: HostOptions) -> HostSettings:
    """Flags + environment + profile -> HostSettings (a missing password is asked for later,
    when the login needs it: after the trust question)."""
    from ..settings import load_settings

    return load_settings(host=opts.host, user=opts.user, profile=opts.profile,
                         fingerprint=opts.fingerprint, insecure=opts.insecure,
                         password_prompt=prompt_password(), confirm=ask_on_terminal,
                         warn=warn_on_stderr)


@asynccontextmanager
async def xapi_session(opts: HostOptions | HostSettings,
                       timeout: float | None = None) -> AsyncIterator[XapiSession]:
    """Log in once for the command, log out at the end whatever happens.

    ``timeout`` (default: ``opts.timeout``) bounds each network step of the login and of
    every call; the logout gets as long, or a moment after Ctrl-C.
    """
    from ..settings import HostSettings
    from ..xapi import XapiSession

    if timeout is None:
        timeout = opts.timeout if isinstance(opts, HostOptions) else DEFAULT_TIMEOUT
    settings = opts if isinstance(opts, HostSettings) else host_settings(opts)
    session = await XapiSession.login(settings, timeout=timeout)
    try:
        yield session
    except asyncio.CancelledError:
        await _logout(session, STOP_GRACE / 2)
        raise
    except BaseException:
        await _logout(session, timeout)
        raise
    else:
        await _logout(session, timeout)


async def _logout(session: XapiSession, within: float) -> None:
    """Best effort: a host that stopped answering must not hold the command."""
    with suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(session.logout()), within)


# -- running a command ----------------------------------------------------------------------
class DaemonThreadExecutor(concurrent.futures.ThreadPoolExecutor):
    """The event loop's default executor (``asyncio.to_thread``), one daemon thread per call.

    The XenAPI SDK blocks in its thread; a call stuck on a silent host must neither
    delay the exit after Ctrl-C (a ThreadPoolExecutor joins its threads at exit) nor
    keep the process alive.  Shutting down does not wait for running calls.
    """

    def submit(self, fn: Callable[..., T], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=work, name="xcpconsole-call", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to join: the threads are daemons and end with their call."""


class _Stopper:
    """What Ctrl-C / SIGTERM do to the running command (see :func:`run`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self.loop = loop
        self.task = task
        self.signum: int | None = None
        self.graceful: asyncio.Event | None = None
        self.asked_gracefully = False
        self.abandoned = False

    def on_signal(self, signum: int) -> None:
        if self.signum is not None:  # a second Ctrl-C: now
            self.abandon()
            return
        self.signum = signum
        if self.graceful is not None and not self.graceful.is_set():
            self.graceful.set()
            self.asked_gracefully = True
            self.loop.call_later(STOP_GRACE / 2, self.task.cancel)
        else:
            self.task.cancel()
        self.loop.call_later(STOP_GRACE, self.abandon)

    def abandon(self) -> None:
        if not self.task.done():
            self.abandoned = True
            self.loop.stop()


_stopper: _Stopper | None = None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; Ctrl-C and SIGTERM end it within :data:`STOP_GRACE`.

    The first signal cancels the coroutine (or sets the event of
    :func:`install_stop_signals`, for a server that stops cleanly), so its clean-up
    runs; what is still running after the grace is abandoned.  Raises
    :class:`Interrupted` unless the command stopped cleanly on its event.
    """
    global _stopper
    loop = asyncio.new_event_loop()
    loop.set_default_executor(DaemonThreadExecutor())
    task = loop.create_task(coro)
    stopper = _Stopper(loop, task)
    restore_terminal = _terminal_state()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopper.on_signal, sig)
    _stopper = stopper
    asyncio.set_event_loop(loop)
    try:
        try:
            result = loop.run_until_complete(task)
        except BaseException:
            if stopper.signum is None:
                raise
            result = None
        if stopper.signum is not None and not (stopper.asked_gracefully and task.done()
                                               and not task.cancelled()
                                               and task.exception() is None):
            raise Interrupted(stopper.signum)
        return result  # type: ignore[return-value]
    except Interrupted as exc:
        restore_terminal()
        if _prompting.is_set():
            print(file=sys.stderr)
        if stopper.abandoned:  # the loop still has the stuck work: do not wait for it
            print(f"xcpconsole: {exc}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(exc.exit_code)
        raise
    finally:
        _stopper = None
        asyncio.set_event_loop(None)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if not stopper.abandoned:
            _close_loop(loop)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Like the end of ``asyncio.run``, but without waiting for threads."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        loop.run_until_complete(asyncio.wait(pending, timeout=STOP_GRACE))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def install_stop_signals(stop: asyncio.Event) -> None:
    """Ctrl-C / SIGTERM set ``stop`` instead of cancelling (a server that stops cleanly);
    if the command has not ended a moment later, it is cancelled all the same."""
    if _stopper is not None and _stopper.loop is asyncio.get_running_loop():
        _stopper.graceful = stop
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def remove_stop_signals() -> None:
    """Back to cancelling on Ctrl-C / SIGTERM."""
    if _stopper is not None and _stopper.loop is asyncio.get_running_loop():
        _stopper.graceful = None
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)


def check_can_listen(host: str, port: int) -> None:
    """NetworkError now if ``host:port`` is taken, for a server that binds only after
    slower steps (a login, a password prompt); port 0 is always free."""
    import socket

    from ..address import format_hostport
    from ..errors import NetworkError

    if port == 0:
        return
    try:
        for family, kind, proto, _name, addr in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(addr)
    except OSError as exc:
        raise NetworkError(f"cannot listen on {format_hostport(host, port)}: "
                           f"{exc.strerror or exc}") from None


# -- output -----------------------------------------------------------------------------------
def visible(text: str) -> str:
    """``text`` from a host or a VNC server, safe to print on a terminal.

    Control characters (C0, DEL, C1: ESC sequences that retitle the window or move the
    cursor), bidi overrides and other invisible format characters (``Cf``), and line or
    paragraph separators are shown as ``\\xNN`` / ``\\uNNNN`` instead of acting; a
    newline and a tab become ``\\n`` and ``\\t`` too, so one value stays on one line."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or unicodedata.category(ch) == "Zs":  # NBSP & co. too
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


class SafeFormatter(logging.Formatter):
    """Log lines whose message is :func:`visible`: a VM name or uuid from the host with
    a newline or an escape sequence cannot forge a line or act on the terminal (the
    traceback of one of our own bugs keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = visible(record.message)
        return super().formatMessage(record)


def log_lines(level: int, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s"
              ) -> None:
    """Log to stderr at ``level`` through :class:`SafeFormatter`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])


def print_table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A plain table on stdout: one-word headers, columns two spaces apart, no trailing
    spaces and nothing cut (so ``awk`` and ``cut`` work), values printed verbatim but for
    what a terminal would act on (:func:`visible`)."""
    rows = [tuple(visible(cell) for cell in row) for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    for row in (columns, *rows):
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print(line.rstrip())
