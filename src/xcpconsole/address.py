"""``HOST:PORT`` as people write it and as we print it: the one parser and formatter.

Every listen option (``--listen``, ``--web-listen``, ``--member-listen``, an inventory's
``listen``), every ``host:port`` key (known hosts) and every URL we build goes through
here, so all of them follow the same rules:

- ``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` and a bare ``PORT`` (where a default host makes
  sense); an empty host is the default host (loopback);
- an IPv6 address must be in brackets when a port follows it (``::1:8080`` is ambiguous:
  it is refused with the bracketed form to use instead);
- ports are 0-65535 (0 asks the kernel for a free one) unless the caller forbids 0.

No I/O, no imports above :mod:`xcpconsole.errors`: the simulator uses it too.
"""

from __future__ import annotations

from .errors import ConfigError

__all__ = [
    "LOOPBACK",
    "connectable_host",
    "format_host",
    "format_hostport",
    "https_url",
    "parse_hostport",
]

LOOPBACK = "127.0.0.1"
_WILDCARDS = ("", "0.0.0.0", "::")


def format_host(host: str) -> str:
    """``host`` as it appears before ``:PORT`` or in a URL: IPv6 literals in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def format_hostport(host: str, port: int) -> str:
    """``host:port`` (``[v6]:port``): known_hosts keys, messages, listen addresses."""
    return f"{format_host(host)}:{port}"


def https_url(host: str, port: int) -> str:
    """``https://HOST[:PORT]``, the port left out when it is 443."""
    return f"https://{format_host(host)}" + (f":{port}" if port != 443 else "")


def connectable_host(listen_host: str) -> str:
    """An address a local client can connect to for a server listening on ``listen_host``
    (a wildcard listen address is reached on loopback)."""
    return LOOPBACK if listen_host in _WILDCARDS else listen_host


def parse_hostport(text: str, what: str = "--listen", *, default_host: str = LOOPBACK,
                   port_only: bool = False, allow_zero: bool = True) -> tuple[str, int]:
    """``HOST:PORT`` / ``[V6]:PORT`` / ``:PORT`` (and ``PORT`` with ``port_only``) -> (host, port).

    ``what`` names the option in the ConfigError a malformed value gets.
    """
    raw = text.strip()
    usage = f"{what} wants HOST:PORT (IPv6 as [ADDR]:PORT), got {text!r}"
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0 or not raw[end + 1:].startswith(":"):
            raise ConfigError(usage)
        host, port_text = raw[1:end], raw[end + 2:]
        if not _is_ipv6(host):
            raise ConfigError(usage)
    else:
        host, sep, port_text = raw.rpartition(":")
        if not sep:
            if not port_only:
                raise ConfigError(usage)
            host, port_text = "", raw
        if ":" in host:
            raise ConfigError(f"{what}: put the IPv6 address in brackets: "
                              f"[{host}]:{port_text} (got {text!r})")
        if host and not _is_name(host):
            raise ConfigError(usage)
    if not port_text.isdigit() or not port_text.isascii():
        raise ConfigError(usage)
    port = int(port_text)
    if port > 65535 or (port == 0 and not allow_zero):
        raise ConfigError(f"{what}: port {port} out of range in {text!r}")
    return host or default_host, port


def _is_ipv6(host: str) -> bool:
    """Plausibly an IPv6 literal (hex groups, colons, an IPv4 tail, a ``%zone``)."""
    addr, _, zone = host.partition("%")
    return ":" in addr and all(c in "0123456789abcdefABCDEF:." for c in addr) and (
        zone == "" or _is_name(zone)) and "%" not in zone


def _is_name(host: str) -> bool:
    """A host name or IPv4 literal: letters, digits, dots, dashes, underscores."""
    return all(c.isascii() and (c.isalnum() or c in ".-_") for c in host)
