"""The virtual terminal (sim/vncterm): font, guest, keys, and RFB/vt100 serving.

Pixels are compared with pixels built from the font file's bytes (textshot.py),
through the project's own RFB client, a raw RFB 3.3 handshake, and vncdotool.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import shutil
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from xcpconsole.net.vnc import open_vnc
from xcpconsole.rfb import events as ev
from xcpconsole.rfb.client import ClientConnection
from xcpconsole.rfb.constants import Encoding
from xcpconsole.sim.backends import BackendError, ConsoleBackend
from xcpconsole.sim.vncterm import (
    FontError,
    GuestState,
    KeyboardState,
    ScriptedGuest,
    TerminalScreen,
    VirtualTerminal,
    damage_rects,
    load_console_font,
    parse_psf,
    read_font_file,
    render_text,
)

from .textshot import CELL_H, FONT_FILE, expected_row, glyph_bits, load_png, rows_matching

HOST = "xcp-sim"
PROMPT = f"{HOST} login: "
PROMPT_ROW = 18  # the "linux" boot log is 18 rows: the prompt has free rows below
IO_TIMEOUT = 20.0  # a bound against hangs, never asserted on
VNCDOTOOL = Path(sys.executable).parent / "vncdotool"

# -- font ------------------------------------------------------------------------------


def test_real_psf1_font_matches_file_bytes() -> None:
    font = load_console_font()
    assert font.glyphs.shape == (256, 16, 8)
    for char in "Az0~ @":
        assert font.index(char) == ord(char)
        assert np.array_equal(font.glyph(char), glyph_bits(char))
    assert font.index("é") != font.index("?")  # Latin-1 via the Unicode table
    assert font.index("\u4e2d") == font.index("?")  # no CJK: falls back to "?"


def test_real_psf2_font() -> None:
    font = read_font_file(Path("/usr/share/consolefonts/Lat15-Terminus18x10.psf.gz"))
    assert font.glyphs.shape == (256, 18, 10)
    raw = gzip.decompress(Path("/usr/share/consolefonts/Lat15-Terminus18x10.psf.gz").read_bytes())
    header_size, _, _count, charsize = struct.unpack_from("<IIII", raw, 8)
    a = font.index("A")
    rows = raw[header_size + a * charsize:header_size + (a + 1) * charsize]
    bits = [[(int.from_bytes(rows[2 * r:2 * r + 2], "big") >> (15 - c)) & 1 for c in range(10)]
            for r in range(18)]
    assert np.array_equal(font.glyph("A"), np.array(bits, bool))


def _psf2(glyph_rows: list[list[int]], width: int, table: bytes) -> bytes:
    height = len(glyph_rows[0])
    row_bytes = (width + 7) // 8
    header = struct.pack("<4sIIIIIII", b"\x72\xb5\x4a\x86", 0, 32, 1, len(glyph_rows),
                         height * row_bytes, height, width)
    body = b"".join(v.to_bytes(row_bytes, "big") for g in glyph_rows for v in g)
    return header + body + table


def test_synthetic_psf2_with_unicode_table() -> None:
    # glyph 0: a 10-pixel wide top bar; glyph 1: the leftmost and rightmost pixels
    data = _psf2([[0xFFC0, 0, 0], [0, 0x8040, 0]], 10,
                 b"A" + b"\xff" + "é".encode() + b"\xfe" + "e\u0301".encode() + b"\xff")
    font = parse_psf(data)
    assert font.glyphs.shape == (2, 3, 10)
    assert font.glyphs[0, 0].all() and not font.glyphs[0, 1:].any()
    assert font.glyphs[1, 1].tolist() == [True] + [False] * 8 + [True]
    assert font.unicode_map == {"A": 0, "é": 1}


@pytest.mark.parametrize("data", [
    b"", b"\x36", b"\x36\x04\x00\x10" + b"\x00" * 100, b"nope" * 20,
    struct.pack("<4sIIIIIII", b"\x72\xb5\x4a\x86", 0, 32, 0, 1 << 30, 16, 16, 8),
    struct.pack("<4sIIIIIII", b"\x72\xb5\x4a\x86", 0, 32, 0, 1, 16, 16, 8),  # no bitmaps
    struct.pack("<4sIIIIIII", b"\x72\xb5\x4a\x86", 0, 32, 0, 1, 99, 16, 8),  # size mismatch
])
def test_malformed_fonts_raise_font_error(data: bytes) -> None:
    with pytest.raises(FontError):
        parse_psf(data)


def test_missing_font_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(FontError, match="console-setup-linux"):
        load_console_font(tmp_path / "nope.psf.gz")


# -- guest, keys, screen ----------------------------------------------------------------------


def _booted_guest() -> tuple[ScriptedGuest, bytes]:
    guest = ScriptedGuest(vm_name="debian-pv", hostname=HOST)
    log = b"".join(chunk for _, chunk in guest.boot_steps())
    return guest, log + guest.finish_boot()


def test_boot_log_is_fast_deterministic_and_ends_at_login() -> None:
    guest, log = _booted_guest()
    assert sum(delay for delay, _ in guest.boot_steps()) < 1.0
    assert _booted_guest()[1] == log
    text = log.decode()
    assert "debian-pv" in text and f"<{HOST}>" in text and "Started" in text
    assert text.endswith(PROMPT) and guest.state is GuestState.LOGIN


def test_unknown_boot_script_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match="boot_script"):
        ScriptedGuest(vm_name="x", hostname=HOST, boot_script="windows")


def test_login_flow_and_shell() -> None:
    guest, _ = _booted_guest()
    assert ScriptedGuest(vm_name="x", hostname=HOST).receive_input(b"root\r") == b""  # booting
    assert guest.receive_input(b"bob") == b"bob"
    assert guest.receive_input(b"\r") == b"\r\nPassword: "
    assert guest.receive_input(b"secret") == b""  # no echo
    assert guest.receive_input(b"\r") == f"\r\n\r\nLogin incorrect\r\n{PROMPT}".encode()
    guest.receive_input(b"rooX\x7ft\r")
    assert guest.state is GuestState.PASSWORD
    out = guest.receive_input(b"anything\r").decode()
    assert guest.state is GuestState.SHELL and out.endswith(f"[root@{HOST} ~]# ")
    prompt = f"[root@{HOST} ~]# "
    assert guest.receive_input(b"echo hello world\r") == \
        f"echo hello world\r\nhello world\r\n{prompt}".encode()
    assert guest.receive_input(b"hostname\r").decode().split("\r\n")[1] == HOST
    assert guest.receive_input(b"uname -a\r").decode().split("\r\n")[1].startswith(
        f"Linux {HOST} ")
    assert b"command not found" in guest.receive_input(b"frobnicate\r")
    assert guest.receive_input(b"\x1b[A\x1bOB") == b""  # arrow keys are ignored
    assert guest.receive_input(b"\x04").endswith(PROMPT.encode())  # ^D logs out
    assert guest.state is GuestState.LOGIN


def test_line_buffer_is_bounded() -> None:
    guest, _ = _booted_guest()
    out = guest.receive_input(b"x" * 1000)
    assert out.count(b"x") == 256 and out.count(b"\a") == 744


def test_keysyms_to_bytes() -> None:
    kb = KeyboardState()

    def press(*syms: int) -> bytes:
        out = b"".join(kb.key_event(True, s) for s in syms)
        for s in reversed(syms):
            kb.key_event(False, s)
        return out

    assert press(ord("a")) == b"a" and press(ord("A")) == b"A"
    assert press(0xFF0D) == b"\r" and press(0xFF08) == b"\x7f" and press(0xFF09) == b"\t"
    assert press(0xFF1B) == b"\x1b" and press(0xFF52) == b"\x1b[A" and press(0xFF51) == b"\x1b[D"
    assert press(0xFFE3, ord("c")) == b"\x03" and press(0xFFE4, ord("D")) == b"\x04"
    assert press(0xFFE9, ord("x")) == b"\x1bx"
    assert press(0xE9) == "é".encode() and press(0x010020AC) == "€".encode()
    assert press(0xFFBE) == b"" and press(0xFFE1) == b""  # F1, Shift
    assert kb.key_event(False, ord("a")) == b""


def test_screen_damage_is_only_changed_cells() -> None:
    screen = TerminalScreen(load_console_font())
    screen.feed(b"hello")
    damage = screen.feed(b"!")
    # the "!" cell and the cell the cursor moved to
    assert np.argwhere(damage).tolist() == [[0, 5], [0, 6]]
    assert damage_rects(damage, 8, 16) == [(40, 0, 16, 16)]
    assert np.array_equal(screen.frame[:16], expected_row("hello!", cursor=6))
    assert np.array_equal(render_text(screen.font, "hello!"), expected_row("hello!")[:, :48])


def test_scrolled_screen_pixels_match_the_text() -> None:
    """After scrolling (rows are moved, not redrawn) every row still shows its text."""
    screen = TerminalScreen(load_console_font())
    for i in range(40):
        screen.feed(f"line {i:02d} {'=' * (i % 7)}".encode() + (b"\r\n" if i < 39 else b""))
    for row, text in enumerate(screen.lines()):
        cursor = len(text.rstrip()) if row == 23 else None
        assert np.array_equal(screen.frame[row * 16:(row + 1) * 16],
                              expected_row(text.rstrip(), cursor=cursor)), row
    assert screen.lines()[0].startswith("line 16 ")


def test_screen_colours_and_repaint() -> None:
    screen = TerminalScreen(load_console_font())
    screen.feed(b"\x1b[31mR\x1b[1;32mG\x1b[0m\x1b[7mV\x1b[0m\r\n")
    red = np.array([170, 0, 0]), np.array([85, 255, 85])
    assert (screen.frame[:16, 0:8] == red[0]).all(axis=2).any()
    assert (screen.frame[:16, 8:16] == red[1]).all(axis=2).any()
    assert (screen.frame[:16, 16:24] == (170, 170, 170)).all(axis=2).sum() > 64  # reversed
    other = TerminalScreen(load_console_font())
    other.feed(screen.repaint_bytes())
    assert np.array_equal(other.frame, screen.frame)


def test_damage_rects_merge_rows() -> None:
    mask = np.zeros((24, 80), bool)
    mask[2:4, 5:7] = True
    mask[10, 0] = mask[10, 79] = True
    assert damage_rects(mask, 8, 16) == [(40, 32, 16, 32), (0, 160, 640, 16)]


# -- the running terminal ---------------------------------------------------------------------


@pytest.fixture
async def vt(tmp_path: Path) -> AsyncIterator[VirtualTerminal]:
    term = VirtualTerminal(vm_name="debian-pv", hostname=HOST, run_dir=tmp_path / "run")
    assert isinstance(term, ConsoleBackend)
    await term.start()
    try:
        await asyncio.wait_for(term.booted.wait(), IO_TIMEOUT)
        yield term
    finally:
        await term.stop()
    assert not list((tmp_path / "run").iterdir())  # sockets removed


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, tries: int = 100) -> None:
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"never happened: {what}")


async def test_raw_rfb33_handshake(vt: VirtualTerminal) -> None:
    reader, writer = await asyncio.open_unix_connection(str(vt.socket_for("rfb")))
    try:
        assert await asyncio.wait_for(reader.readexactly(12), IO_TIMEOUT) == b"RFB 003.003\n"
        writer.write(b"RFB 003.003\n")
        assert await asyncio.wait_for(reader.readexactly(4), IO_TIMEOUT) == b"\0\0\0\1"
        writer.write(b"\x01")
        init = await asyncio.wait_for(reader.readexactly(24), IO_TIMEOUT)
        width, height = struct.unpack(">HH", init[:4])
        assert (width, height) == (640, 384)
        name = await reader.readexactly(struct.unpack(">I", init[20:24])[0])
        assert name == b"XenServer Virtual Terminal"
    finally:
        writer.close()
    with pytest.raises(BackendError):
        vt.socket_for("rdp")


async def test_project_client_sees_prompt_and_echo(vt: VirtualTerminal) -> None:
    prompt = expected_row(PROMPT, cursor=len(PROMPT))
    async with await open_vnc(f"unix:{vt.socket_for('rfb')}", timeout=IO_TIMEOUT) as vnc:
        assert (vnc.width, vnc.height, vnc.name) == (640, 384, "XenServer Virtual Terminal")
        assert vnc.version == (3, 3)
        shot = await vnc.screenshot()
        assert rows_matching(shot, prompt) == [PROMPT_ROW]
        assert np.array_equal(shot, vt.screen.frame)
        await vnc.type_text("abc")
        typed = expected_row(PROMPT + "abc", cursor=len(PROMPT) + 3)

        async def echoed() -> bool:
            return rows_matching(await vnc.screenshot(), typed) == [PROMPT_ROW]

        await _eventually(echoed, "typed text echoed on the prompt row")


async def _rfb_session(path: Path) -> tuple[ClientConnection, asyncio.StreamReader,
                                           asyncio.StreamWriter]:
    """Sans-I/O client over a unix socket, handshake done, Raw only (to see every rect)."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    conn = ClientConnection(encodings=[Encoding.RAW])
    ready = False
    while not ready:
        conn.receive_data(await asyncio.wait_for(reader.read(65536), IO_TIMEOUT))
        while (event := conn.next_event()) is not None:
            ready = ready or isinstance(event, ev.ServerInitReceived)
        writer.write(conn.data_to_send())  # replies are queued while events are parsed
    return conn, reader, writer


