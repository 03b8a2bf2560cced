"""The ClientInit shared-flag rewriter: real server sessions recorded, then replayed split
at every byte boundary; refusals, foreign security types and hostile bytes pass untouched."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xcpconsole.rfb import events as ev
from xcpconsole.rfb import handshake as hs
from xcpconsole.rfb import messages as msg
from xcpconsole.rfb.auth import vnc_auth_response
from xcpconsole.rfb.server import ServerConnection
from xcpconsole.rfb.shareflag import ShareFlagRewriter, ShareFlagState

Turn = tuple[str, bytes]  # ("s", server -> viewer) or ("c", viewer -> server)
PASSWORD = "pw"
AFTER_INIT = msg.pack_set_encodings([0, 5]) + msg.pack_framebuffer_update_request(False, 0, 0,
                                                                                   8, 4)


@dataclass
class Session:
    turns: list[Turn] = field(default_factory=list)
    client_init_at: int = -1  # offset of ClientInit in the viewer's byte stream
    server_saw_shared: bool | None = None


def record(server_version: tuple[int, int], viewer_version: bytes, password: str | None,
           flag: int) -> Session:
    """A real ServerConnection and a scripted viewer, live through one rewriter."""
    server = ServerConnection(width=8, height=4, name="t", version=server_version,
                              password=password)
    rw = ShareFlagRewriter()
    s = Session()
    sent = 0

    def said() -> bytes:
        data = server.data_to_send()
        if data:
            s.turns.append(("s", data))
            assert rw.server_data(data) is data
        return data

    def send(data: bytes) -> None:
        nonlocal sent
        s.turns.append(("c", data))
        out = rw.client_data(data)
        assert len(out) == len(data)
        sent += len(data)
        server.receive_data(out)
        while (event := server.next_event()) is not None:
            if isinstance(event, ev.ClientHandshakeDone):
                s.server_saw_shared = event.shared

    said()
    send(viewer_version)
    major, minor = hs.parse_version(viewer_version, "viewer")
    version = min(hs.effective_version(major, minor, "viewer"), server_version)
    greeting = said()
    if version == (3, 3):
        sec = struct.unpack(">I", greeting[:4])[0]
        challenge = greeting[4:20]
    else:
        sec = 2 if password else 1
        assert greeting == bytes([1, sec])
        send(bytes([sec]))
        challenge = said()
    if sec == 2:
        assert password is not None
        send(vnc_auth_response(password, challenge[:16]))
        said()  # SecurityResult
    s.client_init_at = sent
    send(bytes([flag]) + AFTER_INIT)
    said()  # ServerInit
    assert rw.state is ShareFlagState.DONE and rw.gave_up is None
    assert rw.version == version and rw.security_type == sec
    assert rw.rewritten == (flag == 0) and rw.viewer_shared == (flag != 0)
    return s


def replay(turns: list[Turn]) -> tuple[ShareFlagRewriter, list[Turn]]:
    rw = ShareFlagRewriter()
    out: list[Turn] = []
    for side, data in turns:
        if side == "s":
            got = rw.server_data(data)
            assert got is data
        else:
            got = rw.client_data(data)
            if rw.finished and got == data:
                assert got is data  # untouched chunks are never copied
        assert len(got) == len(data)
        out.append((side, got))
    return rw, out


def viewer_stream(turns: list[Turn]) -> bytes:
    return b"".join(d for side, d in turns if side == "c")


def merged(turns: list[Turn]) -> list[Turn]:
    """Consecutive turns of one side as one chunk (what a pipelining viewer may send)."""
    out: list[Turn] = []
    for side, data in turns:
        if out and out[-1][0] == side:
            out[-1] = (side, out[-1][1] + data)
        else:
            out.append((side, data))
    return out


def splits(turns: list[Turn]) -> list[list[Turn]]:
    """Every way to cut one turn in two, plus every byte on its own."""
    variants = [[(side, data[i:i + 1]) for side, data in turns for i in range(len(data))]]
    for t, (side, data) in enumerate(turns):
        for k in range(1, len(data)):
            variants.append([*turns[:t], (side, data[:k]), (side, data[k:]), *turns[t + 1:]])
    return variants


V33, V37, V38 = b"RFB 003.003\n", b"RFB 003.007\n", b"RFB 003.008\n"
ODD_AS_33 = (b"RFB 003.005\n", b"RFB 003.889\n")
COMBOS = [
    (sv, vv, pw, flag)
    for sv, answers in (((3, 3), (V33,)), ((3, 7), (V33, V37)), ((3, 8), (V33, V37, V38)))
    for vv in (*answers, *ODD_AS_33)
    for pw in (None, PASSWORD)
    for flag in (0, 1)
]


@pytest.mark.parametrize(("server_version", "viewer_version", "password", "flag"), COMBOS)
def test_every_version_and_security_split_at_every_byte(
        server_version: tuple[int, int], viewer_version: bytes, password: str | None,
        flag: int) -> None:
    session = record(server_version, viewer_version, password, flag)
    assert session.server_saw_shared is True  # the real server was told "shared"
    original = viewer_stream(session.turns)
    assert original[session.client_init_at] == flag
    expected = bytearray(original)
    expected[session.client_init_at] = 1
    for turns in [session.turns, merged(session.turns), *splits(session.turns)]:
        rw, out = replay(turns)
        assert viewer_stream(out) == expected
        assert [d for s, d in out if s == "s"] == [d for s, d in turns if s == "s"]
        assert rw.state is ShareFlagState.DONE
        assert rw.rewritten == (flag == 0)


def test_after_client_init_both_directions_return_their_input_itself() -> None:
    rw, _ = replay([("s", V38), ("c", V38), ("s", b"\x01\x01"), ("c", b"\x01"),
                    ("s", bytes(4)), ("c", b"\x00")])
    assert rw.rewritten and rw.finished
    big = bytes(1 << 20)
    assert rw.client_data(big) is big
    assert rw.server_data(big) is big


@pytest.mark.parametrize(("server", "viewer"), [
    (b"RFB 003.889\n" + struct.pack(">I", 1), V33),  # Apple's version is 3.3
    (b"RFB 004.001\n" + b"\x01\x01", V38),  # a later major version speaks 3.8
    (V38 + struct.pack(">I", 1), b"RFB 003.005\n"),  # 3.5 is 3.3 to the server too
])
def test_unusual_versions(server: bytes, viewer: bytes) -> None:
    version = server[:12]
    security = server[12:]
    turns: list[Turn] = [("s", version), ("c", viewer), ("s", security)]
    if len(security) == 2:
        turns.append(("c", b"\x01"))
        turns.append(("s", bytes(4)))
    turns.append(("c", b"\x00"))
    rw, out = replay(turns)
    assert out[-1] == ("c", b"\x01")
    assert rw.state is ShareFlagState.DONE


REFUSAL_REASON = hs.pack_reason("too many clients")


@pytest.mark.parametrize(("turns", "why"), [
    # not RFB at all: the benchmark's byte stream, an SSH server, an HTTP client
    ([("s", bytes(4096)), ("c", bytes(64))], "malformed ProtocolVersion"),
    ([("s", b"SSH-2.0-OpenSSH_9.6\r\n"), ("c", bytes(16))], "malformed ProtocolVersion"),
    ([("s", V38), ("c", b"GET / HTTP/1.1\r\n\r\n\x00")], "malformed ProtocolVersion"),
    ([("s", V38), ("c", b"RFB 002.000\n\x00")], "2.0"),
    # the server refused the connection
    ([("s", V33), ("c", V33), ("s", bytes(4) + REFUSAL_REASON), ("c", b"\x00")], "refused"),
    ([("s", V38), ("c", V38), ("s", b"\x00" + REFUSAL_REASON), ("c", b"\x01\x00")],
     "refused"),
    # VeNCrypt (19): TLS follows, ClientInit cannot be seen
    ([("s", V38), ("c", V38), ("s", b"\x02\x13\x01"), ("c", b"\x13"), ("s", b"\x00\x02"),
      ("c", b"\x00\x02\x00"), ("c", b"\x00")], "security type 19"),
    # a choice that was not offered (the server fails it)
    ([("s", V38), ("c", V38), ("s", b"\x01\x01"), ("c", b"\x02"), ("c", bytes(16) + b"\x00")],
     "not among the offered [1]"),
    # viewers speaking out of turn
    ([("s", V33), ("c", V33 + b"\x00")], "before the server chose"),
    ([("c", V38), ("s", V38), ("c", b"\x01\x00")], "before the server's"),
    ([("s", V38), ("c", V38 + b"\x01\x00")], "before the server offered"),
])
def test_bytes_it_cannot_follow_pass_untouched(turns: list[Turn], why: str) -> None:
    for variant in [turns, *splits(turns)]:
        rw, out = replay(variant)
        assert out == variant  # nothing changed, not even a 0 after the point it gave up
        assert rw.state is ShareFlagState.GAVE_UP
        assert rw.gave_up is not None and why in rw.gave_up, rw.gave_up
        assert not rw.rewritten
        later = bytes(100)
        assert rw.client_data(later) is later and rw.server_data(later) is later


FRAGMENTS = [V33, V37, V38, b"RFB 003.889\n", b"RFB 000.000\n", b"\x00", b"\x01", b"\x02",
             b"\x01\x01", b"\x01\x02", b"\x02\x01\x02", bytes(4), b"\x00\x00\x00\x01",
             b"\x00\x00\x00\x02", bytes(16), REFUSAL_REASON, b"\xff" * 5]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("sc"),
                          st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=40))),
                max_size=12))
def test_hostile_sequences_change_at_most_one_zero_to_one(turns: list[Turn]) -> None:
    rw, out = replay(turns)  # nothing may raise
    before, after = viewer_stream(turns), viewer_stream(out)
    diff = [i for i in range(len(before)) if before[i] != after[i]]
    assert len(diff) <= 1
    if diff:
        assert (before[diff[0]], after[diff[0]]) == (0, 1)
        assert rw.rewritten and rw.state is ShareFlagState.DONE
    else:
        assert not rw.rewritten
