"""Where a XenServer host is and how to talk to it: one :class:`HostSettings` per command.

Every command reads the same settings the same way, so scripts and people get
the same behaviour: flags beat the environment (``XCP_HOST``, ``XCP_USER``,
``XCP_PASSWORD``, ``XCP_FINGERPRINT``), which beats a profile of
``~/.config/xcpconsole/config.toml``.  A password never comes from argv (every
user of the machine can read it there): it comes from ``XCP_PASSWORD``, a
profile file only its owner can read, or a prompt.  The prompt is asked only when a
login needs the password, after the host's certificate passed (as SSH asks about the
host key before the password).
"""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .address import format_hostport, https_url
from .errors import ConfigError
from .trust.fingerprint import normalise_fingerprint

CONFIG_ENV = "XCPCONSOLE_CONFIG"
KNOWN_HOSTS_ENV = "XCPCONSOLE_KNOWN_HOSTS"
CONFIG_DIR = Path("~/.config/xcpconsole")
_PROFILE_KEYS = frozenset({"host", "user", "password", "fingerprint", "insecure"})


def default_known_hosts() -> Path:
    """The known-hosts file (``XCPCONSOLE_KNOWN_HOSTS`` overrides), like OpenSSH's."""
    env = os.environ.get(KNOWN_HOSTS_ENV)
    return Path(env).expanduser() if env else (CONFIG_DIR / "known_hosts").expanduser()


def default_config_path() -> Path:
    env = os.environ.get(CONFIG_ENV)
    return Path(env).expanduser() if env else (CONFIG_DIR / "config.toml").expanduser()


@dataclass(frozen=True)
class HostSettings:
    """How to reach and trust one host; the password never shows in ``repr``."""

    url: str
    user: str
    password: str = field(default="", repr=False)
    fingerprint: str | None = None
    insecure: bool = False
    known_hosts: Path = field(default_factory=default_known_hosts)
    interactive: bool = False
    #: asks the user whether to trust an unknown certificate (TOFU); None: nobody to ask
    confirm: Callable[[str], bool] | None = field(default=None, repr=False, compare=False)
    #: shows a security warning (``--insecure``); None: the ``xcpconsole.trust`` logger
    warn: Callable[[str], None] | None = field(default=None, repr=False, compare=False)
    #: the ``host:port`` that ``fingerprint`` pins (None: the host of ``url``); kept when
    #: a login on a pool member is redirected to the master
    pinned_for: str | None = None
    #: asks for the password when ``password`` is empty; called by the login once the
    #: host's certificate passed, so the trust question comes first (None: no prompt)
    password_prompt: Callable[[], str] | None = field(default=None, repr=False,
                                                      compare=False)

    def with_password(self) -> HostSettings:
        """These settings with the password asked for now, if it is still missing."""
        if self.password or self.password_prompt is None:
            return self
        return dataclasses.replace(self, password=self.password_prompt(), password_prompt=None)

    @property
    def pin_key(self) -> str:
        """The ``host:port`` whose certificate ``fingerprint`` must be."""
        return self.pinned_for or format_hostport(self.host, self.port)

    @property
    def host(self) -> str:
        return split_url(self.url)[0]

    @property
    def port(self) -> int:
        return split_url(self.url)[1]


def split_url(url: str) -> tuple[str, int]:
    """``https://HOST[:PORT]`` -> (host, port); ConfigError for anything else."""
    parts = _urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(f"host must look like https://HOST[:PORT], got {url!r}")
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise ConfigError(f"bad port in {url!r}") from exc
    return parts.hostname, port


def _urlsplit(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": an unclosed [
        raise ConfigError(f"host must look like https://HOST[:PORT], got {url!r} ({exc})"
                          ) from None


def normalise_url(text: str) -> str:
    """Accept ``HOST``, ``HOST:PORT`` or ``https://HOST[:PORT][/]``; return ``https://HOST[:PORT]``."""
    text = text.strip()
    if "://" not in text:
        text = "https://" + text
    parts = _urlsplit(text)
    if parts.scheme != "https":
        raise ConfigError(f"only https:// hosts are supported, got {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ConfigError(f"host must look like https://HOST[:PORT], got {text!r}")
    host, port = split_url(text)
    return https_url(host, port)


def _load_profile(name: str, path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
        st = path.stat()
    except FileNotFoundError as exc:
        raise ConfigError(f"profile {name!r} asked for but {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    profiles = data.get("profiles", data.get("profile", {}))
    profile = profiles.get(name) if isinstance(profiles, dict) else None
    if not isinstance(profile, dict):
        known = ", ".join(sorted(profiles)) if isinstance(profiles, dict) else ""
        raise ConfigError(f"no profile {name!r} in {path}" + (f" (have: {known})" if known else ""))
    unknown = set(profile) - _PROFILE_KEYS
    if unknown:
        raise ConfigError(f"profile {name!r} in {path}: unknown keys {sorted(unknown)}")
    if "password" in profile and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} holds a password but other users can read it: chmod 600 {path}")
    for key, value in profile.items():
        want = bool if key == "insecure" else str
        if not isinstance(value, want):
            raise ConfigError(f"profile {name!r} in {path}: {key} must be a {want.__name__}")
    return profile


def load_settings(*, host: str | None = None, user: str | None = None,
                  profile: str | None = None, fingerprint: str | None = None,
                  insecure: bool = False,
                  password_prompt: Callable[[], str] | None = None,
                  interactive: bool | None = None,
                  known_hosts: Path | None = None,
                  confirm: Callable[[str], bool] | None = None,
                  warn: Callable[[str], None] | None = None) -> HostSettings:
    """Combine flags, environment and profile (in that order of precedence).

    ``password_prompt`` is kept in the settings when no password was found, to be
    called when a login needs it (:meth:`HostSettings.with_password`, after the
    certificate check); without it a missing password is a :class:`ConfigError`.
    ``interactive`` defaults to "stdin is a terminal" and decides whether an
    unknown certificate may be offered for trust, through ``confirm`` (the
    caller's question, e.g. the CLI's terminal prompt).  ``warn`` shows the
    ``--insecure`` warning.
    """
    env = os.environ
    prof: dict[str, Any] = {}
    if profile:
        prof = _load_profile(profile, default_config_path())
    url = host or env.get("XCP_HOST") or prof.get("host")
    if not url:
        raise ConfigError("no host given: use --host https://HOST, XCP_HOST or --profile")
    name = user if user is not None else (env.get("XCP_USER") or prof.get("user") or "root")
    fp = fingerprint or env.get("XCP_FINGERPRINT") or prof.get("fingerprint")
    password = env.get("XCP_PASSWORD") or prof.get("password")
    if password is None and password_prompt is None:
        raise ConfigError("no password: set XCP_PASSWORD (it is never taken from argv)")
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    return HostSettings(
        url=normalise_url(url), user=name, password=password or "",
        fingerprint=normalise_fingerprint(fp) if fp else None,
        insecure=bool(insecure or prof.get("insecure", False)),
        known_hosts=known_hosts or default_known_hosts(), interactive=interactive,
        confirm=confirm, warn=warn, password_prompt=None if password else password_prompt,
    )
