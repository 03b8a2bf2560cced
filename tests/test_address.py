"""The one HOST:PORT parser and formatter (xcpconsole.address)."""

from __future__ import annotations

import pytest

from xcpconsole.address import (
    connectable_host,
    format_host,
    format_hostport,
    https_url,
    parse_hostport,
)
from xcpconsole.errors import ConfigError


@pytest.mark.parametrize(("text", "want"), [
    ("127.0.0.1:8443", ("127.0.0.1", 8443)),
    ("localhost:0", ("localhost", 0)),
    (":5900", ("127.0.0.1", 5900)),
    ("[::1]:8080", ("::1", 8080)),
    ("[fe80::1%eth0]:22", ("fe80::1%eth0", 22)),
    ("[::ffff:127.0.0.2]:443", ("::ffff:127.0.0.2", 443)),
    ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ("  host-1.example_x:1 ", ("host-1.example_x", 1)),
])
def test_parses(text: str, want: tuple[str, int]) -> None:
    assert parse_hostport(text) == want


@pytest.mark.parametrize("text", [
    "", "8080", "host", "host:", "host:x", "host:65536", "host:-1", "[::1]", "[::1]8080",
    "[::1:8080", "[]:80", "[host]:80", "a b:80", "hôst:80", "host:\uff18\uff10", "h/x:1", "[::1]:",
])
def test_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="--web-listen"):
        parse_hostport(text, "--web-listen")


def test_unbracketed_ipv6_is_refused_with_the_form_to_use() -> None:
    with pytest.raises(ConfigError, match=r"\[::1\]:8080"):
        parse_hostport("::1:8080")


def test_port_only_and_zero() -> None:
    assert parse_hostport("5901", port_only=True) == ("127.0.0.1", 5901)
    assert parse_hostport("5901", port_only=True, default_host="::1") == ("::1", 5901)
    with pytest.raises(ConfigError, match="out of range"):
        parse_hostport("h:0", allow_zero=False)


def test_formats() -> None:
    assert format_host("10.0.0.1") == "10.0.0.1"
    assert format_host("::1") == "[::1]"
    assert format_host("[::1]") == "[::1]"
    assert format_hostport("::1", 443) == "[::1]:443"
    assert format_hostport("h", 1) == "h:1"
    assert https_url("::1", 443) == "https://[::1]"
    assert https_url("h", 8443) == "https://h:8443"
    assert connectable_host("0.0.0.0") == "127.0.0.1"
    assert connectable_host("::") == "127.0.0.1"
    assert connectable_host("127.0.0.3") == "127.0.0.3"


@pytest.mark.parametrize("pair", [("127.0.0.1", 1), ("::1", 65535), ("fe80::2%lo", 7),
                                  ("name.example", 443)])
def test_round_trip(pair: tuple[str, int]) -> None:
    assert parse_hostport(format_hostport(*pair)) == pair
