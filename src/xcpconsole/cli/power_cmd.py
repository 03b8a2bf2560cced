"""Power commands: ``start``, ``shutdown``, ``reboot``, ``suspend``, ``resume``, ``pause``
and ``unpause``.

A thin Typer layer over :func:`xcpconsole.xapi.power.change_power`, where the table of
calls, allowed states and target states lives; progress goes to stderr, stdout stays
empty.  Heavy imports happen inside the command so ``xcpconsole --help`` stays fast.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated

import typer

from .common import (
    FingerprintOpt,
    HostOpt,
    HostOptions,
    InsecureOpt,
    ProfileOpt,
    UserOpt,
    run,
    xapi_session,
)

#: command -> help; the same names as ``xapi.power.POWER_ACTIONS`` (a test checks)
ACTIONS: dict[str, str] = {
    "start": "Start VM (halted -> running) and wait until it runs.",
    "shutdown": "Shut VM down (running -> halted); --force: hard shutdown, also of a "
                "paused or suspended VM.",
    "reboot": "Reboot VM; --force: hard reboot, also of a paused VM.",
    "suspend": "Suspend VM to disk (running -> suspended).",
    "resume": "Resume a suspended VM (suspended -> running).",
    "pause": "Pause VM (running -> paused).",
    "unpause": "Unpause a paused VM (paused -> running).",
}
#: the actions with a hard form
FORCEABLE = ("shutdown", "reboot")
#: = ``xapi.power.DEFAULT_TIMEOUT`` (not imported here: it would load the XenAPI SDK)
DEFAULT_TIMEOUT = 300.0

VmArg = Annotated[str, typer.Argument(help="VM name-label or uuid", show_default=False)]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="hard shutdown / hard reboot: do not ask the guest")]
NoWaitOpt = Annotated[bool, typer.Option(
    "--no-wait", help="return once the host has the request, without waiting")]
WaitTimeoutOpt = Annotated[float, typer.Option(
    "--timeout", metavar="SECONDS",
    help="give up after this long, all told: sign-in, the request and the wait (exit code "
         "1); no network step waits longer than 10 s unless this is shorter")]


def register(app: typer.Typer) -> None:
    """Add the power commands to the ``xcpconsole`` app."""
    for action, text in ACTIONS.items():
        app.command(action, help=text)(_command(action))


def _command(action: str) -> Callable[..., None]:
    if action in FORCEABLE:
        def forceable(vm: VmArg, force: ForceOpt = False, no_wait: NoWaitOpt = False,
                      timeout: WaitTimeoutOpt = DEFAULT_TIMEOUT, host: HostOpt = None,
                      user: UserOpt = None, profile: ProfileOpt = None,
                      fingerprint: FingerprintOpt = None, insecure: InsecureOpt = False
                      ) -> None:
            opts = HostOptions(host, user, profile, fingerprint, insecure)
            _change(action, vm, force=force, wait=not no_wait, timeout=timeout, opts=opts)

        return forceable

    def plain(vm: VmArg, no_wait: NoWaitOpt = False,
              timeout: WaitTimeoutOpt = DEFAULT_TIMEOUT, host: HostOpt = None,
              user: UserOpt = None, profile: ProfileOpt = None,
              fingerprint: FingerprintOpt = None, insecure: InsecureOpt = False) -> None:
        opts = HostOptions(host, user, profile, fingerprint, insecure)
        _change(action, vm, force=False, wait=not no_wait, timeout=timeout, opts=opts)

    return plain


def _say(text: str) -> None:
    print(f"xcpconsole: {text}", file=sys.stderr, flush=True)


def _change(action: str, vm: str, *, force: bool, wait: bool, timeout: float,
            opts: HostOptions) -> None:
    from ..errors import UsageError

    if not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"--timeout must be a positive number of seconds, not {timeout:g}")
    import time

    from ..errors import NetworkError
    from ..xapi.power import change_power

    # One --timeout for the whole command: each network step of the sign-in gets at most
    # the usual step limit, and the request and the wait get whatever is left of it.
    deadline = time.monotonic() + timeout
    opts = replace(opts, timeout=min(opts.timeout, timeout))

    async def go() -> None:
        async with xapi_session(opts) as xapi:
            if time.monotonic() >= deadline:
                raise NetworkError(f"{action}: the sign-in took all of --timeout {timeout:g} s")
            await change_power(xapi, vm, action, force=force, wait=wait, timeout=timeout,
                               used=timeout - (deadline - time.monotonic()), progress=_say)

    run(go())
