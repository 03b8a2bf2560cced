"""The local proxy, in-process, against the simulated host's real console backends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from xcpconsole.errors import TunnelError
from xcpconsole.net.proxy import ConsoleProxy, serve_proxy
from xcpconsole.settings import HostSettings
from xcpconsole.xapi import XapiSession


def settings_of(sim, tmp_path: Path) -> HostSettings:  # type: ignore[no-untyped-def]
    return HostSettings(url=sim.url, user=sim.user, password=sim.password,
                        fingerprint=sim.fingerprint, known_hosts=tmp_path / "kh")


async def rfb_handshake(port: int) -> tuple[bytes, bytes, asyncio.StreamWriter]:
    return (await rfb_handshake_streams(port))[1:]  # type: ignore[return-value]


async def rfb_handshake_streams(port: int) -> tuple[asyncio.StreamReader, bytes, bytes,
                                                    asyncio.StreamWriter]:
    """Version exchange + security types of an RFB 3.8 server (QEMU: [1] = None)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    version = await asyncio.wait_for(reader.readexactly(12), 10)
    writer.write(b"RFB 003.008\n")
    n = (await asyncio.wait_for(reader.readexactly(1), 10))[0]
    types = await asyncio.wait_for(reader.readexactly(n), 10)
    return reader, version, types, writer


async def vncterm_handshake(port: int) -> tuple[bytes, bytes]:
    """RFB 3.3 start with the sim's virtual terminal: greeting, then the u32 security type."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        greeting = await asyncio.wait_for(reader.readexactly(12), 10)
        writer.write(b"RFB 003.003\n")
        return greeting, await asyncio.wait_for(reader.readexactly(4), 10)
    finally:
        writer.close()


async def test_every_connection_gets_its_own_tunnel(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # vncterm, not QEMU: QEMU itself now and then drops one of several simultaneous
    # VNC clients (seen on its unix socket directly), which is not what this tests.
    messages: list[str] = []
    async with await XapiSession.login(settings_of(sim_host, tmp_path)) as xapi:
        proxy = ConsoleProxy(xapi, await xapi.find_console("debian-pv"), report=messages.append)
        _, port = await proxy.start("127.0.0.1", 0)
        try:
            results = await asyncio.gather(*(vncterm_handshake(port) for _ in range(6)))
            assert results == [(b"RFB 003.003\n", b"\0\0\0\1")] * 6
            assert proxy.accepted == 6
            assert len([m for m in messages if "tunnel open" in m]) == 6
        finally:
            await proxy.close()


async def test_failing_tunnel_closes_only_its_connection(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    messages: list[str] = []
    async with await XapiSession.login(settings_of(sim_host, tmp_path)) as xapi:
        proxy = ConsoleProxy(xapi, await xapi.find_console("win-hvm"), report=messages.append)
        _, port = await proxy.start("127.0.0.1", 0)
        try:
            good_reader, _, _, good = await rfb_handshake_streams(port)
            real_open = proxy.open

            async def failing_open() -> tuple[asyncio.Transport, bytes]:
                raise TunnelError("console tunnel refused: test", status=500)

            proxy.open = failing_open  # type: ignore[method-assign]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            proxy.open = real_open  # type: ignore[method-assign]
            # the first connection still talks to QEMU: pick None security -> SecurityResult OK
            good.write(b"\x01")
            assert await asyncio.wait_for(good_reader.readexactly(4), 10) == b"\0\0\0\0"
            assert any("test" in m for m in messages)
            assert len([m for m in messages if "tunnel open" in m]) == 1
            good.close()
        finally:
            await proxy.close()


async def test_once_serves_one_connection_then_returns(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    async with await XapiSession.login(settings_of(sim_host, tmp_path)) as xapi:
        console = await xapi.find_console("debian-pv")
        task = asyncio.ensure_future(serve_proxy(
            xapi, console, ("127.0.0.1", 0), once=True,
            on_ready=lambda h, p: ready.set_result(p), report=lambda m: None))
        port = await asyncio.wait_for(ready, 10)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.readexactly(12), 10) == b"RFB 003.003\n"
        writer.close()
        assert await asyncio.wait_for(task, 10) == 1
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)


async def test_new_console_ref_after_vm_restart_is_found(sim_host, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with await XapiSession.login(settings_of(sim_host, tmp_path)) as xapi:
        console = await xapi.find_console("debian-pv")
        proxy = ConsoleProxy(xapi, console, report=lambda m: None)
        _, port = await proxy.start("127.0.0.1", 0)
        try:
            await xapi.call("VM.hard_shutdown", console.vm_ref)
            await xapi.call("VM.start", console.vm_ref, False, False)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.readexactly(12), 10) == b"RFB 003.003\n"
            writer.close()
            assert proxy.console.ref != console.ref
        finally:
            await proxy.close()
