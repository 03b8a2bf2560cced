"""The simulated host's virtual terminal, like XenServer's ``vncterm``.

A text terminal (``pyte``) drawn with the Linux console's 8x16 PSF font and
served over RFB 3.3 and as a raw vt100 stream, with a scripted guest behind it
(boot log, login prompt, a tiny root shell).  :class:`VirtualTerminal` is the
``ConsoleBackend`` the simulator starts for PV guests and the control domain.
"""

from .font import FontError, PsfFont, load_console_font, parse_psf, read_font_file
from .guest import GuestState, ScriptedGuest
from .keys import KeyboardState
from .screen import TerminalScreen, damage_rects, render_text
from .server import DESKTOP_NAME, VirtualTerminal

__all__ = [
    "DESKTOP_NAME",
    "FontError",
    "GuestState",
    "KeyboardState",
    "PsfFont",
    "ScriptedGuest",
    "TerminalScreen",
    "VirtualTerminal",
    "damage_rects",
    "load_console_font",
    "parse_psf",
    "read_font_file",
    "render_text",
]
