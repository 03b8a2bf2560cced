"""The known_hosts file: lookups, comments, damaged lines, private permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from xcpconsole.errors import ConfigError
from xcpconsole.trust import KnownHosts

A = ":".join(["AB"] * 32)
B = ":".join(["CD"] * 32)


def test_missing_file_knows_nothing(tmp_path: Path) -> None:
    assert KnownHosts(tmp_path / "nope" / "known_hosts").lookup("h:443") is None


def test_add_then_lookup_private_file(tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "cfg" / "known_hosts")
    known.add("h:443", A)
    known.add("[::1]:8443", B)
    assert known.path.read_text() == f"h:443 SHA256:{A}\n[::1]:8443 SHA256:{B}\n"
    assert known.lookup("h:443") == (A, 1)
    assert known.lookup("[::1]:8443") == (B, 2)
    assert known.lookup("h:444") is None
    assert stat.S_IMODE(os.stat(known.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(known.path.parent).st_mode) == 0o700


def test_comments_blank_lines_spellings_and_first_line_wins(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"# my hosts\n\nh:443 {A.lower().replace(':', '')}\nh:443 SHA256:{B}\n")
    assert KnownHosts(path).lookup("h:443") == (A, 3)


@pytest.mark.parametrize(("text", "match"), [
    ("h:443\n", r"known_hosts:1: want 'HOST:PORT SHA256:\.\.\.'"),
    ("other:1 SHA256:" + A + "\nh:443 SHA256:" + A + " extra\n", r"known_hosts:2: want"),
    ("h:443 SHA256:ABCD\n", r"known_hosts:1: fingerprint must be a SHA-256"),
])
def test_damaged_lines_name_the_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        KnownHosts(path).lookup("h:443")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_bytes(b"\xff\xfe h:443\n")
    with pytest.raises(ConfigError, match="cannot read known hosts"):
        KnownHosts(path).lookup("h:443")
