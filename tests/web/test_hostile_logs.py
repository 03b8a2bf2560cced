"""Issue 11, finding 16: garbage requests cost one short log line each, at most ten a
second, never a traceback; a host string cannot forge a log line."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from xcpconsole.cli.common import SafeFormatter

from .conftest import launch_gateway

pytestmark = pytest.mark.peers

GARBAGE = [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS hello
           b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n",  # a huge header
           b"GET /\x00 HTTP/1.1\r\n\r\n", b"G\xffT / HTTP/1.1\r\nHost: x\r\n\r\n",
           b"GET / HTTP/1.1\r\nContent-Length: -5\r\nHost: x\r\n\r\n"]


async def _send(host: str, port: int, data: bytes) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()


async def test_garbage_requests_log_one_short_line_each_and_no_flood(
        sim_host: Any, tmp_path: Path) -> None:
    gw = launch_gateway(sim_host, tmp_path / "gw")
    try:
        url = urlsplit(gw.url)
        assert url.hostname and url.port
        for _round in range(20):  # 200 garbage requests, about as fast as we can
            await asyncio.gather(*(_send(url.hostname, url.port, g) for g in GARBAGE * 2))
        async with aiohttp.ClientSession() as client, client.get(gw.url + "/login") as resp:
            assert resp.status == 200  # still serving everyone else
    finally:
        gw.stop()
    log = gw.log.read_text(errors="replace")
    lines = [line for line in log.splitlines() if "malformed request from 127.0.0.1" in line]
    assert "Traceback" not in log and "Error handling request" not in log, log[-3000:]
    assert 5 <= len(lines) <= 10 * 30, len(lines)  # the rate limit held (the test took < 30 s)
    assert len(lines) < 200
    assert all(len(line) < 300 for line in lines), max(lines, key=len)


def test_a_host_string_cannot_forge_a_log_line() -> None:
    record = logging.LogRecord("xcpconsole.web", logging.INFO, __file__, 1,
                               "console opened for VM %s", ("vm\n12:00:00 signed in root"
                                                            "\x1b[2K",), None)
    line = SafeFormatter("%(levelname)s %(message)s").format(record)
    assert line == "INFO console opened for VM vm\\n12:00:00 signed in root\\x1b[2K"
