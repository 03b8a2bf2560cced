"""The idle monitor's RFB parser (sim/idle.py), byte by byte, and its timer."""

from __future__ import annotations

import asyncio
import struct

import pytest

from xcpconsole.sim.idle import Feed, IdleParser, IdleWatch

HANDSHAKE = b"RFB 003.003\n\x01"
FBUR = struct.pack(">BBHHHH", 3, 1, 0, 0, 640, 384)
KEY = struct.pack(">BBxxI", 4, 1, 0x61)
POINTER = struct.pack(">BBHH", 5, 0, 10, 20)
QEMU_KEY = struct.pack(">BBHII", 255, 0, 1, 0x61, 0x1E)
PIXEL_FORMAT = b"\x00\x00\x00\x00" + bytes(16)
ENCODINGS = struct.pack(">BxH", 2, 3) + struct.pack(">iii", 0, 1, -239)
CUT_TEXT = struct.pack(">BxxxI", 6, 5) + b"hello"


def parsed(*chunks: bytes) -> list[Feed]:
    parser = IdleParser()
    return [parser.receive_data(chunk) for chunk in chunks]


def test_handshake_and_requests_are_quiet() -> None:
    assert parsed(HANDSHAKE, PIXEL_FORMAT + ENCODINGS, FBUR * 3, CUT_TEXT) == [Feed.QUIET] * 4


@pytest.mark.parametrize("message", [KEY, POINTER, QEMU_KEY])
def test_key_pointer_and_qemu_messages_are_activity(message: bytes) -> None:
    assert parsed(HANDSHAKE, FBUR + message + FBUR, FBUR) == [Feed.QUIET, Feed.ACTIVE,
                                                              Feed.QUIET]


def test_messages_split_anywhere_still_parse() -> None:
    stream = HANDSHAKE + ENCODINGS + FBUR + CUT_TEXT + KEY + POINTER + QEMU_KEY + FBUR
    parser = IdleParser()
    verdicts = [parser.receive_data(stream[i:i + 1]) for i in range(len(stream))]
    assert Feed.OFF not in verdicts
    # activity is reported by the byte that completes a key, pointer or QEMU message
    ends = {len(HANDSHAKE + ENCODINGS + FBUR + CUT_TEXT + KEY) - 1,
            len(HANDSHAKE + ENCODINGS + FBUR + CUT_TEXT + KEY + POINTER) - 1,
            len(stream) - len(FBUR) - 1}
    assert {i for i, v in enumerate(verdicts) if v is Feed.ACTIVE} == ends


def test_rfb_38_client_switches_the_parser_off_for_good() -> None:
    parser = IdleParser()
    assert parser.receive_data(b"RFB 003.008\n") is Feed.QUIET  # still waiting for a byte
    assert parser.receive_data(b"\x01") is Feed.OFF  # 3.8: the security type, not ClientInit
    assert parser.off and "BadHandshake" in parser.why_off
    assert parser.receive_data(HANDSHAKE + KEY) is Feed.OFF


@pytest.mark.parametrize("bad", [
    b"RFB 003.003\n\x02",  # shared-flag must be 0 or 1 (a 3.3 VNC-auth response is not)
    HANDSHAKE + b"\xfa\x00\x00\x01",  # XVP (250): not one of xapi's messages
    HANDSHAKE + b"\x96\x00\x00\x00\x00\x00\x00\x00\x00\x00",  # EnableContinuousUpdates
    HANDSHAKE + struct.pack(">Bxxxi", 6, -1),  # ClientCutText with a negative length
])
def test_anything_else_is_a_parse_error(bad: bytes) -> None:
    assert parsed(bad) == [Feed.OFF]


def test_activity_in_a_failing_read_counts_for_nothing() -> None:
    assert parsed(HANDSHAKE, KEY + b"\xfa") == [Feed.QUIET, Feed.OFF]


def test_huge_cut_text_is_skipped_not_buffered() -> None:
    parser = IdleParser()
    parser.receive_data(HANDSHAKE + struct.pack(">BxxxI", 6, 1 << 30))
    for _ in range(64):
        assert parser.receive_data(bytes(1 << 16)) is Feed.QUIET
    assert len(parser._head) == 0  # nothing of the text is kept
    assert parser._skip == (1 << 30) - 64 * (1 << 16)


async def test_watch_fires_after_the_timeout_unless_active() -> None:
    now = [0.0]
    fired: list[float] = []
    watch = IdleWatch(3.0, lambda: fired.append(now[0]), clock=lambda: now[0])
    task = asyncio.create_task(watch.run())
    assert watch.feed(HANDSHAKE) == HANDSHAKE  # the filter returns its input
    now[0] = 2.0
    watch.feed(KEY)  # activity at t=2: the deadline moves to t=5
    assert watch.deadline == 5.0
    now[0] = 4.9
    watch.feed(FBUR * 5)  # requests are not activity
    assert watch.deadline == 5.0 and not fired
    now[0] = 6.0  # the (real) timer wakes up at some point after the deadline
    await asyncio.wait_for(task, 5.0)
    assert fired == [6.0] and watch.timed_out


async def test_watch_stops_when_the_parser_turns_off() -> None:
    fired: list[bool] = []
    watch = IdleWatch(0.05, lambda: fired.append(True))
    task = asyncio.create_task(watch.run())
    watch.feed(b"RFB 003.008\n\x01")
    await asyncio.wait_for(task, 5.0)
    await asyncio.sleep(0.1)
    assert not fired and not watch.timed_out
