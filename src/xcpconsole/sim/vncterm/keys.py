"""RFB KeyEvents (X11 keysyms) to the bytes a terminal sends its guest.

A VNC client sends key presses and releases as keysyms; a tty wants bytes.
The client already applies Shift (it sends ``A``, not ``a`` + Shift), so only
Control and Alt are tracked here: Control turns letters into control codes,
Alt prefixes ESC (as xterm's metaSendsEscape).  Sans-I/O: one object per client.
"""

from __future__ import annotations

# X11 keysym values (X11/keysymdef.h)
XK_BACKSPACE = 0xFF08
XK_TAB = 0xFF09
XK_RETURN = 0xFF0D
XK_ESCAPE = 0xFF1B
XK_HOME = 0xFF50
XK_LEFT = 0xFF51
XK_UP = 0xFF52
XK_RIGHT = 0xFF53
XK_DOWN = 0xFF54
XK_PAGE_UP = 0xFF55
XK_PAGE_DOWN = 0xFF56
XK_END = 0xFF57
XK_INSERT = 0xFF63
XK_KP_ENTER = 0xFF8D
XK_DELETE = 0xFFFF
XK_SHIFT_L, XK_SHIFT_R = 0xFFE1, 0xFFE2
XK_CONTROL_L, XK_CONTROL_R = 0xFFE3, 0xFFE4
XK_META_L, XK_META_R = 0xFFE7, 0xFFE8
XK_ALT_L, XK_ALT_R = 0xFFE9, 0xFFEA

SPECIAL_KEYS: dict[int, bytes] = {
    XK_BACKSPACE: b"\x7f",  # what Linux consoles send for the Backspace key
    XK_TAB: b"\t",
    XK_RETURN: b"\r",
    XK_KP_ENTER: b"\r",
    XK_ESCAPE: b"\x1b",
    XK_UP: b"\x1b[A",
    XK_DOWN: b"\x1b[B",
    XK_RIGHT: b"\x1b[C",
    XK_LEFT: b"\x1b[D",
    XK_HOME: b"\x1b[1~",
    XK_INSERT: b"\x1b[2~",
    XK_DELETE: b"\x1b[3~",
    XK_END: b"\x1b[4~",
    XK_PAGE_UP: b"\x1b[5~",
    XK_PAGE_DOWN: b"\x1b[6~",
}
_CONTROL = (XK_CONTROL_L, XK_CONTROL_R)
_ALT = (XK_ALT_L, XK_ALT_R, XK_META_L, XK_META_R)
#: keysyms 0x01000000 + code point are Unicode characters (X11 convention)
_UNICODE_KEYSYM = 0x01000000


class KeyboardState:
    """Modifier state of one client; :meth:`key_event` returns the bytes to type."""

    def __init__(self) -> None:
        self.control = False
        self.alt = False

    def key_event(self, down: bool, keysym: int) -> bytes:
        if keysym in _CONTROL:
            self.control = down
            return b""
        if keysym in _ALT:
            self.alt = down
            return b""
        if not down:
            return b""
        data = self._bytes_for(keysym)
        if data and self.alt:
            data = b"\x1b" + data
        return data

    def _bytes_for(self, keysym: int) -> bytes:
        special = SPECIAL_KEYS.get(keysym)
        if special is not None:
            return special
        if 0x20 <= keysym <= 0x7E or 0xA0 <= keysym <= 0xFF:
            char = chr(keysym)
        elif _UNICODE_KEYSYM + 0xA0 <= keysym <= _UNICODE_KEYSYM + 0x10FFFF:
            char = chr(keysym - _UNICODE_KEYSYM)
        else:
            return b""  # function keys, Shift, Caps Lock...: nothing for a text console
        if self.control:
            code = ord(char.upper()) if char.isascii() else 0
            if 0x40 <= code <= 0x5F:  # @ A-Z [ \ ] ^ _
                return bytes([code & 0x1F])
            if char == " ":
                return b"\x00"
        return char.encode("utf-8", "replace")