async def _next_update(conn: ClientConnection, reader: asyncio.StreamReader
                       ) -> ev.FramebufferUpdated:
    while True:
        event = conn.next_event()
        if isinstance(event, ev.FramebufferUpdated):
            return event
        if event is None:
            data = await asyncio.wait_for(reader.read(65536), IO_TIMEOUT)
            assert data, "server closed"
            conn.receive_data(data)


async def test_incremental_updates_carry_only_damage(vt: VirtualTerminal) -> None:
    conn, reader, writer = await _rfb_session(vt.socket_for("rfb"))
    other, oreader, owriter = await _rfb_session(vt.socket_for("rfb"))
    try:
        for c, w in ((conn, writer), (other, owriter)):
            c.request_update(incremental=False)
            w.write(c.data_to_send())
        full = await _next_update(conn, reader)
        assert sum(r.width * r.height for r in full.rects) == 640 * 384
        await _next_update(other, oreader)
        conn.request_update(incremental=True)
        conn.key_event(True, ord("x"))
        conn.key_event(False, ord("x"))
        writer.write(conn.data_to_send())
        update = await _next_update(conn, reader)
        # the echoed "x" and the cursor's new cell: one 16x16 rect on the prompt row
        assert [(r.x, r.y, r.width, r.height) for r in update.rects] == \
            [(len(PROMPT) * 8, PROMPT_ROW * CELL_H, 16, 16)]
        assert conn.framebuffer is not None
        assert np.array_equal(conn.framebuffer, vt.screen.frame)
        # the second client saw the same change once it asks
        other.request_update(incremental=True)
        owriter.write(other.data_to_send())
        await _next_update(other, oreader)
        assert np.array_equal(other.framebuffer, vt.screen.frame)  # type: ignore[arg-type]
    finally:
        writer.close()
        owriter.close()


