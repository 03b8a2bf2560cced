"""Key names, combos, characters and VNC target strings (pure functions)."""

from __future__ import annotations

import pytest

from xcpconsole.errors import UnsupportedError
from xcpconsole.net.keysyms import (
    KeyNameError,
    char_to_keysym,
    name_to_keysym,
    parse_combo,
)
from xcpconsole.net.vnc import (
    NotATargetError,
    VncAddress,
    looks_like_target,
    parse_encodings,
    parse_target,
)


@pytest.mark.parametrize(("combo", "keysyms"), [
    ("ctrl-alt-del", [0xFFE3, 0xFFE9, 0xFFFF]),
    ("Control_L+Alt_L+Delete", [0xFFE3, 0xFFE9, 0xFFFF]),
    ("shift-a", [0xFFE1, 0x61]),
    ("Return", [0xFF0D]),
    ("return", [0xFF0D]),
    ("F12", [0xFFC9]),
    ("f1", [0xFFBE]),
    ("ctrl--", [0xFFE3, 0x2D]),
    ("-", [0x2D]),
    ("ctrl-+", [0xFFE3, 0x2B]),
    ("alt-F4", [0xFFE9, 0xFFC1]),
    ("Page_Up", [0xFF55]),
    ("KP_Enter", [0xFF8D]),
    ("adiaeresis", [0xE4]),
    ("Adiaeresis", [0xC4]),
    ("A", [0x41]),
    ("0xff0d", [0xFF0D]),
    ("U+20AC", [0x10020AC]),
    ("super-l", [0xFFEB, 0x6C]),
    ("space", [0x20]),
])
def test_parse_combo(combo: str, keysyms: list[int]) -> None:
    assert parse_combo(combo) == keysyms


@pytest.mark.parametrize("bad", ["", "ctrl-", "nosuchkey", "ctrl-nosuch", "0x", "U+zz"])
def test_bad_combo(bad: str) -> None:
    with pytest.raises(KeyNameError):
        parse_combo(bad)


@pytest.mark.parametrize(("ch", "sym"), [
    ("a", 0x61), ("~", 0x7E), (" ", 0x20), ("é", 0xE9), ("ÿ", 0xFF), ("€", 0x10020AC),
    ("\n", 0xFF0D), ("\t", 0xFF09), ("ж", 0x1000436),
])
def test_char_to_keysym(ch: str, sym: int) -> None:
    assert char_to_keysym(ch) == sym


def test_control_char_refused() -> None:
    with pytest.raises(KeyNameError):
        char_to_keysym("\x01")


def test_name_lookup_is_exact_first() -> None:
    assert name_to_keysym("a") == 0x61 and name_to_keysym("A") == 0x41
    assert name_to_keysym("ETH") == 0xD0 and name_to_keysym("eth") == 0xF0


@pytest.mark.parametrize(("text", "addr"), [
    ("vnc://10.0.0.1:5901", VncAddress("10.0.0.1", 5901)),
    ("vnc://host", VncAddress("host", 5900)),
    ("vnc://[::1]:5999", VncAddress("::1", 5999)),
    ("host:1", VncAddress("host", 5901)),
    ("host::5999", VncAddress("host", 5999)),
    (":2", VncAddress("127.0.0.1", 5902)),
    ("[fe80::1]::6000", VncAddress("fe80::1", 6000)),
    ("unix:/run/x.sock", VncAddress(path="/run/x.sock")),
])
def test_parse_target(text: str, addr: VncAddress) -> None:
    assert parse_target(text) == addr


@pytest.mark.parametrize("bad", ["vnc://h::5900", "unix:", "host:", "vnc://h:99999", "a b:1",
                                 "my-vm", "0b4c1c2e-0000-4000-8000-000000000001"])
def test_bad_target(bad: str) -> None:
    with pytest.raises(NotATargetError):
        parse_target(bad)
    assert not looks_like_target(bad)


def test_vm_names_are_not_targets() -> None:
    assert looks_like_target("vnc://h:1") and looks_like_target("unix:/x")
    assert looks_like_target("h:1")
    assert not looks_like_target("Debian 12")


def test_parse_encodings() -> None:
    assert parse_encodings("tight, zrle,raw") == [7, 16, 0, -223, -224]
    assert parse_encodings("tight,jpeg=6,compress=2") == [7, -26, -254, -223, -224]
    with pytest.raises(UnsupportedError):
        parse_encodings("h264")
    with pytest.raises(UnsupportedError):
        parse_encodings("jpeg=5")
