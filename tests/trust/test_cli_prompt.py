"""The CLI's side of trust: the terminal question, the stderr warning it passes in, and
the order of the questions on a real terminal (the trust question before the password)."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from xcpconsole.cli.common import ask_on_terminal, warn_on_stderr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cli"))
from clirun import XCPCONSOLE, PtyProcess, env_for


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "want"), [
    ("y\n", True), ("YES\n", True), (" yes \n", True), ("n\n", False), ("\n", False),
    ("", False), ("yep\n", False),
])
def test_question_on_stderr_answer_from_stdin(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str],
                                              answer: str, want: bool) -> None:
    monkeypatch.setattr("sys.stdin", FakeTty(answer))
    assert ask_on_terminal("Trust it? [y/N] ") is want
    captured = capsys.readouterr()
    assert captured.err == "Trust it? [y/N] " and captured.out == ""


def test_no_terminal_means_no(monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert ask_on_terminal("Trust it? [y/N] ") is False
    monkeypatch.setattr("sys.stdin", None)
    assert ask_on_terminal("Trust it? [y/N] ") is False
    assert capsys.readouterr().err == ""


def test_warning_line(capsys: pytest.CaptureFixture[str]) -> None:
    warn_on_stderr("--insecure: the certificate of h:443 is NOT checked")
    captured = capsys.readouterr()
    assert captured.err == ("xcpconsole: WARNING: --insecure: the certificate of h:443 "
                            "is NOT checked\n")
    assert captured.out == ""


# -- the real CLI on a pseudo-terminal --------------------------------------------------
def _first_run(sim: Any, tmp_path: Path, *args: str) -> PtyProcess:
    """``xcpconsole`` on a terminal, as a new user: no password, no pin, no known host."""
    env = env_for(sim, tmp_path, XCP_PASSWORD="", XCP_FINGERPRINT="")
    return PtyProcess([str(XCPCONSOLE), *args], env)


QUESTION = r"Trust it and remember it in .*\? \[y/N\] "
PASSWORD = r"XenAPI password: "


def test_the_trust_question_comes_before_the_password(sim_host: Any, tmp_path: Path) -> None:
    """As SSH asks about the host key before the password: nothing is typed for a host
    whose certificate was not accepted yet."""
    term = _first_run(sim_host, tmp_path, "vms")
    try:
        shown = term.read_until(QUESTION)
        assert "password" not in shown.lower()
        assert sim_host.fingerprint in shown
        term.write("yes\n")
        term.read_until(PASSWORD)
        term.write(sim_host.password + "\n")
        assert term.wait() == 0, term.output
    finally:
        term.close()
    assert "win-hvm" in term.output
    assert sim_host.password not in term.output  # no echo
    known = (tmp_path / "known_hosts").read_text()
    assert sim_host.fingerprint in known


def test_no_to_the_question_asks_no_password(sim_host: Any, tmp_path: Path) -> None:
    term = _first_run(sim_host, tmp_path, "vms")
    try:
        term.read_until(QUESTION)
        term.write("n\n")
        assert term.wait() == 4, term.output
    finally:
        term.close()
    assert "password" not in term.output.lower()
    assert "was not accepted" in term.output and "Traceback" not in term.output


def test_a_slow_typist_still_logs_in(start_sim: Any, tmp_path: Path) -> None:
    """The host closes a connection that sends no request within its head timeout (1 s
    here); the login made after a slow answer to the prompt reconnects."""
    sim = start_sim("--header-timeout", "1")
    term = _first_run(sim, tmp_path, "vms")
    try:
        term.read_until(QUESTION)
        term.write("y\n")
        term.read_until(PASSWORD)
        time.sleep(2.5)
        term.write(sim.password + "\n")
        assert term.wait() == 0, term.output
    finally:
        term.close()
    assert "win-hvm" in term.output


def test_ctrl_c_at_the_password_prompt(sim_host: Any, tmp_path: Path) -> None:
    """Ctrl-C while the password is asked: exit 130 at once, and the terminal echoes again
    (the prompt had turned echo off)."""
    (tmp_path / "known_hosts").write_text(f"127.0.0.1:{sim_host.port} {sim_host.fingerprint}\n")
    term = _first_run(sim_host, tmp_path, "vms")
    try:
        term.read_until(PASSWORD)
        assert not term.echo_is_on()
        term.write("\x03")
        sent = time.monotonic()
        code = term.wait()
        took = time.monotonic() - sent
        echo = term.echo_is_on()
    finally:
        term.close()
    assert code == 130, term.output
    assert took < 2.5, took
    assert "xcpconsole: interrupted (Ctrl-C)" in term.output
    assert "Traceback" not in term.output
    assert echo


def test_ctrl_c_at_the_trust_question(sim_host: Any, tmp_path: Path) -> None:
    """The question is read in the SDK's worker thread; Ctrl-C ends the process anyway."""
    term = _first_run(sim_host, tmp_path, "vms")
    try:
        term.read_until(QUESTION)
        term.write("\x03")
        code = term.wait()
    finally:
        term.close()
    assert code == 130, term.output
    assert term.output.rstrip().endswith("xcpconsole: interrupted (Ctrl-C)")
    assert "Fatal Python error" not in term.output and "Traceback" not in term.output
    assert not (tmp_path / "known_hosts").exists()
