"""Settings: precedence flags > env > profile, profile permissions, the trust callbacks.

Fingerprint spellings are tested with their normaliser, in ``tests/trust/test_fingerprint.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xcpconsole.errors import ConfigError
from xcpconsole.settings import load_settings, normalise_url

FP = ("7D:D2:83:99:A1:DD:68:1A:C5:D3:E2:5E:65:90:C7:AC:"
      "E2:41:8C:C0:5C:ED:F3:F0:42:F7:48:CD:AE:64:99:B3")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("XCP_HOST", "XCP_USER", "XCP_PASSWORD", "XCP_FINGERPRINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XCPCONSOLE_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("XCPCONSOLE_KNOWN_HOSTS", str(tmp_path / "known_hosts"))


@pytest.mark.parametrize(("text", "want"), [
    ("xcp.example", "https://xcp.example"),
    ("https://xcp.example/", "https://xcp.example"),
    ("xcp.example:443", "https://xcp.example"),
    ("127.0.0.1:8443", "https://127.0.0.1:8443"),
    ("https://[::1]:8443", "https://[::1]:8443"),
])
def test_urls(text: str, want: str) -> None:
    assert normalise_url(text) == want


@pytest.mark.parametrize("text", ["http://xcp.example", "https://xcp.example/RPC2",
                                  "https://u:p@xcp.example", "https://h:99999",
                                  "https://[::1", "[::1:8443"])
def test_bad_urls(text: str) -> None:
    with pytest.raises(ConfigError):
        normalise_url(text)


def test_flags_beat_env_beat_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[profiles.lab]\nhost = "https://lab:1"\nuser = "labuser"\n'
                   f'password = "profilepw"\nfingerprint = "{FP.lower()}"\n')
    cfg.chmod(0o600)
    s = load_settings(profile="lab", interactive=False)
    assert (s.url, s.user, s.password, s.fingerprint) == ("https://lab:1", "labuser",
                                                          "profilepw", FP)
    monkeypatch.setenv("XCP_HOST", "envhost")
    monkeypatch.setenv("XCP_USER", "envuser")
    monkeypatch.setenv("XCP_PASSWORD", "envpw")
    s = load_settings(profile="lab", interactive=False)
    assert (s.url, s.user, s.password) == ("https://envhost", "envuser", "envpw")
    s = load_settings(profile="lab", host="flaghost:2", user="flaguser", interactive=False)
    assert (s.url, s.user, s.password) == ("https://flaghost:2", "flaguser", "envpw")
    assert "envpw" not in repr(s)


def test_world_readable_profile_with_password_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[profiles.lab]\nhost = "lab"\npassword = "pw"\n')
    cfg.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_settings(profile="lab")
    cfg.chmod(0o600)
    assert load_settings(profile="lab").password == "pw"


def test_world_readable_profile_without_password_is_fine(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[profiles.lab]\nhost = "lab"\ninsecure = true\n')
    os.chmod(cfg, 0o644)
    s = load_settings(profile="lab", password_prompt=lambda: "typed")
    assert (s.url, s.password, s.insecure) == ("https://lab", "", True)
    assert s.with_password().password == "typed"


def test_unknown_profile_and_bad_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[profiles.lab]\nhost = "lab"\n')
    with pytest.raises(ConfigError, match="have: lab"):
        load_settings(profile="prod")
    cfg.write_text("[profiles.lab\n")
    with pytest.raises(ConfigError, match="TOML"):
        load_settings(profile="lab")
    cfg.write_text('[profiles.lab]\nhost = "lab"\npasword = "typo"\n')
    with pytest.raises(ConfigError, match="unknown keys"):
        load_settings(profile="lab")


def test_missing_host_or_password(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no host"):
        load_settings()
    monkeypatch.setenv("XCP_HOST", "h")
    with pytest.raises(ConfigError, match="XCP_PASSWORD"):
        load_settings()
    asked: list[int] = []
    s = load_settings(password_prompt=lambda: asked.append(1) or "pw")
    assert s.password == "" and asked == []  # asked when a login needs it, not before


def test_the_password_prompt_waits_for_the_login(monkeypatch: pytest.MonkeyPatch) -> None:
    """The prompt is kept in the settings and called once, by ``with_password``."""
    monkeypatch.setenv("XCP_HOST", "h")
    asked: list[int] = []
    s = load_settings(password_prompt=lambda: asked.append(1) or "typed")
    assert asked == [] and s.password == "" and s.password_prompt is not None
    assert "typed" not in repr(s)
    ready = s.with_password()
    assert asked == [1] and ready.password == "typed" and ready.password_prompt is None
    assert ready.with_password() is ready and asked == [1]
    assert "typed" not in repr(ready)
    monkeypatch.setenv("XCP_PASSWORD", "envpw")
    known = load_settings(password_prompt=lambda: asked.append(2) or "no")
    assert known.password_prompt is None and known.with_password().password == "envpw"
    assert asked == [1]


def test_known_hosts_env(tmp_path: Path) -> None:
    s = load_settings(host="h", password_prompt=lambda: "")
    assert s.known_hosts == tmp_path / "known_hosts"


def test_bad_fingerprint_flag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SHA-256"):
        load_settings(host="h", fingerprint="AB:CD", password_prompt=lambda: "")


def test_trust_callbacks_are_carried_but_not_shown() -> None:
    def confirm(question: str) -> bool:
        return True

    def warn(message: str) -> None:
        pass

    s = load_settings(host="h", password_prompt=lambda: "", confirm=confirm, warn=warn)
    assert (s.confirm, s.warn) == (confirm, warn)
    assert "confirm" not in repr(s) and "warn" not in repr(s)
    plain = load_settings(host="h", password_prompt=lambda: "")
    assert (plain.confirm, plain.warn) == (None, None) and plain == s