async def test_stalled_client_memory_is_bounded(tmp_path: Path) -> None:
    """A client that keeps asking for updates but never reads them: the server buffers
    at most about one frame beyond its high-water mark (damage merges meanwhile)."""
    term = VirtualTerminal(vm_name="v", hostname=HOST, run_dir=tmp_path / "r",
                           write_high_water=64 * 1024)
    await term.start()
    try:
        conn, _reader, writer = await _rfb_session(term.socket_for("rfb"))
        for i in range(60):
            conn.request_update(incremental=i > 0)
            writer.write(conn.data_to_send())
            for j in range(5):  # every burst scrolls the whole screen
                term.output(f"line {i}.{j} of a flood {'#' * (i % 60)}\r\n".encode())
            await asyncio.sleep(0.01)
        (client,) = term._rfb_clients
        one_frame = 640 * 384 * 4 + 64  # Raw, 32 bpp
        assert client.writer.transport.get_write_buffer_size() <= 64 * 1024 + one_frame
        assert client.damage.shape == (24, 80)  # all pending work is one merged mask
        writer.close()
    finally:
        await term.stop()


async def test_vt100_stream_repaint_and_input(vt: VirtualTerminal) -> None:
    reader, writer = await asyncio.open_unix_connection(str(vt.socket_for("vt100")))
    try:
        seen = b""
        cursor_placed = f"\x1b[{PROMPT_ROW + 1};{len(PROMPT) + 1}H".encode()
        while not seen.endswith(cursor_placed):
            seen += await asyncio.wait_for(reader.read(4096), IO_TIMEOUT)
        assert seen.startswith(b"\x1b[0m\x1b[H\x1b[2J")  # a repaint of the screen first
        assert f"\x1b[{PROMPT_ROW + 1};1H\x1b[0m{PROMPT.rstrip()}".encode() in seen
        writer.write(b"root\r")
        seen = b""
        while b"Password: " not in seen:
            seen += await asyncio.wait_for(reader.read(4096), IO_TIMEOUT)
        assert seen == b"root\r\nPassword: "  # the guest's bytes, as they are
        assert vt.screen.lines()[PROMPT_ROW + 1].rstrip() == "Password:"
    finally:
        writer.close()


