"""Out of file descriptors, asyncio logs each failed accept() with a traceback, thousands a
second (27.5 MB in 20 s in the hardening issue): the gateway makes it one line per 10 s."""

from __future__ import annotations

import logging

import pytest

from xcpconsole.web.logs import install


def test_accept_failure_storm_is_one_line_per_ten_seconds(
        caplog: pytest.LogCaptureFixture) -> None:
    install()
    logger = logging.getLogger("asyncio")
    caplog.set_level(logging.INFO, logger="asyncio")
    exc = OSError(24, "Too many open files")
    for _ in range(3000):  # what one second of the storm looks like
        logger.error("socket.accept() out of system resource\nsocket: %s", "<sock>",
                     exc_info=(OSError, exc, None))
    logger.error("something else")  # other asyncio errors pass as they are
    lines = [r for r in caplog.records if r.name == "asyncio"]
    assert len(lines) == 2
    first = lines[0]
    assert first.levelname == "WARNING" and first.exc_info is None
    assert "Too many open files" in first.getMessage()
    assert lines[1].getMessage() == "something else"
