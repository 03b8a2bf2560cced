"""The relay framer between real VNC servers (TigerVNC Xvnc, QEMU) and our RFB client.

Every encoding the framer lets through is produced by a real server and decoded by
``xcpconsole.net.vnc``; the picture that arrives must be the one Xvnc shows, so a single
mis-framed byte fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from xcpconsole.net.vnc import open_vnc
from xcpconsole.rfb.constants import Encoding
from xcpconsole.rfb.framer import RfbRelayFramer

sys.path.insert(0, str(Path(__file__).parent.parent / "peers"))

from peerutil import XVNC_PASSWORD, Xvnc, busy_picture, start_xvnc, stop_xvnc

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def xvnc_none(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Xvnc]:
    server = start_xvnc(tmp_path_factory.mktemp("xvnc-relay"), password=None,
                        picture=busy_picture())
    try:
        yield server
    finally:
        stop_xvnc(server)


@pytest.fixture(scope="module")
def xvnc_pw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Xvnc]:
    server = start_xvnc(tmp_path_factory.mktemp("xvnc-relay-pw"), password=XVNC_PASSWORD,
                        picture=busy_picture(seed=3))
    try:
        yield server
    finally:
        stop_xvnc(server)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                feed: object) -> None:
    try:
        while data := await reader.read(65536):
            out = feed(data)  # type: ignore[operator]
            if out:
                writer.write(out)
                await writer.drain()
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def relayed(port: int, framer: RfbRelayFramer):  # type: ignore[no-untyped-def]
    """(reader, writer) of a client whose bytes go through ``framer`` to 127.0.0.1:port."""
    srv_r, srv_w = await asyncio.open_connection("127.0.0.1", port)
    ours, theirs = socket.socketpair()
    cli_r, cli_w = await asyncio.open_connection(sock=theirs)
    tasks = [asyncio.create_task(_pump(srv_r, cli_w, framer.server_data)),
             asyncio.create_task(_pump(cli_r, srv_w, framer.client_data))]
    try:
        yield await asyncio.open_connection(sock=ours)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


@pytest.mark.parametrize("encoding", [Encoding.TIGHT, Encoding.ZRLE, Encoding.HEXTILE,
                                      Encoding.RRE, Encoding.RAW])
async def test_xvnc_encodings_through_framer(xvnc_none: Xvnc, encoding: int) -> None:
    framer = RfbRelayFramer()
    async with relayed(xvnc_none.port, framer) as streams:
        vnc = await open_vnc(streams, encodings=[encoding, Encoding.COPYRECT,
                                                 Encoding.DESKTOP_SIZE, Encoding.CURSOR,
                                                 Encoding.XVP], timeout=15)
        try:
            first = await vnc.screenshot()
            second = await vnc.screenshot()
        finally:
            await vnc.close()
    assert framer.client_encodings[0] == encoding
    assert framer.xvp_enabled
    assert xvnc_none.picture is not None
    assert np.array_equal(first, xvnc_none.picture)
    assert np.array_equal(second, xvnc_none.picture)


async def test_xvnc_vnc_auth_through_framer(xvnc_pw: Xvnc) -> None:
    framer = RfbRelayFramer()
    async with relayed(xvnc_pw.port, framer) as streams:
        vnc = await open_vnc(streams, password=XVNC_PASSWORD,
                             encodings=[Encoding.ZRLE, Encoding.RAW], timeout=15)
        try:
            shot = await vnc.screenshot()
        finally:
            await vnc.close()
    assert framer.security == 2
    assert np.array_equal(shot, xvnc_pw.picture)
