"""The CLI's side of trust: the terminal question and the stderr warning it passes in."""

from __future__ import annotations

import io

import pytest

from xcpconsole.cli.common import ask_on_terminal, warn_on_stderr


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
