"""``~/.config/xcpconsole/known_hosts``: the certificates a user chose to remember.

Like OpenSSH's file and for the same reason: a host seen once is recognised
later, and a changed certificate is noticed.  One line per ``HOST:PORT``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError
from .fingerprint import normalise_fingerprint

__all__ = ["KnownHosts"]


class KnownHosts:
    """``~/.config/xcpconsole/known_hosts``: lines of ``HOST:PORT SHA256:AB:CD:...``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lookup(self, key: str) -> tuple[str, int] | None:
        """(fingerprint, line number) remembered for ``key``, or None."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read known hosts {self.path}: {exc}") from exc
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 2:
                raise ConfigError(f"{self.path}:{number}: want 'HOST:PORT SHA256:...'")
            if fields[0] == key:
                try:
                    return normalise_fingerprint(fields[1]), number
                except ConfigError as exc:
                    raise ConfigError(f"{self.path}:{number}: {exc}") from exc
        return None

    def add(self, key: str, fingerprint: str) -> None:
        """Append an entry; the directory is made private (0700) and the file 0600."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(f"{key} SHA256:{fingerprint}\n")
