"""Help that reads well in an 80-column terminal: real metavars, no type noise or reST
marks, nothing cut, ``-h`` as well as ``--help``; and ``--help`` stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from clirun import XCPCONSOLE, env_for


def _commands() -> dict[str, Any]:
    from typer.main import get_command

    from xcpconsole.cli import main

    main._register([])
    group: Any = get_command(main.app)
    return dict(group.commands)


COMMANDS = _commands()


def help_of(tmp_path: Path, *args: str) -> str:
    out = subprocess.run([str(XCPCONSOLE), *args], env=env_for(None, tmp_path, COLUMNS="80"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return out.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_help_at_80_columns(tmp_path: Path, name: str) -> None:
    text = help_of(tmp_path, name, "--help")
    assert text == help_of(tmp_path, name, "-h")
    assert text.startswith(f"Usage: xcpconsole {name} [OPTIONS]")
    for line in text.splitlines():
        assert len(line) <= 80, line
    assert not re.search(r"<(bool|str|int|float|path|text)>", text, re.I), text
    assert "``" not in text and "…" not in text
    assert not re.search(r"\{\w+\}", text.splitlines()[0]), text  # click's usage: VM, [VM]
    command = COMMANDS[name]
    for param in command.params:
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("-"):
                assert re.search(rf"(^|[\s,/]){re.escape(opt)}([\s,=]|$)", text, re.M), opt
        if param.param_type_name == "argument":
            assert str(param.metavar or param.name).upper() in text.splitlines()[0]
        elif not getattr(param, "is_flag", False):  # a value: its metavar follows
            longest = max(param.opts, key=len)
            assert re.search(rf"{re.escape(longest)} [A-Za-z0-9]", text), (longest, text)


def test_the_command_list_is_not_cut(tmp_path: Path) -> None:
    text = help_of(tmp_path, "-h")
    assert text == help_of(tmp_path, "--help")
    for line in text.splitlines():
        assert len(line) <= 80, line
    flat = " ".join(text.split())
    for name, command in COMMANDS.items():
        first = " ".join((command.help or "").split("\n\n")[0].split())
        assert f"{name} {first.replace('``', '')}" in flat, (name, first)


@pytest.mark.parametrize("argv", [["--help"], ["vms", "--help"], ["screenshot", "-h"]])
def test_help_does_not_load_numpy_or_aiohttp(tmp_path: Path, argv: list[str]) -> None:
    code = ("import sys\n"
            f"sys.argv = ['xcpconsole', *{argv!r}]\n"
            "from xcpconsole.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'aiohttp', 'PIL', 'XenAPI') if m in sys.modules]\n"
            "print('heavy:', heavy, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env_for(None, tmp_path),
                         capture_output=True, text=True, timeout=60)
    assert out.stderr.strip().splitlines()[-1] == "heavy: []", out.stderr