# -- a real client: vncdotool ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def tcp_relay(unix_path: Path) -> AsyncIterator[int]:
    """A TCP listener on 127.0.0.1 relaying each connection to a unix socket (vncdotool
    speaks TCP only)."""

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ureader, uwriter = await asyncio.open_unix_connection(str(unix_path))
        await asyncio.gather(pipe(reader, uwriter), pipe(ureader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def vncdotool(port: int, *args: str) -> None:
    if not VNCDOTOOL.exists() and shutil.which("vncdotool") is None:
        pytest.fail("vncdotool is not installed (pip install vncdotool)")
    exe = str(VNCDOTOOL) if VNCDOTOOL.exists() else "vncdotool"
    proc = await asyncio.create_subprocess_exec(
        exe, "-s", f"127.0.0.1::{port}", "-t", "30", "--nocursor", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, out.decode(errors="replace")


async def test_vncdotool_capture_and_type(vt: VirtualTerminal, tmp_path: Path) -> None:
    assert FONT_FILE.exists()
    async with tcp_relay(vt.socket_for("rfb")) as port:
        await vncdotool(port, "capture", str(tmp_path / "before.png"))
        before = load_png(tmp_path / "before.png")
        assert rows_matching(before, expected_row(PROMPT, cursor=len(PROMPT))) == [PROMPT_ROW]
        assert np.array_equal(before, vt.screen.frame)
        await vncdotool(port, "type", "root", "key", "enter")
        typed = expected_row("Password: ", cursor=len("Password: "))
        for _ in range(50):
            await vncdotool(port, "capture", str(tmp_path / "after.png"))
            after = load_png(tmp_path / "after.png")
            if rows_matching(after, typed) == [PROMPT_ROW + 1]:
                break
        assert rows_matching(after, typed) == [PROMPT_ROW + 1]
        assert rows_matching(after, expected_row(PROMPT + "root")) == [PROMPT_ROW]


def test_alpine_guest_boots_and_answers_like_alpine() -> None:
    """The sim's alpine-pv-text is an Alpine guest (issue 10, item 15), not Debian."""
    guest = ScriptedGuest(vm_name="alpine-pv-text", hostname=HOST, boot_script="alpine")
    log = b"".join(chunk for _, chunk in guest.boot_steps()).decode()
    log += guest.finish_boot().decode()
    assert "OpenRC" in log and "Welcome to Alpine Linux 3.19" in log and "Debian" not in log
    assert log.endswith(f"Kernel 6.6.14-0-virt on an x86_64 (/dev/hvc0)\r\n\r\n{PROMPT}")
    guest.receive_input(b"root\r")
    out = guest.receive_input(b"\r").decode()
    assert "Welcome to Alpine!" in out and out.endswith(f"{HOST}:~# ")
    assert guest.receive_input(b"frobnicate\r").decode().split("\r\n")[1] == \
        "-ash: frobnicate: not found"
    assert "-Alpine" in guest.receive_input(b"uname -a\r").decode()
    assert "Welcome to Alpine Linux" in guest.receive_input(b"exit\r").decode()


def test_unknown_boot_script_is_refused() -> None:
    with pytest.raises(BackendError, match="known: alpine, dom0, linux"):
        ScriptedGuest(vm_name="x", hostname=HOST, boot_script="windows")
