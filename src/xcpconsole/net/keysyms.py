"""X keysyms: names → numbers, characters → keysyms, and key combos like ``ctrl-alt-del``.

RFB KeyEvents carry X11 keysyms, whatever the server is (Xvnc, QEMU, vncterm).
Names are the X11 ones (``Return``, ``F12``, ``Page_Up``, ``adiaeresis``...)
plus a few short aliases people type (``ctrl``, ``del``, ``esc``, ``enter``).
Characters follow the X rules: Latin-1 characters are their own keysym, every
other Unicode character is ``0x01000000 + code point``.
"""

from __future__ import annotations

import re

from ..errors import XcpConsoleError

UNICODE_OFFSET = 0x01000000

# Printable ASCII 0x20..0x7e in order, then Latin-1 0xa0..0xff in order.
_ASCII_NAMES = (
    "space exclam quotedbl numbersign dollar percent ampersand apostrophe parenleft parenright "
    "asterisk plus comma minus period slash 0 1 2 3 4 5 6 7 8 9 colon semicolon less equal "
    "greater question at A B C D E F G H I J K L M N O P Q R S T U V W X Y Z bracketleft "
    "backslash bracketright asciicircum underscore grave a b c d e f g h i j k l m n o p q r s "
    "t u v w x y z braceleft bar braceright asciitilde"
)
_LATIN1_NAMES = (
    "nobreakspace exclamdown cent sterling currency yen brokenbar section diaeresis copyright "
    "ordfeminine guillemotleft notsign hyphen registered macron degree plusminus twosuperior "
    "threesuperior acute mu paragraph periodcentered cedilla onesuperior masculine "
    "guillemotright onequarter onehalf threequarters questiondown Agrave Aacute Acircumflex "
    "Atilde Adiaeresis Aring AE Ccedilla Egrave Eacute Ecircumflex Ediaeresis Igrave Iacute "
    "Icircumflex Idiaeresis ETH Ntilde Ograve Oacute Ocircumflex Otilde Odiaeresis multiply "
    "Oslash Ugrave Uacute Ucircumflex Udiaeresis Yacute THORN ssharp agrave aacute acircumflex "
    "atilde adiaeresis aring ae ccedilla egrave eacute ecircumflex ediaeresis igrave iacute "
    "icircumflex idiaeresis eth ntilde ograve oacute ocircumflex otilde odiaeresis division "
    "oslash ugrave uacute ucircumflex udiaeresis yacute thorn ydiaeresis"
)

_FUNCTION_KEYS = {
    "BackSpace": 0xFF08, "Tab": 0xFF09, "Linefeed": 0xFF0A, "Clear": 0xFF0B,
    "Return": 0xFF0D, "Pause": 0xFF13, "Scroll_Lock": 0xFF14, "Sys_Req": 0xFF15,
    "Escape": 0xFF1B, "Delete": 0xFFFF, "Multi_key": 0xFF20,
    "Home": 0xFF50, "Left": 0xFF51, "Up": 0xFF52, "Right": 0xFF53, "Down": 0xFF54,
    "Prior": 0xFF55, "Page_Up": 0xFF55, "Next": 0xFF56, "Page_Down": 0xFF56,
    "End": 0xFF57, "Begin": 0xFF58,
    "Select": 0xFF60, "Print": 0xFF61, "Execute": 0xFF62, "Insert": 0xFF63, "Undo": 0xFF65,
    "Redo": 0xFF66, "Menu": 0xFF67, "Find": 0xFF68, "Cancel": 0xFF69, "Help": 0xFF6A,
    "Break": 0xFF6B, "Mode_switch": 0xFF7E, "Num_Lock": 0xFF7F,
    "KP_Space": 0xFF80, "KP_Tab": 0xFF89, "KP_Enter": 0xFF8D, "KP_F1": 0xFF91,
    "KP_F2": 0xFF92, "KP_F3": 0xFF93, "KP_F4": 0xFF94, "KP_Home": 0xFF95, "KP_Left": 0xFF96,
    "KP_Up": 0xFF97, "KP_Right": 0xFF98, "KP_Down": 0xFF99, "KP_Prior": 0xFF9A,
    "KP_Page_Up": 0xFF9A, "KP_Next": 0xFF9B, "KP_Page_Down": 0xFF9B, "KP_End": 0xFF9C,
    "KP_Begin": 0xFF9D, "KP_Insert": 0xFF9E, "KP_Delete": 0xFF9F, "KP_Equal": 0xFFBD,
    "KP_Multiply": 0xFFAA, "KP_Add": 0xFFAB, "KP_Separator": 0xFFAC, "KP_Subtract": 0xFFAD,
    "KP_Decimal": 0xFFAE, "KP_Divide": 0xFFAF,
    "Shift_L": 0xFFE1, "Shift_R": 0xFFE2, "Control_L": 0xFFE3, "Control_R": 0xFFE4,
    "Caps_Lock": 0xFFE5, "Shift_Lock": 0xFFE6, "Meta_L": 0xFFE7, "Meta_R": 0xFFE8,
    "Alt_L": 0xFFE9, "Alt_R": 0xFFEA, "Super_L": 0xFFEB, "Super_R": 0xFFEC,
    "Hyper_L": 0xFFED, "Hyper_R": 0xFFEE, "ISO_Level3_Shift": 0xFE03,
    "ISO_Left_Tab": 0xFE20,
    "XF86PowerOff": 0x1008FF2A, "XF86Sleep": 0x1008FF2F, "XF86WakeUp": 0x1008FF2B,
}

