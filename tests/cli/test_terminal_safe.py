"""Issue 11, finding 12: strings from a host or a VNC server never act on the terminal.

A hostile VM name (bidi override, C1 control) from a real sim, and a desktop name with
an OSC title change and a cursor move from TigerVNC's Xvnc, are printed visibly escaped."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import XCPCONSOLE, cli

from simproc import default_inventory, sim_with_inventory
from xcpconsole.cli.common import visible

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "peers"))
from peerutil import start_xvnc, stop_xvnc

HOSTILE_VM = "invoice\u202egpj.exe\u0085x"
TITLE = "\x1b]0;pwned\x07\x1b[2K\x1b[1Aok"
#: what a terminal acts on: ESC, BEL, C1 controls, bidi overrides and isolates
ACTIVE = ["\x1b", "\x07", "\x85", "\u202e", "\u2066", "\u200f", "\r"]


def test_visible_escapes_what_a_terminal_would_act_on() -> None:
    assert visible("plain name-1 é 中") == "plain name-1 é 中"
    assert visible(TITLE) == "\\x1b]0;pwned\\x07\\x1b[2K\\x1b[1Aok"
    assert visible(HOSTILE_VM) == "invoice\\u202egpj.exe\\x85x"
    assert visible("a\nb\tc\u2028\u2066\U000e0001") == "a\\nb\\tc\\u2028\\u2066\\U000e0001"
    assert visible("no\u00a0break") == "no\u00a0break"  # a space, not a control


@pytest.fixture(scope="module")
def hostile_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    extra = (f'\n[[vm]]\nname_label = {json.dumps(HOSTILE_VM)}\n'
             'power_state = "Halted"\nhvm = true\nbackend = "none"\nconsoles = ["rfb"]\n')
    with sim_with_inventory(tmp_path_factory.mktemp("hostile"), default_inventory() + extra) as sim:
        yield sim


def test_vms_and_consoles_print_a_hostile_name_visibly(hostile_sim: Any,
                                                      tmp_path: Path) -> None:
    out = cli(hostile_sim, tmp_path, "vms")
    assert out.returncode == 0, out.stderr
    assert "invoice\\u202egpj.exe\\x85x" in out.stdout
    assert not any(ch in out.stdout + out.stderr for ch in ACTIVE)
    out = cli(hostile_sim, tmp_path, "consoles", HOSTILE_VM)  # halted: a line on stderr
    assert "invoice\\u202egpj.exe\\x85x" in out.stderr, out.stderr
    assert not any(ch in out.stdout + out.stderr for ch in ACTIVE)
    out = cli(hostile_sim, tmp_path, "screenshot", HOSTILE_VM, str(tmp_path / "x.png"))
    assert out.returncode != 0 and "\\u202e" in out.stderr, out.stderr  # the error line
    assert not any(ch in out.stderr for ch in ACTIVE)
    out = cli(hostile_sim, tmp_path, "vms", "--json")  # JSON escapes them itself
    assert json.dumps(HOSTILE_VM) in out.stdout
    assert not any(ch in out.stdout for ch in ACTIVE)


@pytest.mark.peers
def test_info_prints_a_hostile_desktop_name_visibly(tmp_path: Path) -> None:
    server = start_xvnc(tmp_path, password=None, picture=None, extra=("-desktop", TITLE))
    try:
        out = subprocess.run([str(XCPCONSOLE), "info", f"vnc://127.0.0.1:{server.port}"],
                             capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
    finally:
        stop_xvnc(server)
    assert out.returncode == 0, out.stderr
    assert "\\x1b]0;pwned\\x07\\x1b[2K\\x1b[1Aok" in out.stdout, out.stdout
    assert not any(ch in out.stdout + out.stderr for ch in ACTIVE)
