"""The one byte relay (xcpconsole.relay) over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from xcpconsole.errors import ProtocolError
from xcpconsole.relay import Relay, RelayEnd, RelayResult, StreamEnd, TransportEnd

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@contextlib.asynccontextmanager
async def relayed(backend: Handler, *, kind: str = "stream", grace: float = 0.0,
                  a_to_b: Callable[[bytes], bytes] | None = None,
                  b_to_a: Callable[[bytes], bytes] | None = None,
                  ) -> AsyncIterator[tuple[int, list[RelayResult], list[Relay]]]:
    """A front port whose connections are relayed to ``backend`` by one Relay each."""
    results: list[RelayResult] = []
    relays: list[Relay] = []
    async with tcp_server(backend) as back_port:
        loop = asyncio.get_running_loop()

        async def run(front: RelayEnd) -> None:
            if kind == "stream":
                br, bw = await asyncio.open_connection("127.0.0.1", back_port)
                back: RelayEnd = StreamEnd(br, bw, "backend")
            else:
                _t, back = await loop.create_connection(
                    lambda: TransportEnd("backend"), "127.0.0.1", back_port)
            relay = Relay(front, back, a_to_b=a_to_b, b_to_a=b_to_a, grace=grace)
            relays.append(relay)
            results.append(await relay.run())

        if kind == "stream":
            async def on_front(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                await run(StreamEnd(r, w, "client"))
            server = await asyncio.start_server(on_front, "127.0.0.1", 0)
        else:
            tasks: set[asyncio.Task[None]] = set()

            def factory() -> asyncio.Protocol:
                end = TransportEnd("client")
                end._on_connect = lambda _tr: tasks.add(loop.create_task(run(end)))
                return end
            server = await loop.create_server(factory, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1], results, relays
        finally:
            server.close()


async def wait_for_result(results: list[RelayResult]) -> RelayResult:
    for _ in range(250):
        if results:
            return results[0]
        await asyncio.sleep(0.02)
    raise AssertionError("the relay did not end")


@pytest.mark.parametrize("kind", ["stream", "transport"])
async def test_half_close_passes_on_and_counts(kind: str) -> None:
    payload = os.urandom(1 << 20)

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the relayed half-close
        writer.write(hashlib.sha256(data).digest())
        writer.close()

    async with relayed(sink, kind=kind, grace=5.0) as (port, results, _):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(payload)
        w.write_eof()
        got = await asyncio.wait_for(r.read(), 10)
        w.close()
        result = await wait_for_result(results)
    assert got == hashlib.sha256(payload).digest()
    assert (result.a_to_b, result.b_to_a) == (len(payload), 32)
    assert result.first == "a" and result.error is None


@pytest.mark.parametrize("kind", ["stream", "transport"])
async def test_without_grace_one_eof_closes_both(kind: str) -> None:
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        with contextlib.suppress(ConnectionError):
            await reader.read()
        closed.set()

    async with relayed(silent, kind=kind) as (port, results, _):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"x")
        w.write_eof()
        assert await asyncio.wait_for(r.read(), 5) == b""  # the relay closed our side too
        await asyncio.wait_for(closed.wait(), 5)
        result = await wait_for_result(results)
    assert result.first == "a"


async def test_grace_is_bounded() -> None:
    async def ignores_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)  # never answers, never closes

    async with relayed(ignores_eof, grace=0.3) as (port, results, _):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write_eof()
        assert await asyncio.wait_for(r.read(), 5) == b""
        result = await wait_for_result(results)
    assert result.reason == "half-close grace over"


@pytest.mark.parametrize("kind", ["stream", "transport"])
async def test_stalled_reader_stalls_the_source(kind: str) -> None:
    """A client that does not read must stop the backend's writes (bounded memory)."""
    sent = 0
    stalled = asyncio.Event()

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        chunk = b"\0" * 65536
        try:
            while sent < 256 << 20:
                writer.write(chunk)
                sent += len(chunk)
                try:
                    await asyncio.wait_for(writer.drain(), 1.0)
                except TimeoutError:
                    stalled.set()
                    await writer.drain()
        except ConnectionError:
            pass

    async with relayed(firehose, kind=kind) as (port, _results, relays):
        r, w = await asyncio.open_connection("127.0.0.1", port, limit=65536)
        await asyncio.wait_for(stalled.wait(), 20)
        at_stall = sent
        await asyncio.sleep(0.5)
        assert sent == at_stall  # the relay stopped reading the backend
        # kernel buffers + the relay's high-water marks, nowhere near the 256 MiB offered
        assert relays[0].received["b"] < 24 << 20
        drained = 0
        while drained < 4 << 20:
            drained += len(await asyncio.wait_for(r.read(1 << 20), 5))
        assert sent > at_stall  # and resumed once we read
        w.close()


async def test_filter_rewrites_and_its_error_ends_the_relay() -> None:
    echoed = bytearray()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    def upper(data: bytes) -> bytes:
        if b"!" in data:
            raise ProtocolError("hostile byte")
        return data.upper()

    async with relayed(echo, a_to_b=upper) as (port, results, _):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"hello")
        while len(echoed) < 5:
            echoed += await asyncio.wait_for(r.read(100), 5)
        w.write(b"bad!")
        assert await asyncio.wait_for(r.read(), 5) == b""
        result = await wait_for_result(results)
    assert bytes(echoed) == b"HELLO"
    assert isinstance(result.error, ProtocolError) and "hostile byte" in result.reason


async def test_send_injects_in_order_and_close_ends() -> None:
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"from-backend")
        await reader.read()

    async with relayed(hello) as (port, results, relays):
        r, _w = await asyncio.open_connection("127.0.0.1", port)
        got = await asyncio.wait_for(r.readexactly(12), 5)
        relays[0].send("a", b"+injected")
        assert await asyncio.wait_for(r.readexactly(9), 5) == b"+injected"
        relays[0].close("operator")
        assert await asyncio.wait_for(r.read(), 5) == b""
        result = await wait_for_result(results)
    assert got == b"from-backend"
    assert (result.first, result.reason) == ("closed", "operator")


async def test_transport_end_reports_what_happened_before_start() -> None:
    """A viewer that connects and leaves while the tunnel is still opening."""
    loop = asyncio.get_running_loop()
    ends: list[TransportEnd] = []

    def factory() -> asyncio.Protocol:
        ends.append(TransportEnd("early"))
        return ends[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"ignored")
    w.close()
    await asyncio.sleep(0.2)

    class Null(RelayEnd):
        def start(self) -> None: ...
        def write(self, data: bytes) -> None: ...
        def pause_reading(self) -> None: ...
        def resume_reading(self) -> None: ...
        def close(self) -> None: ...

    relay = Relay(ends[0], Null())
    result = await asyncio.wait_for(relay.run(), 5)
    server.close()
    # its bytes were held (reading paused), then relayed, then its EOF ended the relay
    assert result.first == "a" and result.a_to_b == len(b"ignored")