#: Short names people type in combos; values are canonical X names.
ALIASES = {
    "ctrl": "Control_L", "control": "Control_L", "lctrl": "Control_L", "rctrl": "Control_R",
    "alt": "Alt_L", "lalt": "Alt_L", "ralt": "Alt_R", "altgr": "ISO_Level3_Shift",
    "shift": "Shift_L", "lshift": "Shift_L", "rshift": "Shift_R",
    "super": "Super_L", "win": "Super_L", "meta": "Meta_L", "hyper": "Hyper_L",
    "del": "Delete", "esc": "Escape", "enter": "Return", "ret": "Return",
    "bs": "BackSpace", "backspace": "BackSpace", "ins": "Insert",
    "pgup": "Page_Up", "pageup": "Page_Up", "pgdn": "Page_Down", "pagedown": "Page_Down",
    "sysrq": "Sys_Req", "printscreen": "Print", "prtsc": "Print", "capslock": "Caps_Lock",
    "numlock": "Num_Lock", "scrolllock": "Scroll_Lock",
}

MODIFIERS = frozenset(
    {0xFFE1, 0xFFE2, 0xFFE3, 0xFFE4, 0xFFE7, 0xFFE8, 0xFFE9, 0xFFEA, 0xFFEB, 0xFFEC,
     0xFFED, 0xFFEE, 0xFE03}
)

#: Characters a US keyboard produces with Shift held; type_text holds Shift_L for them so
#: servers that map keysyms to scan codes (QEMU) see the same key sequence as from a person.
US_SHIFTED = frozenset('~!@#$%^&*()_+{}|:"<>?ABCDEFGHIJKLMNOPQRSTUVWXYZ')

_CONTROL_CHARS = {"\n": 0xFF0D, "\r": 0xFF0D, "\t": 0xFF09, "\b": 0xFF08, "\x1b": 0xFF1B,
                  "\x7f": 0xFFFF}


def _build_names() -> dict[str, int]:
    names: dict[str, int] = {}
    for i, name in enumerate(_ASCII_NAMES.split()):
        names[name] = 0x20 + i
    for i, name in enumerate(_LATIN1_NAMES.split()):
        names[name] = 0xA0 + i
    names.update({"guillemetleft": 0xAB, "guillemetright": 0xBB, "ordmasculine": 0xBA,
                  "Ooblique": 0xD8, "oslash": 0xF8, "Eth": 0xD0, "Thorn": 0xDE})
    names.update(_FUNCTION_KEYS)
    for n in range(1, 36):
        names[f"F{n}"] = 0xFFBE + n - 1
    for n in range(10):
        names[f"KP_{n}"] = 0xFFB0 + n
    return names


#: Every X keysym name we know, exact spelling.
KEYSYM_NAMES: dict[str, int] = _build_names()
_FOLDED = {name.lower(): sym for name, sym in KEYSYM_NAMES.items()}


class KeyNameError(XcpConsoleError):
    """A key name in a combo is neither an X keysym name, an alias nor a single character."""

    exit_code = 2


def char_to_keysym(ch: str) -> int:
    """Keysym of one character (X rules: Latin-1 is itself, the rest is Unicode keysyms)."""
    if len(ch) != 1:
        raise KeyNameError(f"expected one character, got {ch!r}")
    if ch in _CONTROL_CHARS:
        return _CONTROL_CHARS[ch]
    cp = ord(ch)
    if 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xFF:
        return cp
    if cp < 0x20 or 0x7F <= cp < 0xA0:
        raise KeyNameError(f"control character {ch!r} has no keysym")
    return UNICODE_OFFSET + cp


def name_to_keysym(name: str) -> int:
    """Keysym of an X name (``Return``), alias (``ctrl``), character, ``0xff0d`` or ``U+00E9``.

    Exact X names win (``a`` and ``A`` differ); otherwise the match ignores case, so
    ``return`` and ``f12`` work on the command line.
    """
    if name in KEYSYM_NAMES:
        return KEYSYM_NAMES[name]
    if len(name) == 1:
        return char_to_keysym(name)
    low = name.lower()
    if low in ALIASES:
        return KEYSYM_NAMES[ALIASES[low]]
    if low in _FOLDED:
        return _FOLDED[low]
    try:
        if low.startswith("0x"):
            value = int(low, 16)
            if 0 < value <= 0x1FFFFFFF:
                return value
        if low.startswith("u+"):
            return char_to_keysym(chr(int(low[2:], 16)))
    except (ValueError, OverflowError):
        pass
    raise KeyNameError(f"unknown key name {name!r} (use X keysym names such as Return, F12, "
                       "Page_Up, or aliases ctrl, alt, shift, del, esc)")


_COMBO_TOKEN = re.compile(r"(?i)u\+[0-9a-f]{2,6}(?=$|[-+])|[^-+]+|[-+]")


def parse_combo(combo: str) -> list[int]:
    """Keysyms of a combo like ``ctrl-alt-del``, ``shift-a``, ``ctrl+c`` or ``-`` (minus).

    Keys are separated by ``-`` or ``+``; a separator standing alone or doubled
    (``ctrl--``, ``ctrl++``) is the key itself.  Returned in press order.
    """
    keys: list[str] = []
    expect_key = True
    for token in _COMBO_TOKEN.findall(combo):
        if expect_key:
            keys.append(token)
        elif token not in "-+":
            raise KeyNameError(f"bad key combo {combo!r}")
        expect_key = not expect_key
    if expect_key:
        raise KeyNameError(f"bad key combo {combo!r} (empty or ends with a separator)")
    return [name_to_keysym(k) for k in keys]
