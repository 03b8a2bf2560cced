"""Power actions from the pages: ``POST /vms/{uuid}/power/{action}``.

What each action does (the XenAPI call, the power states it is allowed in, waiting for
the state it leads to) is :mod:`xcpconsole.xapi.power`'s one table and
:func:`~xcpconsole.xapi.power.change_power`; this module adds what the pages need: a
label, whether to confirm first, and the two forced forms as buttons of their own.

Every call is made with the signed-in user's own session, so the host decides who may
do what (its refusal, ``RBAC_PERMISSION_DENIED``, comes back as a message).  Like the
console token endpoint it needs the page's CSRF header; the Origin check is the
middleware's.  Buttons are rendered for every action and shown by the page's CSS for
the power states the action applies to (``data-when``), so a page that learns a new
power state only changes one attribute.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from aiohttp import web

from ...errors import AmbiguousError, AuthError, NotFoundError, XapiError, XcpConsoleError
from ...xapi.power import DEFAULT_TIMEOUT, POWER_ACTIONS, change_power
from ..gateway import GATEWAY
from ..pages import Markup, fragment, join
from .common import session_lost

if TYPE_CHECKING:
    from ...xapi import VmInfo, XapiSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PowerButton:
    """One button of the pages: an action of :data:`POWER_ACTIONS`, maybe forced."""

    name: str  # in the URL and the page's data-action
    label: str
    action: str  # the key of POWER_ACTIONS
    force: bool = False
    #: destructive actions are confirmed first; the sentence says what happens
    warning: str = ""
    #: makes a stopped VM run: offered where its console would be
    primary: bool = False
    doing: str = ""  # "Starting", shown while the call runs

    @property
    def states(self) -> tuple[str, ...]:
        """The power states the host allows it in (from the one table)."""
        return POWER_ACTIONS[self.action].call(self.force).allowed


#: The buttons, in the order the pages show them.
ACTIONS: dict[str, PowerButton] = {b.name: b for b in (
    PowerButton("start", "Start", "start", primary=True, doing="Starting"),
    PowerButton("resume", "Resume", "resume", primary=True, doing="Resuming"),
    PowerButton("unpause", "Unpause", "unpause", primary=True, doing="Unpausing"),
    PowerButton("shutdown", "Shut down", "shutdown", doing="Shutting down",
                warning="The guest is asked to shut down."),
    PowerButton("reboot", "Reboot", "reboot", doing="Rebooting",
                warning="The guest is asked to restart."),
    PowerButton("suspend", "Suspend", "suspend", doing="Suspending",
                warning="Its memory is saved to disk and it stops running until resumed."),
    PowerButton("pause", "Pause", "pause", doing="Pausing"),
    PowerButton("force-shutdown", "Force shutdown", "shutdown", force=True,
                doing="Forcing a shutdown of",
                warning="Like pulling the plug: unsaved work in the VM is lost."),
    PowerButton("force-reboot", "Force reboot", "reboot", force=True,
                doing="Forcing a reboot of",
                warning="Like pressing reset: unsaved work in the VM is lost."),
)}


def actions_for(power_state: str) -> list[str]:
    """The actions that apply to a VM in ``power_state``, in the order of the buttons."""
    return [a.name for a in ACTIONS.values() if power_state in a.states]


def power_buttons(actions: Iterable[PowerButton] = ACTIONS.values()) -> Markup:
    return join((fragment("power_button.html", action=a.name, label=a.label,
                          when=" ".join(a.states), warning=a.warning, doing=a.doing)
                 for a in actions), "\n")


def primary_buttons() -> Markup:
    return power_buttons(a for a in ACTIONS.values() if a.primary)


def _error(status: int, message: str, code: str = "") -> web.Response:
    return web.json_response({"error": message, "code": code}, status=status)


def _refusal(button: PowerButton, exc: XcpConsoleError) -> web.Response:
    """The host's no (or change_power's), as the page shows it."""
    what = button.label.lower()
    if isinstance(exc, AuthError):
        return _error(403, f"The host refused to {what} this VM for your account: {exc}",
                      "RBAC_PERMISSION_DENIED")
    if isinstance(exc, NotFoundError | AmbiguousError):
        return _error(404, "No such VM is visible to you.")
    if isinstance(exc, XapiError):
        if exc.code == "VM_BAD_POWER_STATE" and len(exc.params) >= 3:
            needed = exc.params[1].lower().replace(", ", " or ")
            return _error(409, f"Cannot {what} this VM: it is {exc.params[2].lower()} "
                               f"(that needs it {needed}).", exc.code)
        text = str(exc)
        return _error(409, text[:1].upper() + text[1:], exc.code)
    # the time is up (the host carries on), a task cancelled, the host unreachable
    return _error(504, f"{button.doing or button.label} this VM: {exc}")


async def post_power(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    sess = gw.session_of(request)
    if sess is None:
        return _error(401, "signed out")
    if not sess.check_csrf(request.headers.get("X-CSRF-Token")):
        return _error(403, "bad CSRF token")
    uuid = request.match_info["uuid"]
    button = ACTIONS.get(request.match_info["action"])
    if button is None:
        return _error(404, "no such power action")
    what = f"{button.name} VM {uuid}"
    try:
        vm = await sess.xapi.find_vm(uuid)
        # The real session and record behind HostSession / HostVm (the test fakes
        # answer the same calls and have the same fields).
        result = await change_power(cast("XapiSession", sess.xapi), cast("VmInfo", vm),
                                    button.action, force=button.force,
                                    timeout=DEFAULT_TIMEOUT)
    except XcpConsoleError as exc:
        if session_lost(exc):
            raise  # the middleware signs the user out
        log.info("%s: power %s -> %s", sess.user, what, exc)
        return _refusal(button, exc)
    state = result.power_state
    log.info("%s: power %s -> %s", sess.user, what, state)
    return web.json_response({"ok": True, "action": button.name, "power_state": state,
                              "actions": actions_for(state) if state else None})
